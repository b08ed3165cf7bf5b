"""A plain-PyTorch GAOT with the official code's parameter names and forward semantics.

Written for the tests from the GAOT paper's equations (arXiv:2505.18781 §2) and the
behaviour of the official implementation (camlab-ethz/GAOT, ``src/model``): the same
module tree, so its ``state_dict`` has the official keys, and the same arithmetic, so
its outputs are what the official model computes. It uses no pyengine code: graphs
come in as CSR lists built by the caller, scatters are ``index_add_`` /
``scatter_reduce``. It is deliberately the naive formulation (per-edge tensors of
size ``E x hidden``), like the official one, which also makes it the plain-PyTorch
peer of ``bench/models.py --peers`` when the official repository is not available.

Semantics reproduced (each one a place where a re-implementation could differ):

* the kernel MLP sees ``[y_j, x_i]`` (source first), GELU between its Linear layers;
* attention: cosine of the raw (normalised-frame) coordinates, ``F.normalize`` with
  eps 1e-12, softmax per query row, then a *sum* over the row;
* ``ChannelMLP`` layers are 1x1 ``Conv1d`` over ``(C, N)``;
* statistical geometry embedding: ``[N_i, mean |d|, var |d| (E[d^2] - E[d]^2, clamped),
  centroid - x, eigvalsh(cov) descending]``, zero rows for empty balls, then
  standardised over the queries (unbiased std, std < 1e-6 -> 1), ``Linear-ReLU-Linear-ReLU``
  (camlab-ethz/GAOT ends the embedding MLP with a ReLU; the separate GAOT-3D code does not),
  recomputed in every forward as the official code does; concatenated with the integral
  and mapped back by the recovery ``Conv1d``;
* scales: one integral / embedding / recovery shared by all scales, combined by a
  softmax of ``Linear(d, 16)-ReLU-Linear(16, S)`` of the target coordinates (or summed);
* processor: patches -> ``patch_linear`` -> (absolute sinusoid | RoPE with interleaved
  pairs over the patch index) -> transformer with bias-free q/k/v/o, RMSNorm (float32),
  SwiGLU, the residual of the feed-forward taken from the *normalised* state,
  U-shaped skips through ``skip_proj``, attention by ``F.scaled_dot_product_attention``
  (as the official ``GroupQueryFlashAttention``); no residual around the processor;
* decoder projection: ``Conv1d(C, 256)-GELU-Conv1d(256, out)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def csr_rows(row_ptr):
    lens = row_ptr[1:] - row_ptr[:-1]
    return torch.repeat_interleave(torch.arange(lens.numel(), device=row_ptr.device), lens)


def brute_force_radius_graph(sources, queries, radius):
    """CSR (row_ptr, col) of ``|s - q| <= radius``, rows = queries, columns ascending (float64 distances)."""
    dist = torch.cdist(queries.double(), sources.double())
    mask = dist <= radius
    counts = mask.sum(1)
    row_ptr = torch.zeros(queries.shape[0] + 1, dtype=torch.long, device=queries.device)
    row_ptr[1:] = torch.cumsum(counts, 0)
    col = mask.nonzero()[:, 1]
    return row_ptr, col


class ChannelMLP(nn.Module):
    def __init__(self, cin, cout, hidden=None, n_layers=1):
        super().__init__()
        widths = [cin] + [hidden] * (n_layers - 1) + [cout]
        self.fcs = nn.ModuleList(nn.Conv1d(widths[i], widths[i + 1], 1) for i in range(n_layers))

    def forward(self, x):  # (C, N)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = F.gelu(x)
        return x


class LinearChannelMLP(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(layers[i], layers[i + 1]) for i in range(len(layers) - 1))

    def forward(self, x):
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = F.gelu(x)
        return x


class IntegralTransform(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.channel_mlp = LinearChannelMLP(layers)

    def forward(self, y_pos, x_pos, row_ptr, col, f_y):
        rows = csr_rows(row_ptr)
        rep, self_pos = y_pos[col], x_pos[rows]
        q = F.normalize(self_pos, p=2, dim=-1)
        k = F.normalize(rep, p=2, dim=-1)
        scores = (q * k).sum(-1)
        m = x_pos.shape[0]
        smax = torch.full((m,), -math.inf, dtype=scores.dtype, device=scores.device).scatter_reduce(
            0, rows, scores, "amax")
        e = torch.exp(scores - smax[rows])
        denom = torch.zeros(m, dtype=e.dtype, device=e.device).index_add_(0, rows, e)
        alpha = e / denom.clamp_min(torch.finfo(e.dtype).tiny)[rows]
        kernel = self.channel_mlp(torch.cat([rep, self_pos], dim=-1))
        msg = kernel * f_y[col] * alpha[:, None]
        return torch.zeros(m, msg.shape[1], dtype=msg.dtype, device=msg.device).index_add_(0, rows, msg)


class GeometricEmbedding(nn.Module):
    def __init__(self, d, out):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 + 2 * d, 64), nn.ReLU(), nn.Linear(64, out), nn.ReLU())

    @staticmethod
    def features(source_pos, query_pos, row_ptr, col):
        m, d = query_pos.shape
        rows = csr_rows(row_ptr)
        n_i = (row_ptr[1:] - row_ptr[:-1]).to(source_pos.dtype)
        has = n_i > 0
        nbr = source_pos[col]
        dist = torch.norm(nbr - query_pos[rows], dim=1)
        cnt = n_i.clamp_min(1)

        def mean(v):
            out = torch.zeros((m,) + v.shape[1:], dtype=v.dtype, device=v.device).index_add_(0, rows, v)
            return out / cnt.view(-1, *([1] * (v.dim() - 1)))

        d_avg = mean(dist)
        d_var = torch.clamp(mean(dist ** 2) - d_avg ** 2, min=0.0)
        centroid = mean(nbr)
        delta = centroid - query_pos
        cen = nbr - centroid[rows]
        cov = torch.zeros(m, d, d, dtype=nbr.dtype, device=nbr.device).index_add_(
            0, rows, cen[:, :, None] * cen[:, None, :])
        cov = cov / cnt.view(-1, 1, 1)
        pca = torch.zeros(m, d, dtype=nbr.dtype, device=nbr.device)
        if has.any():
            ev = torch.linalg.eigvalsh(cov[has])
            pca[has] = ev.flip(dims=[1])
        feats = torch.cat([n_i[:, None], d_avg[:, None], d_var[:, None], delta, pca], dim=1)
        feats[~has] = 0.0
        mu = feats.mean(dim=0, keepdim=True)
        sd = feats.std(dim=0, keepdim=True)
        sd[sd < 1e-6] = 1.0
        return (feats - mu) / sd

    def forward(self, source_pos, query_pos, row_ptr, col):
        return self.mlp(self.features(source_pos, query_pos, row_ptr, col))


class MAGNOSide(nn.Module):
    """Encoder (lifting) or decoder (projection) side; ``graphs[s]`` = CSR (row_ptr, col) of scale ``s``."""

    def __init__(self, d, channels, kernel_hidden, n_scales, geo, lifting_in=None, proj_out=None, proj_hidden=256):
        super().__init__()
        self.gno = IntegralTransform([2 * d, *kernel_hidden, channels])
        if lifting_in is not None:
            self.lifting = ChannelMLP(lifting_in, channels, n_layers=1)
        if proj_out is not None:
            self.projection = ChannelMLP(channels, proj_out, hidden=proj_hidden, n_layers=2)
        self.use_geo = geo
        if geo:
            self.geoembed = GeometricEmbedding(d, channels)
            self.recovery = ChannelMLP(2 * channels, channels, n_layers=1)
        self.n_scales = n_scales
        if n_scales > 1:
            self.scale_weighting = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, n_scales))

    def integrate(self, source_pos, target_pos, f, graphs):
        outs = []
        for row_ptr, col in graphs:
            h = self.gno(source_pos, target_pos, row_ptr, col, f)
            if self.use_geo:
                g = self.geoembed(source_pos, target_pos, row_ptr, col)
                h = self.recovery(torch.cat([h, g], dim=-1).permute(1, 0)).permute(1, 0)
            outs.append(h)
        if len(outs) == 1:
            return outs[0]
        w = torch.softmax(self.scale_weighting(target_pos), dim=-1).permute(1, 0).unsqueeze(-1)
        return (torch.stack(outs) * w).sum(0)


def rotate_interleaved(t):
    dim = t.shape[-1]
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=t.device)[: dim // 2].float() / dim))
    pos = torch.arange(t.shape[-2], dtype=torch.float32, device=t.device)
    ang = torch.einsum("n,f->nf", pos, freqs).repeat_interleave(2, dim=-1).to(t.dtype)
    rot = ang.shape[-1]
    x = t[..., :rot].reshape(*t.shape[:-1], rot // 2, 2)
    half = torch.stack((-x[..., 1], x[..., 0]), dim=-1).reshape(*t.shape[:-1], rot)
    return torch.cat([t[..., :rot] * ang.cos() + half * ang.sin(), t[..., rot:]], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Attn(nn.Module):
    def __init__(self, size, hidden, heads, kv_heads, rope):
        super().__init__()
        self.heads, self.kv, self.hd, self.rope = heads, kv_heads, hidden // heads, rope
        self.q_proj = nn.Linear(size, hidden, bias=False)
        self.k_proj = nn.Linear(size, self.hd * kv_heads, bias=False)
        self.v_proj = nn.Linear(size, self.hd * kv_heads, bias=False)
        self.o_proj = nn.Linear(hidden, size, bias=False)

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv, self.hd).transpose(1, 2)
        if self.kv != self.heads:
            k = k.repeat_interleave(self.heads // self.kv, dim=1)
            v = v.repeat_interleave(self.heads // self.kv, dim=1)
        if self.rope:
            q, k = rotate_interleaved(q), rotate_interleaved(k)
        a = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(a.transpose(1, 2).reshape(b, n, -1))


class FFN(nn.Module):
    def __init__(self, size, hidden):
        super().__init__()
        self.w1 = nn.Linear(size, hidden, bias=False)
        self.w2 = nn.Linear(hidden, size, bias=False)
        self.w3 = nn.Linear(size, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, size, hidden, heads, kv_heads, mult, rope, eps, skip):
        super().__init__()
        self.attn = Attn(size, hidden, heads, kv_heads, rope)
        self.ffn = FFN(size, hidden * mult)
        self.attn_norm = RMSNorm(size, eps)
        self.ffn_norm = RMSNorm(size, eps)
        if skip:
            self.skip_proj = nn.Linear(2 * size, size)

    def forward(self, x, skip=None):
        if skip is not None:
            x = self.skip_proj(torch.cat([x, skip], dim=-1))
        h = x + self.attn(self.attn_norm(x))
        h = self.ffn_norm(h)
        return h + self.ffn(h)


class Transformer(nn.Module):
    def __init__(self, size, hidden, layers, heads, kv_heads, mult, rope, eps):
        super().__init__()
        self.input_proj = nn.Linear(size, hidden) if size != hidden else nn.Identity()
        self.output_proj = nn.Linear(hidden, size) if size != hidden else nn.Identity()
        args = (hidden, hidden, heads, kv_heads, mult, rope, eps)
        self.encoder_layers = nn.ModuleList(Block(*args, skip=False) for _ in range(layers // 2))
        self.middle_layer = Block(*args, skip=False) if layers % 2 else None
        self.decoder_layers = nn.ModuleList(Block(*args, skip=True) for _ in range(layers // 2))

    def forward(self, x):
        x = self.input_proj(x)
        skips = []
        for blk in self.encoder_layers:
            x = blk(x)
            skips.append(x)
        if self.middle_layer is not None:
            x = self.middle_layer(x)
        for blk in self.decoder_layers:
            x = blk(x, skips.pop())
        return self.output_proj(x)


class OfficialStyleGAOT(nn.Module):
    """``forward(tokens, xcoord, pndata, query, enc_graphs, dec_graphs) -> (M, out)`` (one sample)."""

    def __init__(self, in_ch, out_ch, grid, channels=8, enc_hidden=(16, 16, 16), dec_hidden=(16, 16), n_scales=2,
                 geo=True, patch=2, hidden=32, layers=3, heads=4, kv_heads=2, mult=4, positional="rope",
                 eps=1e-6, proj_hidden=256):
        super().__init__()
        d = len(grid)
        self.grid, self.patch, self.channels, self.positional = tuple(grid), patch, channels, positional
        self.encoder = MAGNOSide(d, channels, enc_hidden, n_scales, geo, lifting_in=in_ch)
        self.decoder = MAGNOSide(d, channels, dec_hidden, n_scales, geo, proj_out=out_ch, proj_hidden=proj_hidden)
        size = channels * patch ** d
        self.patch_linear = nn.Linear(size, size)
        self.processor = Transformer(size, hidden, layers, heads, kv_heads, mult, positional == "rope", eps)

    def _patches(self, z):
        d, p, c = len(self.grid), self.patch, self.channels
        g = [n // p for n in self.grid]
        if d == 2:
            z = z.view(1, g[0], p, g[1], p, c).permute(0, 1, 3, 2, 4, 5)
        else:
            z = z.view(1, g[0], p, g[1], p, g[2], p, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
        return z.reshape(1, math.prod(g), -1), g

    def _tokens(self, h, g):
        d, p, c = len(self.grid), self.patch, self.channels
        if d == 2:
            h = h.view(1, g[0], g[1], p, p, c).permute(0, 1, 3, 2, 4, 5)
        else:
            h = h.view(1, g[0], g[1], g[2], p, p, p, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return h.reshape(math.prod(self.grid), c)

    def forward(self, tokens, xcoord, pndata, query, enc_graphs, dec_graphs):
        f = self.encoder.lifting(pndata.permute(1, 0)).permute(1, 0)
        z = self.encoder.integrate(xcoord, tokens, f, enc_graphs)
        h, g = self._patches(z)
        h = self.patch_linear(h)
        if self.positional == "absolute":
            pos = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=h.device) for n in g],
                                             indexing="ij"),
                              dim=-1).reshape(-1, len(g))
            m = h.shape[-1] // (2 * len(g))
            inv = 1.0 / (10000 ** (torch.arange(m, dtype=torch.float32, device=h.device) / m))
            ang = pos[:, :, None] * inv[None, None, :]
            h = h + torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).view(pos.shape[0], -1)
        z = self._tokens(self.processor(h), g)
        u = self.decoder.integrate(tokens, query, z, dec_graphs)
        return self.decoder.projection(u.permute(1, 0)).permute(1, 0)
