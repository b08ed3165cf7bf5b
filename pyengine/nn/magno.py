"""GAOT's attentional GNO (MAGNO) and its statistical geometry embedding.

For a CSR graph whose row ``i`` lists the sources ``j`` near query ``x_i``, the
attentional kernel integral of the GAOT paper (AGNO, one scale of MAGNO) is ::

    out_i = sum_{e = (i, j)} alpha_e * k(x_i, y_j) * f_j,
    alpha_e = exp(s_e) / sum_{e' in row i} exp(s_e'),   s_e = <x_i / |x_i|, y_j / |y_j|>

(the cosine similarity of the coordinates, in the model's normalised frame; with
``transform="nonlinear"`` the kernel also sees ``f_j``). The ``E`` attention
weights are scalars: they are computed with the segment ops (:func:`pyengine.ops.sddmm`
and :func:`pyengine.ops.segment_softmax`) and enter the fused GNO kernel
(:func:`pyengine.ops.gno_integral`) as per-edge weights, so the kernel values
``k(x_i, y_j)`` (``E x hidden``) are never stored, in forward or backward.

Quadrature weights ``w_j`` (vertex areas, cell volumes) make the softmax a
quadrature of a normalised integral, ``alpha_e = w_j exp(s_e) / sum w_j' exp(s_e')``,
so the layer converges as the sampling is refined instead of depending on the
local point density.

The geometry embedding (:func:`neighborhood_statistics`) describes each query's
ball of sources by ``[count, mean distance, distance variance, centroid offset (d),
covariance eigenvalues (d, descending)]``; the model standardises these over the
queries and maps them through a small MLP (:class:`StatisticalEmbedding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import row_index, sddmm, segment_reduce, segment_softmax
from .gno import GNOIntegral

__all__ = ["MAGNOIntegral", "StatisticalEmbedding", "cosine_attention", "neighborhood_statistics",
           "standardize_columns"]


def cosine_attention(y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor, weights: Tensor | None = None) -> Tensor:
    """Per-row softmax of the coordinates' cosine similarity: ``(E,)`` weights summing to 1 per row.

    Args:
        y: ``(N, d)`` sources; x: ``(M, d)`` queries (a point at the origin has cosine 0 to all).
        row_ptr, col: the CSR graph (rows = queries).
        weights: optional ``(N,)`` positive quadrature weights of the sources.
    Differentiable in ``y``, ``x`` and ``weights``; memory ``O(E)``.
    """
    s = sddmm(row_ptr, col, F.normalize(x, dim=1), F.normalize(y, dim=1))
    if weights is not None:
        if weights.shape != (y.shape[0],):
            raise ValueError(f"weights must have shape ({y.shape[0]},), got {tuple(weights.shape)}")
        if not bool((weights > 0).all()):
            raise ValueError("quadrature weights must be positive")
        s = s + torch.log(weights).index_select(0, col.long())
    return segment_softmax(s, row_ptr)


def neighborhood_statistics(sources: Tensor, queries: Tensor, row_ptr: Tensor, col: Tensor,
                            edge_weights: Tensor | None = None, sink: float = 0.0) -> Tensor:
    """``(M, 3 + 2 d)`` statistics of each query's neighbor sources (GAOT's statistical embedding).

    Columns: neighbor count, mean and variance of the distances ``|y_j - x_i|``, the
    neighbors' centroid minus the query (``d``), and the eigenvalues of the neighbors'
    covariance (population), descending (``d``). Rows without neighbors are all zero.
    Computed in the inputs' dtype with the same formulas as the official code, so its
    trained MLPs see the same numbers.

    With ``edge_weights`` (E,) (quadrature weights of the edges' sources) every statistic is
    the quadrature-weighted one: the count becomes the ball's measure ``sum w``, and means
    and the covariance are weighted, so the embedding converges under mesh refinement.
    ``sink`` (with ``edge_weights``) is an extra measure in the denominators of the weighted
    means (see :func:`pyengine.models._quadrature.sink_normalize`): the statistics of a ball
    the geometry barely touches then go to 0 with its measure instead of jumping to ``O(r)``
    when the first source enters it.
    """
    if edge_weights is not None:
        return _weighted_statistics(sources, queries, row_ptr, col, edge_weights, sink)
    m, d = queries.shape
    rows = row_index(row_ptr, col.shape[0])
    colL = col.long()
    nbr = sources.index_select(0, colL)
    counts = (row_ptr[1:] - row_ptr[:-1]).to(sources.dtype)
    dist = (nbr - queries.index_select(0, rows)).norm(dim=1)
    d_avg = segment_reduce(dist, row_ptr, "mean")
    d_var = (segment_reduce(dist * dist, row_ptr, "mean") - d_avg * d_avg).clamp_min(0.0)
    centroid = segment_reduce(nbr, row_ptr, "mean")
    centered = nbr - centroid.index_select(0, rows)
    cov = segment_reduce(centered.unsqueeze(2) * centered.unsqueeze(1), row_ptr, "sum") / counts.clamp_min(1)[:, None,
                                                                                                              None]
    has = counts > 0
    eig = torch.zeros(m, d, dtype=sources.dtype, device=sources.device)
    if bool(has.any()):
        eig[has] = torch.linalg.eigvalsh(cov[has]).flip(-1)  # unregularised, as the official code
    feats = torch.cat([counts[:, None], d_avg[:, None], d_var[:, None], centroid - queries, eig], dim=1)
    return torch.where(has[:, None], feats, torch.zeros_like(feats))


def _weighted_statistics(sources: Tensor, queries: Tensor, row_ptr: Tensor, col: Tensor, ew: Tensor,
                         sink: float = 0.0) -> Tensor:
    m, d = queries.shape
    rows = row_index(row_ptr, col.shape[0])
    nbr = sources.index_select(0, col.long())
    ew = ew.to(sources.dtype)
    total = segment_reduce(ew, row_ptr, "sum")
    inv = 1.0 / (total + sink).clamp_min(torch.finfo(sources.dtype).tiny)
    wmean = lambda v: segment_reduce(v * ew.view(-1, *([1] * (v.dim() - 1))), row_ptr, "sum") * inv.view(  # noqa: E731
        -1, *([1] * (v.dim() - 1)))
    offset = nbr - queries.index_select(0, rows)
    dist = offset.norm(dim=1)
    d_avg = wmean(dist)
    d_var = (wmean(dist * dist) - d_avg * d_avg).clamp_min(0.0)
    off_mean = wmean(offset)
    centroid = queries + off_mean
    # sum w (y - c)(y - c)^T / (total + sink) with c the plain weighted centroid, written so that it
    # stays continuous as total -> 0: second moment minus (total / (total + sink)) c c^T
    plain = off_mean * ((total + sink) / total.clamp_min(torch.finfo(sources.dtype).tiny))[:, None]
    cov = wmean(offset.unsqueeze(2) * offset.unsqueeze(1)) - (total * inv)[:, None, None] * (
        plain.unsqueeze(2) * plain.unsqueeze(1))
    has = (row_ptr[1:] - row_ptr[:-1]) > 0
    eig = torch.zeros(m, d, dtype=sources.dtype, device=sources.device)
    if bool(has.any()):
        reg = cov[has] + 1e-6 * torch.eye(d, dtype=cov.dtype, device=cov.device)
        eig[has] = torch.linalg.eigvalsh(reg).flip(-1)
    feats = torch.cat([total[:, None], d_avg[:, None], d_var[:, None], centroid - queries, eig], dim=1)
    return torch.where(has[:, None], feats, torch.zeros_like(feats))


def standardize_columns(feats: Tensor, reference: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
    """``(feats - mean) / std`` per column, the statistics taken over ``reference`` (default ``feats``).

    ``std`` is the unbiased one; columns with ``std < 1e-6`` are only centred. With ``weights``
    (one per reference row, e.g. the quadrature weights of the points the reference was taken
    at) mean and std are the weighted ones, so they do not depend on how densely each region
    is sampled.
    """
    ref = feats if reference is None else reference
    if weights is not None and ref.shape[0] > 1:
        # In float64, and a column counts as constant relative to its size: in float32 the weighted
        # mean of a constant column (e.g. every decoder ball holding max_neighbors tokens) is off by
        # rounding, and dividing by that ~1e-6 "std" turned the column into O(1) noise that changed
        # with the number of points (issue 17: gaot changed 90% at h/2 from this alone).
        w = (weights.double() / weights.double().sum())[:, None]
        ref64 = ref.double()
        mean = (w * ref64).sum(dim=0, keepdim=True)
        std = ((w * (ref64 - mean) ** 2).sum(dim=0, keepdim=True)).sqrt()
        std = torch.where(std <= 1e-6 * mean.abs().clamp_min(1.0), torch.ones_like(std), std)
        return ((feats.double() - mean) / std).to(feats.dtype)
    mean = ref.mean(dim=0, keepdim=True)
    std = ref.std(dim=0, keepdim=True) if ref.shape[0] > 1 else torch.ones_like(mean)
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return (feats - mean) / std


class StatisticalEmbedding(nn.Module):
    """``Linear(3 + 2 d, hidden) -> ReLU -> Linear(hidden, out) [-> ReLU]`` over standardised statistics.

    ``final_relu=True`` is the official GAOT (camlab-ethz/GAOT's statistical ``GeometricEmbedding``
    ends with a ReLU); the separate GAOT-3D code drops it (``final_relu=False``). The ReLU has
    no parameters, so both load the same weights (``mlp.0``, ``mlp.2``).
    """

    def __init__(self, coord_dim: int, out_channels: int, hidden: int = 64, final_relu: bool = True) -> None:
        super().__init__()
        layers = [nn.Linear(3 + 2 * coord_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_channels)]
        self.mlp = nn.Sequential(*layers, *([nn.ReLU()] if final_relu else []))

    def forward(self, stats: Tensor) -> Tensor:
        return self.mlp(stats)


class MAGNOIntegral(nn.Module):
    """One scale of MAGNO: the cosine-attention-weighted kernel integral (see the module docstring).

    Args:
        in_channels: ``C`` of ``f_y``.
        coord_dim: ``d``.
        hidden: hidden widths of the kernel MLP (0 to 3 for the fused path).
        transform: ``"linear"`` (``k(x, y) f``) or ``"nonlinear"`` (``k(x, y, f) f``), or
            the kernel-only forms (see :class:`pyengine.nn.GNOIntegral`).
        attention: ``"cosine"`` (GAOT) or ``"none"`` (a plain mean over the ball, the
            quadrature-weighted mean with ``weights``).
        activation: of the kernel MLP (GAOT: GELU).
        fused: run the fused kernel (True) or the plain per-edge PyTorch path.
        out_channels: output width for ``"nonlinear_kernelonly"``.

    ``forward(y, x, row_ptr, col, f_y, weights=None, alpha=None) -> (M, C)``: ``alpha``
    are precomputed ``(E,)`` weights (a model caches them per geometry, as they depend on
    the coordinates only); when absent they are computed from ``y``, ``x`` and ``weights``.
    """

    def __init__(self, in_channels: int, coord_dim: int, hidden: Sequence[int] = (64, 64, 64),
                 transform: str = "linear", attention: str = "cosine", activation: str = "gelu", fused: bool = True,
                 out_channels: int | None = None) -> None:
        super().__init__()
        if attention not in ("cosine", "none"):
            raise ValueError(f"attention must be 'cosine' or 'none', got {attention!r}")
        self.attention = attention
        self.integral = GNOIntegral(in_channels, coord_dim, hidden=hidden, transform=transform, reduction="sum",
                                    activation=activation, fused=fused, out_channels=out_channels)

    def edge_weights(self, y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor,
                     weights: Tensor | None = None) -> Tensor:
        """The ``(E,)`` weights this layer applies: cosine softmax, or the (weighted) mean's ``1/|N(i)|``."""
        if self.attention == "cosine":
            return cosine_attention(y, x, row_ptr, col, weights)
        rows = row_index(row_ptr, col.shape[0])
        w = y.new_ones(col.shape[0]) if weights is None else weights.index_select(0, col.long())
        total = segment_reduce(w, row_ptr, "sum")
        return w / total.index_select(0, rows)

    def forward(self, y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor, f_y: Tensor | None,
                weights: Tensor | None = None, alpha: Tensor | None = None) -> Tensor:
        if alpha is None:
            alpha = self.edge_weights(y, x, row_ptr, col, weights)
        elif alpha.shape != col.shape:
            raise ValueError(f"alpha must have one weight per edge ({col.shape[0]},), got {tuple(alpha.shape)}")
        return self.integral(y, x, row_ptr, col, f_y, edge_weights=alpha)
