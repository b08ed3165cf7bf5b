"""Quadrature helpers shared by the model families' ``quadrature=True`` paths.

With quadrature on, an integral layer over a ball ``B(x, r)`` computes the weighted mean
``sum_j w_j k(x, y_j) f_j / sum_j w_j`` (``w_j`` the measure point ``j`` stands for, see
:mod:`pyengine.geometry.quadrature`) instead of the plain neighbour mean, so it converges
to ``(1/|B|) integral_B k f`` under refinement and resampling.

Neighbour caps stay memory guards only: :func:`uniform_cap` thins an over-full row by
keeping one point per cell of a grid (the point nearest the cell centre) and giving it the
summed weight of its cell, so the estimate stays unbiased where the nearest ``k`` would
favour whatever lies closest to the query.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import index_to_row_ptr, radius_search, row_index, segment_reduce

__all__ = ["check_weights", "mean_edge_weights", "quadrature_graph", "smooth_ball", "sink_normalize",
           "uniform_cap", "window_mass"]


def check_weights(weights: Tensor | None, n: int, dtype=None, device=None) -> Tensor | None:
    """``weights`` as an (n,) tensor of positive finite values (or None); one-line errors otherwise."""
    if weights is None:
        return None
    if not isinstance(weights, Tensor):
        raise TypeError(f"weights must be a torch.Tensor of shape ({n},), got {type(weights).__name__}")
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) (one quadrature weight per input point), "
                         f"got {tuple(weights.shape)}")
    if not weights.is_floating_point():
        weights = weights.to(torch.get_default_dtype())
    if not bool(torch.isfinite(weights).all()) or not bool((weights > 0).all()):
        raise ValueError("quadrature weights must be finite and > 0")
    return weights.to(dtype=dtype or weights.dtype, device=device or weights.device)


def default_weights(points: Tensor) -> Tensor:
    """k-nearest-neighbour density weights of a bare cloud (used when a model gets no weights)."""
    from ..geometry.quadrature import density_weights

    return density_weights(points.detach()).to(points.dtype)


@torch.no_grad()
def uniform_cap(points: Tensor, queries: Tensor, row_ptr: Tensor, col: Tensor, edge_w: Tensor, cap: int | None,
                dim: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Thin rows with more than ``cap`` edges to a spatially uniform subset, keeping their weight.

    Each over-full row ``i`` bins its sources on a grid centred on its query ``x_i`` with cell
    size ``s_i = 1.5 rho_i (V_m / cap)^(1/m)`` (``rho_i`` the farthest source's distance, ``m``
    the intrinsic dimension of the points, ``V_m`` the unit m-ball volume), growing 25% per
    round while the row still has more than ``cap`` occupied cells. Per occupied cell it keeps
    the source nearest the cell centre and gives it the summed edge weight of the cell, so
    each row keeps its total weight and the kept positions converge under refinement.
    Rows within the cap are unchanged.

    Args:
        points: (N, d) sources; queries: (M, d); row_ptr (M+1,), col (E,): the CSR graph;
        edge_w: (E,) weights; cap: the per-row limit (None: no thinning);
        dim: intrinsic dimension m (default :func:`pyengine.geometry.quadrature.intrinsic_dimension`).
    Returns the thinned ``(row_ptr, col, edge_w)``.
    """
    import math

    counts = row_ptr[1:] - row_ptr[:-1]
    if cap is None or col.numel() == 0 or int(counts.max()) <= cap:
        return row_ptr, col, edge_w
    if dim is None:
        from ..geometry.quadrature import intrinsic_dimension

        dim = intrinsic_dimension(points)
    m, e = counts.shape[0], col.shape[0]
    rows = row_index(row_ptr, e)
    colL = col.long()
    keep = ~(counts > cap)[rows]
    out_rows, out_cols, out_w = [rows[keep]], [colL[keep]], [edge_w[keep]]
    act_rows, act_cols, act_w = rows[~keep], colL[~keep], edge_w[~keep]
    off = points.index_select(0, act_cols) - queries.index_select(0, act_rows)
    rho = torch.zeros(m, dtype=off.dtype, device=off.device).scatter_reduce(
        0, act_rows, off.norm(dim=1), "amax", include_self=True)
    unit_ball = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
    cell = (1.5 * rho * (unit_ball / cap) ** (1.0 / dim)).clamp_min(torch.finfo(off.dtype).tiny)
    for _ in range(64):
        s_e = cell.index_select(0, act_rows)[:, None]
        rounded = torch.round(off / s_e)  # the query sits at a cell centre
        dist = (off - rounded * s_e).norm(dim=1)
        cells = rounded.long()
        cells = cells - cells.min(0).values
        n_ax = int(cells.max()) + 1
        key = act_rows.clone()
        for a in range(cells.shape[1]):
            key = key * n_ax + cells[:, a]
        uniq, group = torch.unique(key, return_inverse=True)
        g = uniq.shape[0]
        best = torch.full((g,), float("inf"), dtype=dist.dtype, device=dist.device).scatter_reduce(
            0, group, dist, "amin", include_self=True)
        idx = torch.arange(group.shape[0], device=group.device)
        cand = torch.where(dist <= best.index_select(0, group), idx, torch.full_like(idx, group.shape[0]))
        rep = torch.full((g,), group.shape[0], dtype=idx.dtype, device=idx.device).scatter_reduce(
            0, group, cand, "amin", include_self=True)
        g_w = torch.zeros(g, dtype=act_w.dtype, device=act_w.device).index_add_(0, group, act_w)
        rep_rows = act_rows.index_select(0, rep)
        kept = torch.bincount(rep_rows, minlength=m)
        fits = kept.index_select(0, rep_rows) <= cap
        out_rows.append(rep_rows[fits])
        out_cols.append(act_cols.index_select(0, rep)[fits])
        out_w.append(g_w[fits])
        still = (kept > cap).index_select(0, act_rows)
        if not bool(still.any()):
            break
        act_rows, act_cols, act_w, off = act_rows[still], act_cols[still], act_w[still], off[still]
        cell = cell * 1.25
    r, c, w = torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_w)
    order = torch.argsort(r * (points.shape[0] + 1) + c)
    return index_to_row_ptr(r[order], m), c[order].to(col.dtype), w[order]


