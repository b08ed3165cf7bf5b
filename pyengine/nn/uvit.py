"""GAOT's processor: a U-shaped vision transformer over patches of the latent token grid.

As in the GAOT paper's processor (and the official code, camlab-ethz/GAOT, whose
weights :func:`pyengine.models.gaot.from_official` loads):

* the token grid is cut into patches of ``patch^d`` tokens; each patch vector goes
  through a learned linear map (``patch_linear``) and, with absolute positions, gets
  a fixed sinusoidal embedding of its patch coordinates added;
* transformer blocks with RMSNorm, bias-free query/key/value/output projections
  (grouped-query attention when ``kv_heads < heads``), rotary position embeddings
  (RoPE) on queries and keys when ``positional="rope"``, and a SwiGLU feed-forward;
* U-shaped long skips: the outputs of the first ``depth // 2`` blocks are
  concatenated (and linearly mixed back) into the inputs of the last ``depth // 2``
  in reverse order; an odd depth has one middle block;
* no residual around the whole processor: the patches are mapped back to tokens.

One detail follows the official code rather than the usual pre-norm layout: the
feed-forward's residual branch starts from the *normalised* hidden state
(``h = norm(x + attn(norm(x))); out = h + ffn(h)``), so trained official weights
give the same outputs here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norms import ConditionedNorm, RMSNorm
from .transformer import patchify, unpatchify

__all__ = ["GAOTProcessor", "RotaryEmbedding", "UTransformer", "absolute_patch_embedding"]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over a 1-D sequence (position = index in the sequence).

    Channel pairs ``(2k, 2k+1)`` of each head are rotated by ``pos * theta^(-2k/dim)``;
    with an odd ``dim`` the last channel is left alone. This is the convention of the
    ``rotary-embedding-torch`` package that the official GAOT uses (interleaved pairs,
    ``theta = 10000``); the patches enter in row-major order of the patch grid.
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.dim = int(dim)
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Rotate ``t (..., seq, dim)``."""
        n = t.shape[-2]
        pos = torch.arange(n, device=t.device, dtype=t.dtype)
        ang = (pos.to(self.freqs.dtype)[:, None] * self.freqs).repeat_interleave(2, dim=-1)  # (n, 2 * (dim // 2))
        rot = ang.shape[-1]
        mid, rest = t[..., :rot], t[..., rot:]
        pairs = mid.reshape(*mid.shape[:-1], rot // 2, 2)
        half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(mid.shape)
        out = mid * ang.cos() + half * ang.sin()
        return torch.cat([out, rest], dim=-1).to(t.dtype)


class Attention(nn.Module):
    """Multi-head (grouped-query) self-attention with bias-free projections and optional RoPE."""

    def __init__(self, dim: int, width: int, heads: int, kv_heads: int, rope: bool, dropout: float,
                 cond_dim: int | None) -> None:
        super().__init__()
        if width % heads or heads % kv_heads:
            raise ValueError(f"need width % heads == 0 and heads % kv_heads == 0, got {width}, {heads}, {kv_heads}")
        self.heads, self.kv_heads, self.head_dim, self.dropout = heads, kv_heads, width // heads, dropout
        kv = self.head_dim * kv_heads
        self.q_proj = nn.Linear(dim, width, bias=False)
        self.k_proj = nn.Linear(dim, kv, bias=False)
        self.v_proj = nn.Linear(dim, kv, bias=False)
        self.o_proj = nn.Linear(width, dim, bias=False)
        self.rotary = RotaryEmbedding(self.head_dim) if rope else None
        self.correction = ConditionedNorm(dim, cond_dim) if cond_dim else None

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if self.correction is not None:
            x = self.correction(cond, x)
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(a.transpose(1, 2).reshape(b, n, -1))


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)``, bias-free; optionally time-conditioned on its output."""

    def __init__(self, dim: int, hidden: int, cond_dim: int | None) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.correction = ConditionedNorm(dim, cond_dim) if cond_dim else None

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        y = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return y if self.correction is None else self.correction(cond, y)


class Block(nn.Module):
    """RMSNorm -> attention -> residual -> RMSNorm -> SwiGLU -> residual (see the module docstring)."""

    def __init__(self, dim: int, width: int, heads: int, kv_heads: int, ffn_multiplier: int, rope: bool,
                 norm_eps: float, dropout: float, skip: bool, cond_dim: int | None) -> None:
        super().__init__()
        self.attn = Attention(dim, width, heads, kv_heads, rope, dropout, cond_dim)
        self.ffn = SwiGLU(dim, width * ffn_multiplier, cond_dim)
        self.attn_norm = RMSNorm(dim, norm_eps)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.skip_proj = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x: Tensor, cond: Tensor | None = None, skip: Tensor | None = None) -> Tensor:
        if self.skip_proj is not None and skip is not None:
            x = self.skip_proj(torch.cat([x, skip], dim=-1))
        h = x + self.attn(self.attn_norm(x), cond)
        h = self.ffn_norm(h)
        return h + self.ffn(h, cond)


class UTransformer(nn.Module):
    """Transformer with U-shaped long skips: ``(B, T, size) -> (B, T, size)``.

    Args:
        size: feature size in and out (a projection to ``width`` and back when they differ).
        width: attention width (``heads * head_dim``) and, if ``size != width``, working size.
        depth: blocks; ``depth // 2`` down, one middle block if odd, ``depth // 2`` up.
        heads, kv_heads: query heads and key/value heads (grouped-query attention).
        ffn_multiplier: SwiGLU hidden width = ``width * ffn_multiplier``.
        rope: rotary position embeddings on queries and keys.
        long_range_skip: the U-shaped skips (False: a plain stack, the skip projections unused).
        cond_dim: size of the time condition (``ConditionedNorm``), or None.
    """

    def __init__(self, size: int, width: int, depth: int, heads: int, kv_heads: int | None = None,
                 ffn_multiplier: int = 4, rope: bool = True, norm_eps: float = 1e-6, dropout: float = 0.0,
                 long_range_skip: bool = True, cond_dim: int | None = None) -> None:
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        self.input_proj = nn.Linear(size, width) if size != width else nn.Identity()
        self.output_proj = nn.Linear(width, size) if size != width else nn.Identity()
        args = (width, width, heads, kv_heads, ffn_multiplier, rope, norm_eps, dropout)
        self.encoder_layers = nn.ModuleList(Block(*args, skip=False, cond_dim=cond_dim) for _ in range(depth // 2))
        self.middle_layer = Block(*args, skip=False, cond_dim=cond_dim) if depth % 2 else None
        self.decoder_layers = nn.ModuleList(Block(*args, skip=True, cond_dim=cond_dim) for _ in range(depth // 2))
        self.long_range_skip = long_range_skip

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x = self.input_proj(x)
        skips = []
        for block in self.encoder_layers:
            x = block(x, cond)
            skips.append(x)
        if self.middle_layer is not None:
            x = self.middle_layer(x, cond)
        for block in self.decoder_layers:
            x = block(x, cond, skips.pop() if self.long_range_skip else None)
        return self.output_proj(x)


def absolute_patch_embedding(patch_grid: Sequence[int], dim: int, device=None) -> Tensor:
    """Fixed sinusoidal embedding of integer patch coordinates: ``(prod(patch_grid), dim)``.

    For each of the ``k`` axes, ``dim // (2 k)`` frequencies ``10000^(-i / (dim // (2 k)))``
    give ``[sin(pos * f), cos(pos * f)]``; the axes' blocks are concatenated (the
    official GAOT's absolute positions). ``dim`` must be divisible by ``2 k``.
    """
    k = len(patch_grid)
    if dim % (2 * k):
        raise ValueError(f"absolute positions need the patch size ({dim}) divisible by 2 * {k}")
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in patch_grid]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, k)
    m = dim // (2 * k)
    inv = 1.0 / (10000 ** (torch.arange(m, dtype=torch.float32, device=device) / m))
    ang = pos[:, :, None] * inv
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).reshape(pos.shape[0], -1)


class GAOTProcessor(nn.Module):
    """Patching U-transformer over a token grid: ``(B, prod(grid), C) -> (B, prod(grid), C)``.

    Args:
        grid_shape: tokens per axis (each divisible by ``patch``), row-major token order.
        channels: token features ``C``; a patch vector has ``patch^d * C`` entries.
        width: transformer width (the official ``hidden_size``).
        depth, heads, kv_heads, ffn_multiplier, norm_eps, dropout, long_range_skip: of :class:`UTransformer`.
        positional: ``"rope"`` (rotary, in attention) or ``"absolute"`` (sinusoidal, added to the patches).
        cond_dim: time-condition size or None.
    """

    def __init__(self, grid_shape: Sequence[int], channels: int, width: int = 256, depth: int = 5, heads: int = 8,
                 kv_heads: int | None = None, patch: int = 2, ffn_multiplier: int = 4, positional: str = "rope",
                 norm_eps: float = 1e-6, dropout: float = 0.0, long_range_skip: bool = True,
                 cond_dim: int | None = None) -> None:
        super().__init__()
        self.grid_shape = tuple(int(n) for n in grid_shape)
        if len(self.grid_shape) not in (2, 3):
            raise ValueError(f"grid_shape must have 2 or 3 axes, got {self.grid_shape}")
        if patch < 1 or any(n % patch for n in self.grid_shape):
            raise ValueError(f"every grid axis {self.grid_shape} must be divisible by patch={patch}")
        if positional not in ("rope", "absolute"):
            raise ValueError(f"positional must be 'rope' or 'absolute', got {positional!r}")
        self.patch, self.channels, self.positional = int(patch), int(channels), positional
        self.patch_grid = tuple(n // patch for n in self.grid_shape)
        size = channels * patch ** len(self.grid_shape)
        if positional == "absolute" and size % (2 * len(self.grid_shape)):
            raise ValueError(f"absolute positions need patch^d * channels ({size}) divisible by {2 * len(self.grid_shape)}")
        self.patch_linear = nn.Linear(size, size)
        self.transformer = UTransformer(size, width, depth, heads, kv_heads, ffn_multiplier, positional == "rope",
                                        norm_eps, dropout, long_range_skip, cond_dim)

    def forward(self, tokens: Tensor, cond: Tensor | None = None) -> Tensor:
        if tokens.dim() != 3 or tokens.shape[1] != math.prod(self.grid_shape) or tokens.shape[2] != self.channels:
            raise ValueError(f"tokens must be (B, {math.prod(self.grid_shape)}, {self.channels}), "
                             f"got {tuple(tokens.shape)}")
        h = self.patch_linear(patchify(tokens, self.grid_shape, self.patch))
        if self.positional == "absolute":
            h = h + absolute_patch_embedding(self.patch_grid, h.shape[-1], h.device).to(h.dtype)
        h = self.transformer(h, cond)
        return unpatchify(h, self.grid_shape, self.patch, self.channels)
