"""Attention aggregation over a neighbor graph (GAOT's attentional GNO, "MAGNO").

For query points ``x`` (M, d), source points ``y`` (N, d) with features ``f_y``
(N, C_in), and a CSR neighbor structure (row ``i`` lists the sources near ``x_i``,
e.g. from :func:`pyengine.ops.radius_search`)::

    q_i   = MLP([x_i, g_i])                        per head: (H, D)
    k_ij  = W_k [y_j - x_i, f_j]                   per head: (H, D)  (no bias: it would cancel)
    v_ij  = W_v [y_j - x_i, f_j] + b_v             per head: (H, D)
    a_ij  = softmax_j(<q_i, k_ij> / sqrt(D))       over i's neighbors, per head
    out_i = W_o concat_h(sum_j a_ij v_ij) + b_o    (M, C_out)

Because ``k_ij`` and ``v_ij`` are linear in the relative position, they split into a
per-source part and a per-query part: ``k_ij = K_j - W_k^pos x_i`` with
``K_j = W_k [y_j, f_j]``. The per-query part of the key adds the same amount to
every score of row ``i`` and cancels in the softmax (as a key bias would, which is
why the key projection has none); the value's per-query part
comes out of the sum as ``-W_v^pos x_i`` (the weights sum to 1). So the layer runs
the fused :func:`pyengine.ops.csr_attention` on per-source keys and values and never
forms an ``E x H x D`` tensor. This is exact algebra, not an approximation; with
coordinates far from the origin, centre them first to keep float32 scores accurate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops.attention import csr_attention
from ..ops.segment import row_index


class AttentionAggregation(nn.Module):
    """Multi-head softmax attention of each query point over its neighbors.

    Args:
        in_channels: ``C_in``, features per source point.
        out_channels: ``C_out``, features per query point.
        coord_dim: ``d``, the dimension of the point coordinates.
        heads: number of attention heads ``H``.
        head_dim: channels per head ``D`` (default ``max(1, out_channels // heads)``).
        query_channels: optional features per query point ``g`` (0: none).
        query_hidden: width of the query MLP's hidden layer.
        fused: ``True`` (default) runs the fused CSR attention op on per-source keys and
            values; ``False`` runs the plain per-edge version peers write (keys and values
            of ``[y_j - x_i, f_j]`` per edge, softmax and weighted sum by gather/scatter),
            which materialises ``E x H x D`` tensors. Same result; kept for comparison.
        score_bound: optional bound ``b > 0`` on the attention scores (issue 17). The score becomes
            ``tau_h <q_i / |q_i|, K_j / |K_j|>`` with the per-source key ``K_j = W_k [y_j, f_j]``
            (cosine attention) and a learned per-head ``tau_h = b sigmoid(theta_h)`` (``b / 2`` at
            initialisation), so ``|s_ij| <= b``: the softmax kernel's dynamic range over a ball is at
            most ``exp(2 b)`` however training scales the queries, i.e. the temperature has a floor
            ``1 / b``. An unbounded softmax sharpens with training until a ball's ~10 sources no
            longer resolve it and the aggregate changes with the mesh. ``None`` (default): the plain
            scaled dot product above.

    Shapes (``forward(y, x, row_ptr, col, f_y, f_x=None)``):
        y: ``(N, d)`` source points; x: ``(M, d)`` query points.
        row_ptr: ``(M + 1,)`` int64; col: ``(E,)`` int64/int32 in ``[0, N)``.
        f_y: ``(N, C_in)``; f_x: ``(M, query_channels)`` or None.
        returns ``(M, C_out)``. A query without neighbors gets ``W_o 0 + b_o``.
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, heads: int = 4,
                 head_dim: int | None = None, query_channels: int = 0, query_hidden: int = 64,
                 fused: bool = True, score_bound: float | None = None):
        super().__init__()
        if score_bound is not None and not (isinstance(score_bound, (int, float)) and
                                            math.isfinite(score_bound) and score_bound > 0):
            raise ValueError(f"score_bound must be a positive finite number or None, got {score_bound!r}")
        for name, val in (("in_channels", in_channels), ("out_channels", out_channels), ("coord_dim", coord_dim),
                          ("heads", heads), ("query_hidden", query_hidden)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not isinstance(query_channels, int) or query_channels < 0:
            raise ValueError(f"query_channels must be an int >= 0, got {query_channels!r}")
        head_dim = max(1, out_channels // heads) if head_dim is None else head_dim
        if not isinstance(head_dim, int) or head_dim < 1:
            raise ValueError(f"head_dim must be a positive int, got {head_dim!r}")
        self.in_channels, self.out_channels, self.coord_dim = in_channels, out_channels, coord_dim
        self.heads, self.head_dim, self.query_channels = heads, head_dim, query_channels
        self.fused = bool(fused)
        width = heads * head_dim
        self.query = nn.Sequential(nn.Linear(coord_dim + query_channels, query_hidden), nn.GELU(),
                                   nn.Linear(query_hidden, width))
        # Input layout of key and value: [relative position (d), source features (C_in)].
        self.key = nn.Linear(coord_dim + in_channels, width, bias=False)  # a bias adds <q_i, b> to a whole row
        self.value = nn.Linear(coord_dim + in_channels, width)
        self.out = nn.Linear(width, out_channels)
        self.score_bound = None if score_bound is None else float(score_bound)
        # tau_h = b sigmoid(theta_h): learned, bounded by b (a temperature floor 1 / b)
        self.theta = nn.Parameter(torch.zeros(heads)) if score_bound is not None else None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Checkpoints from before the key bias was removed hold ``key.bias``; it cancelled in the
        # softmax (it adds <q_i, b> to every score of row i), so dropping it changes no output.
        state_dict.pop(prefix + "key.bias", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)

    @staticmethod
    def _unit(t: Tensor) -> Tensor:
        # |t| ~ 0 (a key through the origin) stays finite and smooth: t / sqrt(|t|^2 + eps^2)
        return t * torch.rsqrt(t.square().sum(-1, keepdim=True) + 1e-12)

    def _bounded(self, q: Tensor) -> Tensor:
        """Queries of the bounded score: ``tau_h q / |q|`` (used with unit keys and scale 1)."""
        tau = self.score_bound * torch.sigmoid(self.theta).to(q.dtype)
        return self._unit(q) * tau.view(1, -1, 1)

    def _check(self, y, x, row_ptr, col, f_y, f_x):
        for name, t in (("y", y), ("x", x), ("row_ptr", row_ptr), ("col", col), ("f_y", f_y)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        d = self.coord_dim
        if y.dim() != 2 or y.shape[1] != d:
            raise ValueError(f"y must have shape (N, {d}), got {tuple(y.shape)}")
        if x.dim() != 2 or x.shape[1] != d:
            raise ValueError(f"x must have shape (M, {d}), got {tuple(x.shape)}")
        if f_y.dim() != 2 or f_y.shape != (y.shape[0], self.in_channels):
            raise ValueError(f"f_y must have shape (N, in_channels) = ({y.shape[0]}, {self.in_channels}), "
                             f"got {tuple(f_y.shape)}")
        if row_ptr.dim() != 1 or row_ptr.shape[0] != x.shape[0] + 1:
            raise ValueError(f"row_ptr must have shape (M + 1,) = ({x.shape[0] + 1},), got {tuple(row_ptr.shape)}")
        if self.query_channels:
            if f_x is None or f_x.shape != (x.shape[0], self.query_channels):
                raise ValueError(f"f_x must have shape (M, query_channels) = ({x.shape[0]}, {self.query_channels}), "
                                 f"got {None if f_x is None else tuple(f_x.shape)}")
        elif f_x is not None:
            raise ValueError("f_x given but the layer was built with query_channels=0")

    def forward(self, y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor, f_y: Tensor,
                f_x: Tensor | None = None, edge_weights: Tensor | None = None,
                row_scale: Tensor | None = None) -> Tensor:
        """``edge_weights``: optional ``(E,)`` positive quadrature weights of the edges' sources;
        the softmax then weights each edge by them (``a_ij ~ w_ij exp(s_ij)``), turning the
        attention into a quadrature of a normalised integral over the ball.

        ``row_scale``: optional ``(M,)`` factor on each row's aggregate (before the output map),
        in place of the 0/1 "row has edges" indicator; e.g. ``W_i / (W_i + sink)`` with ``W_i`` the
        ball's measure, so that a ball the geometry barely touches fades out continuously instead
        of jumping to a full softmax average when its first source appears (issue 17)."""
        self._check(y, x, row_ptr, col, f_y, f_x)
        M, N, H, D, d = x.shape[0], y.shape[0], self.heads, self.head_dim, self.coord_dim
        bias = None
        if edge_weights is not None:
            if edge_weights.shape != col.shape:
                raise ValueError(f"edge_weights must have shape ({col.shape[0]},), got {tuple(edge_weights.shape)}")
            bias = torch.log(edge_weights.to(f_y.dtype)).unsqueeze(1).expand(-1, H).contiguous()
        if row_scale is not None and row_scale.shape != (M,):
            raise ValueError(f"row_scale must have shape ({M},), got {tuple(row_scale.shape)}")
        q = self.query(x if f_x is None else torch.cat([x, f_x], 1)).view(M, H, D)
        if self.score_bound is not None:
            q = self._bounded(q)
        if not self.fused:
            agg = self._plain(q, y, x, row_ptr, col, f_y, bias).reshape(M, H * D)
            return self.out(agg if row_scale is None else agg * row_scale.to(agg.dtype).unsqueeze(1))
        src = torch.cat([y, f_y], 1)
        k = self.key(src).view(N, H, D)  # K_j; the -W_k^pos x_i part cancels in the softmax
        v = self.value(src).view(N, H, D)
        scale = self.scale
        if self.score_bound is not None:
            k, scale = self._unit(k), 1.0
        agg = csr_attention(q, k, v, row_ptr, col, bias=bias, scale=scale).reshape(M, H * D)
        # The value's per-query part, -W_v^pos x_i, applies only where the weights sum to 1.
        has_edges = (row_ptr[1:] > row_ptr[:-1]).to(agg.dtype).unsqueeze(1)
        agg = agg - has_edges * (x @ self.value.weight[:, :d].t())
        if row_scale is not None:
            agg = agg * row_scale.to(agg.dtype).unsqueeze(1)
        return self.out(agg)

    def _plain(self, q: Tensor, y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor, f_y: Tensor,
               bias: Tensor | None = None) -> Tensor:
        """Per-edge keys/values, softmax and weighted sum with gather/scatter (the unfused baseline)."""
        M, H, D = q.shape
        col = col.long()
        rows = row_index(row_ptr, col.shape[0])
        edge_in = torch.cat([y[col] - x[rows], f_y[col]], dim=1)  # (E, d + C)
        v = self.value(edge_in).view(-1, H, D)
        if self.score_bound is None:
            k = self.key(edge_in).view(-1, H, D)
            s = (q[rows] * k).sum(-1) * self.scale  # (E, H)
        else:  # cosine of the query with the per-source key K_j (q is already tau q / |q|)
            k = self._unit(self.key(torch.cat([y, f_y], 1)).view(-1, H, D))[col]
            s = (q[rows] * k).sum(-1)
        if bias is not None:
            s = s + bias
        smax = torch.full((M, H), float("-inf"), dtype=s.dtype, device=s.device)
        smax = smax.scatter_reduce(0, rows[:, None].expand_as(s), s, "amax", include_self=True)
        e = torch.exp(s - smax[rows])
        denom = torch.zeros(M, H, dtype=s.dtype, device=s.device).index_add_(0, rows, e)
        alpha = e / denom[rows]
        return torch.zeros(M, H, D, dtype=v.dtype, device=v.device).index_add_(0, rows, alpha.unsqueeze(-1) * v)