def mean_edge_weights(row_ptr: Tensor, edge_w: Tensor) -> Tensor:
    """``edge_w / (sum of edge_w over the row)``: the weights of a quadrature-weighted mean."""
    total = segment_reduce(edge_w, row_ptr, "sum")
    rows = row_index(row_ptr, edge_w.shape[0])
    return edge_w / total.index_select(0, rows).clamp_min(torch.finfo(edge_w.dtype).tiny)


@torch.no_grad()
def quadrature_graph(points: Tensor, queries: Tensor, radius, weights: Tensor, cap: int | None,
                     chunk: int = 16384) -> tuple[Tensor, Tensor, Tensor]:
    """Radius graph from ``queries`` to ``points`` with per-edge quadrature weights, uniformly capped.

    The complete balls are searched (in chunks of ``chunk`` queries to bound memory) and
    over-full rows thinned by :func:`uniform_cap`. Returns ``(row_ptr, col, edge_w)`` where
    ``edge_w`` are the (aggregated) source weights, not yet normalised per row.
    """
    from ..geometry.quadrature import intrinsic_dimension

    m = queries.shape[0]
    dim = intrinsic_dimension(points) if cap is not None else None
    per_query = isinstance(radius, Tensor) and radius.dim() == 1
    ptrs, cols, ws = [], [], []
    offset = 0
    for a in range(0, max(m, 1), chunk):
        b = min(a + chunk, m)
        r = radius[a:b] if per_query else radius
        rp, c = radius_search(points, queries[a:b], r)
        rp, c, w = uniform_cap(points, queries[a:b], rp, c, weights.index_select(0, c.long()), cap, dim)
        ptrs.append(rp[1:] + offset if ptrs else rp + offset)
        offset += int(rp[-1])
        cols.append(c)
        ws.append(w)
    return torch.cat(ptrs), torch.cat(cols), torch.cat(ws)


def window_mass(radius: float, dim: int) -> float:
    """``integral of psi(|u| / r) du`` over a flat ``dim``-dimensional ball of radius ``r``.

    ``psi(q) = (1 - q^2)^2`` (:func:`smooth_ball`); ``= V_m r^m * m / 2 * B(m / 2, 3)``
    (``pi r^2 / 3`` on a surface, ``32 pi r^3 / 105`` in a volume): the measure a ball whose
    centre lies on a flat piece of the geometry sees, the scale of :func:`sink_normalize`.
    """
    import math

    m = float(dim)
    unit_ball = math.pi ** (m / 2) / math.gamma(m / 2 + 1)
    beta = math.gamma(m / 2) * math.gamma(3.0) / math.gamma(m / 2 + 3)
    return unit_ball * float(radius) ** dim * m / 2 * beta


def smooth_ball(points: Tensor, queries: Tensor, row_ptr: Tensor, col: Tensor, edge_w: Tensor, radius) -> Tensor:
    """``edge_w * psi(|y_j - x_i| / r)`` with the window ``psi(q) = (1 - q^2)^2`` (0 at and beyond ``r``).

    A hard ball's indicator is discontinuous: whether a source just inside the radius exists at all
    depends on the mesh, and with a few points per ball the quadrature of an indicator converges
    only like ``h / r``. The window makes the integrand vanish (with its slope) at the radius, so a
    source that enters the ball under refinement enters with zero weight.
    """
    rows = row_index(row_ptr, col.shape[0])
    q = (points.index_select(0, col.long()) - queries.index_select(0, rows)).norm(dim=1)
    q = q / (radius.index_select(0, rows) if isinstance(radius, Tensor) and radius.dim() == 1 else radius)
    return edge_w * (1 - q * q).clamp_min(0) ** 2


def sink_normalize(row_ptr: Tensor, mass: Tensor, sink: float) -> Tensor:
    """``mass_e / (sum of mass over the row + sink)``: a normalised integral that fades out on empty balls.

    A plain normalisation ``mass / sum(mass)`` gives the first source inside a nearly empty ball
    the whole weight 1, so the row's output jumps from 0 (no source) to ``O(1)`` at whatever
    resolution first puts a point there. With a fixed extra mass ``sink`` in the denominator (a
    fraction of :func:`window_mass`, in the units of ``mass``) a well-covered ball is barely
    changed and a ball the geometry only grazes contributes in proportion to the measure it sees.
    """
    total = segment_reduce(mass, row_ptr, "sum")
    rows = row_index(row_ptr, mass.shape[0])
    return mass / (total.index_select(0, rows) + sink).clamp_min(torch.finfo(mass.dtype).tiny)
