"""GNOT: the general neural operator transformer (Hao et al. 2023), on pyengine's model interface.

    input functions  y_g = MLP_g([x_j, f_j^g])                 (N, hidden) per group g
    query embedding  h   = MLP_q(x)                            (M, hidden)
    L blocks of      h += CrossAttn(LN h; LN y_1, ..., LN y_G)  heterogeneous normalized attention
                     h += MoE(LN h; x)                          geometric gating mixture of experts
                     h += SelfAttn(LN h; context)               normalized (linear) self-attention
                     h += MoE(LN h; x)
    output           u   = MLP_out(LN h)                        (M, C_out)

**Normalized (linear) attention.** Queries and keys are softmax-normalised over each
head's channels, ``q~ = softmax(q)``, ``k~ = softmax(k)``, and a query attends to a set
of tokens through the set's summaries ``S = mean_j k~_j v_j^T`` (H, D, D) and
``z = mean_j k~_j`` (H, D)::

    out_i = (q~_i S) / (q~_i . z)

which is ``sum_j (q~_i . k~_j) v_j / sum_j (q~_i . k~_j)``, every weight positive, in
O((N + M) H D^2) instead of O(N M). **Heterogeneous** cross-attention sums one such
normalised attention per input function (each with its own keys and values).

**Geometric gating.** Each feed-forward layer is a soft mixture of ``experts`` MLPs whose
weights are a softmax of a gating MLP of the query *position*, so different regions of
the domain use different experts.

Where it follows the paper: the block layout (cross-attention, MoE feed-forward,
self-attention, MoE feed-forward, pre-LayerNorm residuals), the normalised attention
with softmax on queries and keys, the heterogeneous sum over input functions and the
position-gated soft mixture of experts.

Where it departs:

* **Self-attention context.** In the paper the query points are the sequence and attend
  to each other. Here they attend to the *input points* run through the same trunk in
  :meth:`GNOT.encode` (their per-layer summaries ``S, z`` are the latent state). With
  ``queries = points`` (the paper's setting: outputs on the input mesh) the two are the
  same computation; for other queries the prediction at one query no longer depends on
  which other queries are asked, so chunked prediction is exact and :meth:`decode` is
  row-independent.
* **Input functions** are groups of feature columns (``input_groups``) sampled at the
  input points, each embedded with the coordinates; the paper also allows each input
  function its own point set (e.g. boundary values on the boundary). A global parameter
  vector is a group whose columns are constant over the points.
* Coordinates are normalised to the input points' bounding box (``[-1, 1]`` per axis,
  zero-extent axes widened) so one model serves geometries of any size.
* Per-point quadrature weights (``weights=``) are accepted and ignored: the attention
  means are plain means over the input points, as in the paper.

Engine ops: the global normalised attention is two dense contractions per layer
(``einsum``), which needs no pyengine kernel. With ``local_radius`` set, the
self-attention becomes neighbourhood attention: the summaries ``S_i, z_i`` are sums
over the input points within the radius of each query, computed with the fused CSR
sparse-dense product :func:`pyengine.ops.spmm` (no per-edge tensor) over graphs from
:func:`pyengine.ops.radius_search`, cached per geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn.mlp import ACTIVATIONS, activation, mlp
from ..ops import radius_search, spmm
from ._box import points_box
from .base import OperatorModel
from .registry import register

__all__ = ["GNOT", "GNOTConfig"]


@dataclass
class GNOTConfig:
    """GNOT settings.

    Attributes:
        hidden: token width (divisible by ``heads``).
        layers: number of GNOT blocks.
        heads: attention heads (each of width ``hidden // heads``).
        experts: experts of every gated mixture-of-experts feed-forward layer (1: a plain MLP).
        ffn_hidden: hidden width of each expert MLP.
        gate_hidden: hidden width of the geometric gating MLP (input: the normalised position).
        embed_hidden: hidden width of the input-function and query embedding MLPs.
        input_groups: how the ``in_channels`` feature columns split into input functions, in
            column order (e.g. ``(3, 2)``: columns 0-2 one function, 3-4 another); ``()`` means
            one function with every column. Each function is embedded with the coordinates.
        local_radius: ``None`` for the paper's global self-attention; a radius in normalised
            coordinates (the input box mapped to ``[-1, 1]``) for neighbourhood self-attention
            through :func:`pyengine.ops.spmm`.
        max_neighbors: neighbour cap of the local self-attention graphs (nearest kept; None: all).
        activation: gelu, relu, silu or tanh (embeddings, experts, gate and output MLP).
    """

    hidden: int = 64
    layers: int = 3
    heads: int = 4
    experts: int = 4
    ffn_hidden: int = 128
    gate_hidden: int = 64
    embed_hidden: int = 64
    input_groups: tuple[int, ...] = ()
    local_radius: float | None = None
    max_neighbors: int | None = 64
    activation: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("hidden", "heads", "experts", "ffn_hidden", "gate_hidden", "embed_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GNOT {name} must be an int >= 1, got {v!r}")
        if not isinstance(self.layers, int) or isinstance(self.layers, bool) or self.layers < 1:
            raise ValueError(f"GNOT layers must be an int >= 1, got {self.layers!r}")
        if self.hidden % self.heads:
            raise ValueError(f"GNOT hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        self.input_groups = tuple(self.input_groups)
        if any(not isinstance(g, int) or isinstance(g, bool) or g < 1 for g in self.input_groups):
            raise ValueError(f"GNOT input_groups must be positive column counts, got {self.input_groups}")
        if self.local_radius is not None and not (isinstance(self.local_radius, (int, float))
                                                  and 0 < self.local_radius < float("inf")):
            raise ValueError(f"GNOT local_radius must be None or a positive finite number, got {self.local_radius!r}")
        if self.max_neighbors is not None and (not isinstance(self.max_neighbors, int) or self.max_neighbors < 1):
            raise ValueError(f"GNOT max_neighbors must be None or an int >= 1, got {self.max_neighbors!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"GNOT activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


class _NormalizedAttention(nn.Module):
    """Normalised linear attention of queries over one or more token sets (GNOT's HNA).

    ``summarize(tokens (N, C)) -> (S (H, D, D), z (H, D))`` per set (means over the set), or
    per-token outer products ``(N, H*D*D + H*D)`` for neighbourhood sums;
    ``attend(h (M, C), [(S, z), ...]) -> (M, C)`` sums the normalised attention over the sets.
    With per-query summaries (``S (M, H, D, D)``, ``z (M, H, D)``) each query uses its own.
    """

    def __init__(self, dim: int, heads: int, sets: int = 1) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query = nn.Linear(dim, dim)
        self.keys = nn.ModuleList(nn.Linear(dim, dim) for _ in range(sets))
        self.values = nn.ModuleList(nn.Linear(dim, dim) for _ in range(sets))
        self.out = nn.Linear(dim, dim)

    def _kv(self, tokens: Tensor, s: int) -> tuple[Tensor, Tensor]:
        n, H, D = tokens.shape[0], self.heads, self.head_dim
        k = torch.softmax(self.keys[s](tokens).view(n, H, D), dim=-1)
        return k, self.values[s](tokens).view(n, H, D)

    def summarize(self, tokens: Tensor, s: int = 0) -> tuple[Tensor, Tensor]:
        k, v = self._kv(tokens, s)
        n = tokens.shape[0]
        return torch.einsum("nhd,nhe->hde", k, v) / n, k.mean(dim=0)

    def outer(self, tokens: Tensor, s: int = 0) -> Tensor:
        """``[k~_j v_j^T, k~_j]`` per token, flattened: ``(N, H*D*D + H*D)`` (summed by :func:`spmm`)."""
        k, v = self._kv(tokens, s)
        n = tokens.shape[0]
        return torch.cat([(k.unsqueeze(-1) * v.unsqueeze(-2)).reshape(n, -1), k.reshape(n, -1)], dim=1)

    def split(self, sums: Tensor) -> tuple[Tensor, Tensor]:
        """Per-query ``(S (M, H, D, D), z (M, H, D))`` from summed :meth:`outer` rows."""
        M, H, D = sums.shape[0], self.heads, self.head_dim
        return sums[:, :H * D * D].view(M, H, D, D), sums[:, H * D * D:].view(M, H, D)

    def attend(self, h: Tensor, summaries: list[tuple[Tensor, Tensor]]) -> Tensor:
        M, H, D = h.shape[0], self.heads, self.head_dim
        q = torch.softmax(self.query(h).view(M, H, D), dim=-1)
        out = h.new_zeros(M, H, D)
        for S, z in summaries:
            if S.dim() == 3:  # one summary for every query
                num, den = torch.einsum("mhd,hde->mhe", q, S), torch.einsum("mhd,hd->mh", q, z)
            else:  # per-query (neighbourhood) summaries; an empty neighbourhood gives 0 / 0 -> 0
                num, den = torch.einsum("mhd,mhde->mhe", q, S), torch.einsum("mhd,mhd->mh", q, z)
                den = torch.where(den > 0, den, torch.ones_like(den))
            out = out + num / den.unsqueeze(-1)
        return self.out(out.reshape(M, H * D))


class _GatedMoE(nn.Module):
    """Soft mixture of expert MLPs gated by position: ``sum_e softmax(gate(x))_e MLP_e(h)``.

    Shapes: ``h (M, C)``, ``x (M, d)`` -> ``(M, C)``. All experts run densely (batched einsum).
    """

    def __init__(self, dim: int, hidden: int, experts: int, coord_dim: int, gate_hidden: int, act: str) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(experts, dim, hidden) / dim ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(experts, hidden))
        self.w2 = nn.Parameter(torch.randn(experts, hidden, dim) / hidden ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(experts, dim))
        self.act = activation(act)()
        self.gate = mlp([coord_dim, gate_hidden, experts], act) if experts > 1 else None

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        a = self.act(torch.einsum("mc,ecf->mef", h, self.w1) + self.b1)
        y = torch.einsum("mef,efc->mec", a, self.w2) + self.b2  # (M, E, C)
        if self.gate is None:
            return y[:, 0]
        g = torch.softmax(self.gate(x), dim=-1)  # (M, E)
        return torch.einsum("me,mec->mc", g, y)


class _Block(nn.Module):
    def __init__(self, c: GNOTConfig, groups: int, coord_dim: int) -> None:
        super().__init__()
        dim = c.hidden
        self.norm_cross, self.norm_self = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_ffn1, self.norm_ffn2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_inputs = nn.ModuleList(nn.LayerNorm(dim) for _ in range(groups))
        self.cross = _NormalizedAttention(dim, c.heads, groups)
        self.self_attn = _NormalizedAttention(dim, c.heads, 1)
        self.ffn1 = _GatedMoE(dim, c.ffn_hidden, c.experts, coord_dim, c.gate_hidden, c.activation)
        self.ffn2 = _GatedMoE(dim, c.ffn_hidden, c.experts, coord_dim, c.gate_hidden, c.activation)

    def cross_summaries(self, inputs: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        return [self.cross.summarize(norm(y), s) for s, (norm, y) in enumerate(zip(self.norm_inputs, inputs))]

    def first_half(self, h: Tensor, x: Tensor, cross: list[tuple[Tensor, Tensor]]) -> Tensor:
        h = h + self.cross.attend(self.norm_cross(h), cross)
        return h + self.ffn1(self.norm_ffn1(h), x)

    def second_half(self, h: Tensor, x: Tensor, context: tuple[Tensor, Tensor]) -> Tensor:
        h = h + self.self_attn.attend(self.norm_self(h), [context])
        return h + self.ffn2(self.norm_ffn2(h), x)


@register("gnot", GNOTConfig)
class GNOT(OperatorModel):
    """General neural operator transformer; see the module docstring.

    Shapes: ``forward(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: GNOTConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        groups = c.input_groups or ((in_channels,) if in_channels else (0,))
        if c.input_groups and sum(groups) != in_channels:
            raise ValueError(f"GNOT input_groups {c.input_groups} cover {sum(groups)} columns but in_channels is "
                             f"{in_channels}")
        self.groups = tuple(groups)
        self.embed_inputs = nn.ModuleList(mlp([coord_dim + g, c.embed_hidden, c.hidden], c.activation)
                                          for g in self.groups)
        self.embed_query = mlp([coord_dim, c.embed_hidden, c.hidden], c.activation)
        self.blocks = nn.ModuleList(_Block(c, len(self.groups), coord_dim) for _ in range(c.layers))
        self.norm_out = nn.LayerNorm(c.hidden)
        self.project = mlp([c.hidden, c.hidden, out_channels], c.activation)

    def _local_graph(self, points: Tensor, queries: Tensor, lo: Tensor, hi: Tensor):
        """Input points within ``local_radius`` (normalised units) of each query (cached)."""
        c = self.config

        def compute():
            scale = 2.0 / (hi - lo)  # anisotropic box -> [-1, 1]: search in normalised coordinates
            return radius_search(points * scale, queries * scale, float(c.local_radius),
                                 max_neighbors=c.max_neighbors)

        return self.graphs.get("gnot-local", (points, queries), (c.local_radius, c.max_neighbors), compute)

    def _context(self, block: _Block, keys_at: Tensor, graph) -> tuple[Tensor, Tensor] | Tensor:
        """Self-attention context from the trunk at the input points: global summaries, or the
        per-token outer products that neighbourhood sums are taken of."""
        normed = block.norm_self(keys_at)
        if graph is None:
            return block.self_attn.summarize(normed)
        return block.self_attn.outer(normed)

    def _local(self, block: _Block, outer: Tensor, graph) -> tuple[Tensor, Tensor]:
        row_ptr, col = graph
        return block.self_attn.split(spmm(row_ptr, col, None, outer))

    def encode(self, points: Tensor, features: Tensor, weights: Tensor | None = None):
        """Latent state: per-block cross summaries and self-attention context of the input points.

        ``weights`` (per-point quadrature weights) are accepted and ignored (module docstring).
        """
        lo, hi = points_box(points)
        unit = 2 * (points - lo) / (hi - lo) - 1
        cols = torch.split(features, list(self.groups), dim=1) if features.shape[1] else [features]
        inputs = [emb(torch.cat([unit, f], dim=1)) for emb, f in zip(self.embed_inputs, cols)]
        graph = None if self.config.local_radius is None else self._local_graph(points, points, lo, hi)
        h = self.embed_query(unit)
        cross, contexts = [], []
        for block in self.blocks:
            cs = block.cross_summaries(inputs)
            h = block.first_half(h, unit, cs)
            ctx = self._context(block, h, graph)
            h = block.second_half(h, unit, ctx if graph is None else self._local(block, ctx, graph))
            cross.append(cs)
            contexts.append(ctx)
        return {"points": points, "lo": lo, "hi": hi, "cross": cross, "context": contexts,
                "out": self.project(self.norm_out(h))}

    def decode(self, state, queries: Tensor) -> Tensor:
        if queries is state["points"]:  # the trunk already ran on these points in encode
            return state["out"]
        lo, hi = state["lo"], state["hi"]
        unit = 2 * (queries - lo) / (hi - lo) - 1
        graph = None
        if self.config.local_radius is not None:
            graph = self._local_graph(state["points"], queries, lo, hi)
        h = self.embed_query(unit)
        for block, cs, ctx in zip(self.blocks, state["cross"], state["context"]):
            h = block.first_half(h, unit, cs)
            h = block.second_half(h, unit, ctx if graph is None else self._local(block, ctx, graph))
        return self.project(self.norm_out(h))
