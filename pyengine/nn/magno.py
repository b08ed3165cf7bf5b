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

from dataclasses import dataclass

from ..ops import index_to_row_ptr, row_index, sddmm, segment_reduce, segment_softmax
from .gno import GNOIntegral

__all__ = ["MAGNOIntegral", "NestedScales", "StatisticalEmbedding", "cosine_attention", "nested_scales",
           "neighborhood_statistics", "standardize_columns"]


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


@dataclass
class NestedScales:
    """The scales of a multiscale MAGNO as shells of the largest ball (see :func:`nested_scales`).

    ``row_ptr`` ``(M S + 1,)`` / ``col`` / ``u`` ``(E_max,)``: one CSR graph with a row per
    (query, shell), shells ordered by radius; ``inv_mass`` ``(M, S)``: ``1 / Z_k(i)`` of the
    ``k``-th smallest ball (0 for empty balls); ``order``: scale indices by increasing radius.
    """

    row_ptr: Tensor
    col: Tensor
    u: Tensor
    inv_mass: Tensor
    order: list[int]

    def combine(self, shell_sums: Tensor) -> list[Tensor]:
        """Per-scale outputs, in the caller's scale order, from the ``(M S, C)`` shell integrals."""
        m, s = self.inv_mass.shape
        balls = shell_sums.view(m, s, -1).cumsum(1) * self.inv_mass.to(shell_sums.dtype).unsqueeze(2)
        out: list[Tensor] = [shell_sums] * s
        for k, scale in enumerate(self.order):
            out[scale] = balls[:, k]
        return out


def nested_scales(graphs: Sequence[tuple[Tensor, Tensor]], alphas: Sequence[Tensor], radii: Sequence[float],
                  rtol: float = 1e-5) -> NestedScales | None:
    """Shells of nested balls, so that a kernel shared by the scales is evaluated once per edge.

    MAGNO integrates the *same* kernel ``k(x_i, y_j) f_j`` (one MLP for all scales) over
    balls of several radii around each query, ``out_m(i) = sum_{e in B_m(i)} alpha_m(e) k_e f_j``.
    When the balls are nested (every edge of a smaller ball is an edge of every larger one)
    and the weights of each scale are those of the largest scale renormalised over the
    ball, ``alpha_m(e) = u_e / Z_m(i)`` with ``Z_m(i) = sum_{e in B_m(i)} u_e`` (true of a
    softmax of a per-edge score, GAOT's cosine attention, and of the plain mean), then ::

        out_m(i) = (1 / Z_m(i)) sum_{k <= m} S_k(i),   S_k(i) = sum_{e in shell k of i} u_e k_e f_j

    with shell ``k`` = ``B_k \\ B_{k-1}``: the integral over the largest graph, split by
    shell, gives every scale exactly (up to rounding), at the cost of one scale (the
    largest) instead of all of them.

    Args:
        graphs: per scale, the CSR ``(row_ptr, col)`` (same rows, columns into the same sources).
        alphas: per scale, its ``(E_m,)`` edge weights.
        radii: per scale, its radius (orders the shells).
        rtol: the reconstructed ``u_e / Z_m(i)`` must match ``alphas[m]`` to this relative tolerance.

    Returns:
        a :class:`NestedScales`, or None when there is one scale, the balls are not nested
        (e.g. capped with ``max_neighbors``) or the weights do not factorise (e.g. windowed
        quadrature balls): then each scale must be integrated on its own.
    """
    s = len(graphs)
    if s < 2 or len(alphas) != s or len(radii) != s:
        return None
    order = sorted(range(s), key=lambda m: float(radii[m]))
    big_rp, big_col = graphs[order[-1]]
    m_rows = big_rp.shape[0] - 1
    n_big = int(big_col.shape[0])
    if any(g[0].shape != big_rp.shape for g in graphs) or any(a.shape != g[1].shape for a, g in zip(alphas, graphs)):
        return None
    rows = row_index(big_rp, n_big)
    n_src = int(torch.cat([g[1] for g in graphs]).max()) + 1 if n_big else 1
    keys = rows * n_src + big_col.long()
    sorted_keys, perm = torch.sort(keys)
    if n_big > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        return None  # duplicate edges: membership by (row, col) would be ambiguous
    inner = torch.zeros(n_big, dtype=torch.long, device=big_col.device)  # balls (of the smaller ones) holding e
    member = []
    for m in order[:-1]:
        rp, col = graphs[m]
        k = row_index(rp, int(col.shape[0])) * n_src + col.long()
        pos = torch.searchsorted(sorted_keys, k).clamp_max(max(n_big - 1, 0))
        if k.numel() and (n_big == 0 or not bool((sorted_keys[pos] == k).all())):
            return None  # an edge of a smaller ball missing from the largest: not nested
        idx = perm[pos]
        hit = torch.zeros(n_big, dtype=torch.bool, device=big_col.device)
        hit[idx] = True
        if int(hit.sum()) != k.numel():
            return None
        member.append(hit)
        inner += hit.long()
    for a, b in zip(member[:-1], member[1:]):
        if bool((a & ~b).any()):
            return None  # in a smaller ball but not in the next larger one
    shell = (s - 1) - inner  # 0: in the smallest ball, ..., s - 1: only in the largest
    new_row = rows * s + shell
    order_e = torch.argsort(new_row, stable=True)
    row_ptr = index_to_row_ptr(new_row[order_e], m_rows * s)
    u = alphas[order[-1]]
    shell_mass = segment_reduce(u[order_e], row_ptr, "sum").view(m_rows, s)
    mass = shell_mass.cumsum(1)
    inv = torch.where(mass > 0, 1.0 / torch.where(mass > 0, mass, torch.ones_like(mass)), torch.zeros_like(mass))
    # check the factorisation alpha_m(e) = u_e / Z_m(i) against the given weights
    for k, m in enumerate(order):
        a = alphas[m]
        if m == order[-1]:
            rec = u * inv[:, k].index_select(0, rows)
        else:
            rp, col = graphs[m]
            kk = row_index(rp, int(col.shape[0]))
            rec = u.index_select(0, perm[torch.searchsorted(sorted_keys, kk * n_src + col.long())]) * \
                inv[:, k].index_select(0, kk)
        if a.numel() and not bool(torch.allclose(rec, a, rtol=rtol, atol=1e-7 * float(a.abs().max()))):
            return None
    return NestedScales(row_ptr=row_ptr, col=big_col[order_e], u=u[order_e].contiguous(), inv_mass=inv, order=order)


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
