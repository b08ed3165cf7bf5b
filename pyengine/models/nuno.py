"""NUNO: the non-uniform neural operator of Liu et al. (2023), on pyengine's k-d partition.

Non-uniform data are split into k-d subdomains (:func:`pyengine.ops.kd_partition`,
balanced median splits, or :func:`kl_partition`, the paper's KL-optimised splits), each subdomain's points are interpolated to a uniform
subgrid over its box, an FNO runs on the subgrids, and the result is interpolated
back to any query points. Shapes (``L`` leaves, ``G = prod(subgrid)`` nodes per leaf)::

    points (N, d), features (N, C_in)
      -> subgrid input (L, C_in + 3d + 1, *subgrid)     inverse-distance interpolation (k nearest
                                                         points of the leaf), plus position channels
      -> lift -> FNO blocks (exchange between leaves, below) -> (L, hidden, *subgrid)
      -> multilinear interpolation at each query in its leaf -> project -> (M, C_out)

Engine kernels: the partition is ``kd_partition``; the points-to-grid interpolation is one
batched :func:`pyengine.ops.knn` (leaves as batches, so neighbours never cross a leaf)
and one :func:`pyengine.ops.spmm` over all leaves; grid-to-points is one ``spmm`` with
the ``2^d`` multilinear weights per query; the FNO blocks are :class:`pyengine.nn.FNOBlock`.
Nothing loops over leaves in Python. The interpolation structures depend on the
geometry only and are cached per geometry.

Exchange between subdomains (``exchange``):

* ``"stack"`` (the paper's): the ``L`` subgrids are stacked along the channel axis,
  so one FNO of width ``L * hidden`` sees every subdomain at once. This ties the model
  to ``leaves`` subdomains (a power of two, so median splits give exactly that many).
* ``"mean"``: the leaves are a batch of one shared-weight FNO; after every block each
  leaf receives a linear map of the mean over all leaves and nodes (global context).
* ``"none"``: the leaves are independent (a shared-weight FNO per subdomain).

Where this follows the paper and where it departs:

* follows: k-d tree decomposition into balanced subdomains, interpolation of each to
  a uniform grid, FNO on the grids with the subdomains stacked as channels, and
  interpolation back; the leaf size controls the interpolation error (more, smaller
  leaves at a fixed subgrid resolution resolve finer detail);
* splits (``split``): the paper builds its k-d tree so that the points are close to
  uniformly distributed within each subdomain: it measures the KL divergence between the
  subdomain's point density and the uniform density on its box, and picks split points
  that lower it. ``split="kl"`` does that (:func:`kl_partition`): the density is a
  histogram of ``kl_bins`` blocks per axis over the subdomain's tight box, each candidate
  split (every axis, ``kl_candidates`` planes evenly spaced over the middle 80% of the
  subdomain's extent) is scored by the
  point-weighted KL divergence of its two children, ``n_l KL_l + n_r KL_r``, and the leaf
  with the largest ``n KL`` is split next until there are ``leaves`` leaves (so split
  counts need not be balanced). ``split="median"`` (the default) is the balanced median
  split of :func:`pyengine.ops.kd_partition`, a departure;
* departs: the paper interpolates with scipy's ``griddata``; here the interpolation is
  k-nearest inverse-distance weighting (points to grid) and multilinear (grid to points). Grid nodes also carry
  their position, their leaf's extent and the distance to the nearest data point (so
  the FNO can tell surface from empty space on surface clouds). Queries outside every
  leaf box use the nearest box (clamped). Per-point quadrature ``weights`` from the
  shared base are accepted and ignored (the interpolation is not an integral).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn.fno import FNOBlock
from ..nn.mlp import ACTIVATIONS, activation, mlp
from ..ops import kd_partition, knn, row_index, spmm
from ..ops.partition import Partition
from .base import OperatorModel
from .registry import register

__all__ = ["LeafGrids", "NUNO", "NUNOConfig", "kl_partition", "leaf_grids"]

EXCHANGES = ("stack", "mean", "none")
SPLITS = ("median", "kl")


def _histogram_kl(pts: Tensor, member: Tensor, bins: int, lo: Tensor, hi: Tensor) -> Tensor:
    """KL divergence from uniform of the point histogram of each candidate subset.

    ``pts (n, d)``, ``member (S, n)`` bool: subset ``s`` is ``pts[member[s]]``, with tight box
    ``lo[s], hi[s]`` (``(S, d)``). The histogram has ``bins`` blocks per axis over that box (an
    axis of zero extent counts as one block). Returns ``(S,)`` ``sum_b p_b log(p_b B)``, ``B`` the
    number of blocks (0 for a uniform histogram, ``log B`` when every point falls in one block).
    """
    n, d = pts.shape
    x = pts.unsqueeze(0)
    ext = hi - lo
    flat = ext <= 1e-12 * (ext.amax(1, keepdim=True) + 1e-300)
    idx = ((x - lo[:, None]) / torch.where(flat, 1.0, ext)[:, None] * bins).floor().long().clamp(0, bins - 1)
    idx = torch.where(flat[:, None], 0, idx)
    key = (idx * (bins ** torch.arange(d, device=pts.device))).sum(-1)  # (S, n)
    counts = torch.zeros(member.shape[0], bins ** d, dtype=pts.dtype, device=pts.device)
    counts.scatter_add_(1, key, member.to(pts.dtype))
    total = counts.sum(1, keepdim=True).clamp_min(1)
    p = counts / total
    blocks = torch.where(flat, 1, bins).to(pts.dtype).log().sum(1)  # log B
    return (p * p.clamp_min(1e-300).log()).sum(1) + blocks


def kl_partition(points: Tensor, n_parts: int, bins: int = 8, candidates: int = 15, min_points: int = 1) -> Partition:
    """A k-d partition whose split points minimise the KL divergence from uniform (NUNO's splits).

    Greedy: start from one leaf; repeatedly take the leaf with the largest ``n KL`` (``n`` its
    points, ``KL`` :func:`_histogram_kl` of its points) that can still be split, and split it
    along the axis and at the plane (``candidates`` of them evenly spaced over [0.1, 0.9] of the
    leaf's extent; points on a plane go left) that minimise ``n_l KL_l + n_r KL_r``,
    until there are ``n_parts`` leaves (fewer when no leaf has ``2 * min_points`` points).
    Leaves are returned in tree order (left before right). The work per split is vectorised
    over the candidates; the loop runs over the ``n_parts - 1`` splits only.

    Returns:
        A :class:`~pyengine.ops.Partition` (``perm``, ``leaf_ptr``, tight ``boxes``; no halos).
    """
    if int(n_parts) != n_parts or n_parts < 1:
        raise ValueError(f"n_parts must be an integer >= 1, got {n_parts!r}")
    if points.dim() != 2 or points.shape[0] < 1:
        raise ValueError(f"kl_partition needs points of shape (N >= 1, d), got {tuple(points.shape)}")
    pts = points.detach().double()
    n, d = pts.shape
    min_points = max(1, int(min_points))
    fr = torch.linspace(0.1, 0.9, int(candidates), dtype=pts.dtype, device=pts.device) if candidates > 1 \
        else torch.full((1,), 0.5, dtype=pts.dtype, device=pts.device)

    def score(idx: Tensor) -> float:
        sub = pts[idx]
        one = torch.ones(1, idx.numel(), dtype=torch.bool, device=pts.device)
        return float(idx.numel() * _histogram_kl(sub, one, bins, sub.min(0).values[None], sub.max(0).values[None])[0])

    def best_split(idx: Tensor):
        m = idx.numel()
        best = None
        for a in range(d):
            order = idx[torch.argsort(pts[idx, a], stable=True)]
            sub = pts[order]
            # candidate planes evenly spaced across the leaf's extent; a plane's left child is every point
            # at or below it (points on the plane go left), at least min_points on each side
            x = sub[:, a].contiguous()
            planes = x[0] + fr * (x[-1] - x[0])
            sizes = torch.searchsorted(x, planes, right=True).clamp(min_points, m - min_points).unique()
            left = torch.arange(m, device=pts.device)[None] < sizes[:, None]  # (S, m)
            # tight boxes of every prefix (left child) and suffix (right child) by running min / max
            pre_lo, pre_hi = sub.cummin(0).values[sizes - 1], sub.cummax(0).values[sizes - 1]
            suf_lo = sub.flip(0).cummin(0).values.flip(0)[sizes]
            suf_hi = sub.flip(0).cummax(0).values.flip(0)[sizes]
            cost = sizes.to(pts.dtype) * _histogram_kl(sub, left, bins, pre_lo, pre_hi) + \
                (m - sizes).to(pts.dtype) * _histogram_kl(sub, ~left, bins, suf_lo, suf_hi)
            j = int(torch.argmin(cost))
            if best is None or float(cost[j]) < best[0] - 1e-12:
                k = int(sizes[j])
                best = (float(cost[j]), order[:k], order[k:])
        return best[1], best[2]

    leaves = [((), torch.arange(n, device=pts.device))]  # (path, point indices)
    scores = [score(leaves[0][1])]
    while len(leaves) < n_parts:
        ok = [i for i, (_, idx) in enumerate(leaves) if idx.numel() >= 2 * min_points and idx.numel() >= 2]
        if not ok:
            break
        i = max(ok, key=lambda j: (scores[j], leaves[j][1].numel(), -j))
        path, idx = leaves.pop(i)
        scores.pop(i)
        lo, hi = best_split(idx)
        leaves += [(path + (0,), lo), (path + (1,), hi)]
        scores += [score(lo), score(hi)]
    leaves.sort(key=lambda t: t[0])
    perm = torch.cat([idx for _, idx in leaves])
    sizes = torch.tensor([idx.numel() for _, idx in leaves], device=points.device)
    leaf_ptr = torch.zeros(len(leaves) + 1, dtype=torch.long, device=points.device)
    torch.cumsum(sizes, 0, out=leaf_ptr[1:])
    boxes = torch.stack([torch.stack([points[idx].min(0).values, points[idx].max(0).values]) for _, idx in leaves])
    return Partition(perm=perm.to(points.device), leaf_ptr=leaf_ptr, boxes=boxes)


@dataclass
class NUNOConfig:
    """NUNO settings.

    Attributes:
        hidden: channel width per subdomain.
        leaves: number of k-d subdomains (a power of two: median splits then give exactly this many).
        subgrid: uniform grid per subdomain (one entry per axis, each >= 2).
        modes: Fourier modes per subgrid axis (each <= subgrid; the last <= subgrid//2 + 1).
        fno_layers: FNO blocks.
        exchange: "stack" (the paper's), "mean" or "none" (see the module docstring).
        k_interp: nearest data points per grid node in the points-to-grid interpolation.
        padding: subdomain box padding, as a fraction of the box extent per side.
        activation: gelu, relu, silu or tanh.
        split: "median" (balanced median splits, the default) or "kl" (the paper's: split points
            chosen to minimise the KL divergence between the point density and uniform, see the
            module docstring).
        kl_bins: ``split="kl"``: histogram blocks per axis of the density estimate.
        kl_candidates: ``split="kl"``: candidate split planes per axis (evenly spaced over the middle 80%).
    """

    hidden: int = 32
    leaves: int = 8
    subgrid: tuple[int, ...] = (8, 8, 8)
    modes: tuple[int, ...] = (4, 4, 4)
    fno_layers: int = 4
    exchange: str = "stack"
    k_interp: int = 4
    padding: float = 0.05
    activation: str = "gelu"
    split: str = "median"
    kl_bins: int = 8
    kl_candidates: int = 15

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.fno_layers < 0:
            raise ValueError(f"NUNO needs hidden >= 1 and fno_layers >= 0, got {self.hidden}, {self.fno_layers}")
        if int(self.leaves) != self.leaves or self.leaves < 1 or self.leaves & (self.leaves - 1):
            raise ValueError(f"NUNO leaves must be a power of two >= 1, got {self.leaves!r}")
        if len(self.subgrid) != len(self.modes) or not 2 <= len(self.subgrid) <= 3:
            raise ValueError(f"NUNO subgrid {self.subgrid} and modes {self.modes} need the same 2 or 3 axes")
        if min(self.subgrid) < 2 or min(self.modes) < 1:
            raise ValueError(f"NUNO subgrid axes must be >= 2 and modes >= 1, got {self.subgrid}, {self.modes}")
        if any(m > n for m, n in zip(self.modes[:-1], self.subgrid[:-1])) or \
                self.modes[-1] > self.subgrid[-1] // 2 + 1:
            raise ValueError(f"NUNO modes {self.modes} do not fit subgrid {self.subgrid} (last axis <= n//2 + 1)")
        if self.exchange not in EXCHANGES:
            raise ValueError(f"NUNO exchange must be one of {EXCHANGES}, got {self.exchange!r}")
        if self.k_interp < 1:
            raise ValueError(f"NUNO k_interp must be >= 1, got {self.k_interp}")
        if not 0 <= self.padding <= 1:
            raise ValueError(f"NUNO padding must be in [0, 1], got {self.padding}")
        if self.split not in SPLITS:
            raise ValueError(f"NUNO split must be one of {SPLITS}, got {self.split!r}")
        if self.kl_bins < 2 or self.kl_candidates < 1:
            raise ValueError(f"NUNO needs kl_bins >= 2 and kl_candidates >= 1, got {self.kl_bins}, {self.kl_candidates}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"NUNO activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


@dataclass
class LeafGrids:
    """Uniform subgrids over the k-d leaves of one point cloud, with both interpolations.

    Attributes:
        nodes: ``(L * G, d)`` grid nodes, leaf-major, row-major (``ij``) within a leaf.
        lower, upper: ``(L, d)`` padded leaf boxes the subgrids span.
        shape: the subgrid shape (``G = prod(shape)``).
        row_ptr, col, weight: CSR over the nodes of the points-to-grid weights (rows sum to 1).
        nearest: ``(L * G,)`` distance from each node to its nearest point of the leaf, divided
            by the leaf's box diagonal.
        center, half: ``(d,)`` centre and half extent of the whole cloud (the global frame).
        boxes: ``(L, 2, d)`` the leaves' tight boxes (from the partition), which assign queries to leaves.
    """

    nodes: Tensor
    lower: Tensor
    upper: Tensor
    shape: tuple[int, ...]
    row_ptr: Tensor
    col: Tensor
    weight: Tensor
    nearest: Tensor
    center: Tensor
    half: Tensor
    boxes: Tensor

    @property
    def num_leaves(self) -> int:
        return self.lower.shape[0]

    def to_grid(self, values: Tensor) -> Tensor:
        """``values (N, C)`` at the points -> ``(L * G, C)`` at the grid nodes."""
        return spmm(self.row_ptr, self.col, self.weight.to(values.dtype), values)

    def leaf_of(self, queries: Tensor, chunk: int = 8192) -> Tensor:
        """``(M,)`` the leaf of each query: the nearest tight leaf box (inside: distance 0; ties: lowest
        index), so an input point belongs to its own leaf unless it lies on a shared face."""
        lo, hi = self.boxes[:, 0], self.boxes[:, 1]
        out = []
        for q in queries.split(chunk):
            gap = (q[:, None, :] - torch.maximum(torch.minimum(q[:, None, :], hi), lo)).square().sum(-1)
            out.append(gap.argmin(dim=1))
        return torch.cat(out) if out else queries.new_zeros(0, dtype=torch.long)

    def to_points(self, grid_values: Tensor, queries: Tensor) -> Tensor:
        """Multilinear interpolation of ``grid_values (L * G, C)`` at ``queries (M, d)`` -> ``(M, C)``."""
        return spmm(*self.interpolation(queries), grid_values)

    def interpolation(self, queries: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """CSR ``(row_ptr, col, weight)`` of the multilinear grid-to-query weights (``2^d`` per query)."""
        d, m = queries.shape[1], queries.shape[0]
        leaf = self.leaf_of(queries)
        lo, hi = self.lower[leaf], self.upper[leaf]
        n = torch.tensor(self.shape, device=queries.device)
        t = ((queries - lo) / (hi - lo)).clamp(0, 1) * (n - 1).to(queries.dtype)
        i0 = torch.minimum(t.floor().long(), n - 2)
        frac = t - i0.to(t.dtype)
        strides = [1] * d
        for a in range(d - 2, -1, -1):
            strides[a] = strides[a + 1] * self.shape[a + 1]
        strides = torch.tensor(strides, device=queries.device)
        corners = torch.cartesian_prod(*[torch.tensor([0, 1], device=queries.device)] * d).reshape(-1, d)  # (2^d, d)
        idx = ((i0[:, None, :] + corners[None]) * strides).sum(-1) + leaf[:, None] * int(torch.prod(n))
        w = torch.where(corners[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)  # (M, 2^d)
        row_ptr = torch.arange(0, m * 2 ** d + 1, 2 ** d, device=queries.device)
        return row_ptr, idx.reshape(-1), w.reshape(-1)


def leaf_grids(points: Tensor, leaves: int, shape, k: int = 4, padding: float = 0.05, split: str = "median",
               kl_bins: int = 8, kl_candidates: int = 15) -> LeafGrids:
    """Partition ``points (N, d)`` into ``leaves`` k-d subdomains (``split="median"``:
    :func:`~pyengine.ops.kd_partition`; ``"kl"``: :func:`kl_partition` with ``kl_bins`` and
    ``kl_candidates``) and build each one's uniform ``shape`` subgrid with the interpolation weights.

    A leaf of zero extent along an axis (flat or collinear points) gets 1% of its largest
    extent there (or 1e-3 of the cloud's extent; coincident points a width of 1e-3), so
    no box is degenerate.
    """
    shape = tuple(int(s) for s in shape)
    d = points.shape[1]
    if len(shape) != d or min(shape) < 2:
        raise ValueError(f"subgrid {shape} must have {d} axes of at least 2 nodes")
    if split == "kl":
        part = kl_partition(points, int(leaves), kl_bins, kl_candidates, min_points=min(int(k), points.shape[0]))
    elif split == "median":
        part = kd_partition(points, n_parts=int(leaves))
    else:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    L, G = part.num_leaves, 1
    for s in shape:
        G *= s
    lo_all, hi_all = points.min(0).values, points.max(0).values
    center, half = (lo_all + hi_all) / 2, (hi_all - lo_all) / 2
    scale = half.max()
    if not bool(scale > 0):
        scale = center.abs().max().clamp_min(1.0) * 1e-3
    half = half.clamp_min(float(scale) * 1e-3)
    lo, hi = part.boxes[:, 0], part.boxes[:, 1]
    ext = hi - lo
    ext = torch.maximum(ext, (0.01 * ext.max(dim=1, keepdim=True).values).clamp_min(2e-3 * float(scale)))
    mid = (lo + hi) / 2
    lower, upper = mid - ext * (0.5 + padding), mid + ext * (0.5 + padding)
    axes = [torch.linspace(0, 1, s, dtype=points.dtype, device=points.device) for s in shape]
    unit = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(G, d)
    nodes = (lower[:, None, :] + unit[None] * (upper - lower)[:, None, :]).reshape(L * G, d)
    sizes = part.leaf_ptr.diff()
    k = min(int(k), int(sizes.min()))
    leaf_of_point = row_index(part.leaf_ptr, points.shape[0])
    leaf_of_node = torch.arange(L, device=points.device).repeat_interleave(G)
    dist, idx = knn(points[part.perm].contiguous(), nodes.contiguous(), k, batch_points=leaf_of_point,
                    batch_queries=leaf_of_node)
    diag = (upper - lower).norm(dim=1)[leaf_of_node]
    w = 1.0 / (dist.square() + (1e-6 * diag[:, None]).square())
    w = w / w.sum(dim=1, keepdim=True)
    row_ptr = torch.arange(0, L * G * k + 1, k, device=points.device)
    return LeafGrids(nodes=nodes, lower=lower, upper=upper, shape=shape, row_ptr=row_ptr,
                     col=part.perm[idx].reshape(-1), weight=w.reshape(-1), nearest=dist[:, 0] / diag,
                     center=center, half=half, boxes=part.boxes)


@register("nuno", NUNOConfig)
class NUNO(OperatorModel):
    """NUNO on one interface: ``model(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: NUNOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.subgrid) != coord_dim:
            raise ValueError(f"NUNO subgrid {c.subgrid} must have coord_dim={coord_dim} axes")
        self.lift = mlp([in_channels + 3 * coord_dim + 1, c.hidden, c.hidden], c.activation)
        width = c.hidden * c.leaves if c.exchange == "stack" else c.hidden
        self.blocks = nn.ModuleList(FNOBlock(width, c.modes, activation=activation(c.activation))
                                    for _ in range(c.fno_layers))
        self.mix = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.fno_layers)) \
            if c.exchange == "mean" else None
        self.project = mlp([c.hidden, c.hidden, out_channels], c.activation)

    def _grids(self, points: Tensor) -> LeafGrids:
        c = self.config

        def compute():
            if points.shape[0] < c.leaves:
                raise ValueError(f"NUNO with leaves={c.leaves} needs at least {c.leaves} points, got {points.shape[0]}")
            grids = leaf_grids(points, c.leaves, c.subgrid, c.k_interp, c.padding, c.split, c.kl_bins,
                               c.kl_candidates)
            if c.exchange == "stack" and grids.num_leaves != c.leaves:
                raise ValueError(f"the k-d partition gave {grids.num_leaves} leaves, not leaves={c.leaves} "
                                 f"(exchange='stack' needs exactly that many); use exchange='mean' or 'none'")
            return grids

        return self.graphs.get("nuno-leaves", (points,), (c.leaves, tuple(c.subgrid), c.k_interp, c.padding, c.split,
                                                          c.kl_bins, c.kl_candidates), compute)

    def encode(self, points: Tensor, features: Tensor, weights: Tensor | None = None, **kwargs):
        """The subgrid latent state ``(grids, (L * G, hidden))``; ``weights`` are accepted and ignored."""
        if kwargs:
            raise ValueError(f"NUNO takes no conditioning {sorted(kwargs)}")
        c = self.config
        grids = self._grids(points)
        L, G, d = grids.num_leaves, grids.nodes.shape[0] // grids.num_leaves, self.coord_dim
        leaf_of_node = torch.arange(L, device=points.device).repeat_interleave(G)
        extent = ((grids.upper - grids.lower) / (2 * grids.half))[leaf_of_node]
        unit = (grids.nodes - grids.lower[leaf_of_node]) / (grids.upper - grids.lower)[leaf_of_node] * 2 - 1
        x = torch.cat([grids.to_grid(features), (grids.nodes - grids.center) / grids.half, unit, extent,
                       grids.nearest[:, None]], dim=1)
        g = self.lift(x).reshape(L, *c.subgrid, c.hidden).movedim(-1, 1)  # (L, hidden, *subgrid)
        for i, block in enumerate(self.blocks):
            if c.exchange == "stack":
                g = block(g.reshape(1, L * c.hidden, *c.subgrid)).reshape(L, c.hidden, *c.subgrid)
            else:
                g = block(g)
                if self.mix is not None:
                    ctx = self.mix[i](g.mean(dim=tuple(range(2, 2 + d))).mean(dim=0))  # (hidden,)
                    g = g + ctx.reshape(1, -1, *([1] * d))
        return grids, g.movedim(1, -1).reshape(L * G, c.hidden)

    def decode(self, state, queries: Tensor) -> Tensor:
        grids, h = state
        return self.project(grids.to_points(h, queries))
