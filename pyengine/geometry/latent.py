"""Latent geometries for encoder-processor-decoder operators.

- :func:`latent_grid`: a regular grid over the (padded) bounding box, the latent
  space of GINO/GAOT-style models.
- :func:`regional_mesh`: RIGNO-style regional nodes, a seeded random subsample of
  the physical points, joined by radius edges whose radius follows the local
  sampling density, plus the encoder/decoder edges to the physical points.

All neighbor work runs through :mod:`pyengine.ops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor

from .. import ops
from ._common import as_points

if TYPE_CHECKING:
    from ..data.cache import DiskCache

__all__ = ["LatentGrid", "RegionalMesh", "latent_grid", "regional_mesh"]


@dataclass
class LatentGrid:
    """A regular grid. ``points`` (prod(shape), d) in C order ("ij" indexing: last axis
    fastest), ``shape`` the nodes per axis, ``lower``/``upper`` (d,) the grid's corners."""

    points: Tensor
    shape: tuple[int, ...]
    lower: Tensor
    upper: Tensor

    @property
    def spacing(self) -> Tensor:
        """(d,) distance between neighboring nodes per axis, ``extent / (n - 1)`` (0 on axes with one node).

        The one grid-cell convention of pyengine: GINO's ``radius_cells`` and GAOT's
        ``radii_cells`` are multiples of the largest entry.
        """
        n = torch.tensor(self.shape, dtype=self.lower.dtype, device=self.lower.device)
        return torch.where(n > 1, (self.upper - self.lower) / (n - 1).clamp_min(1), torch.zeros_like(n))


def latent_grid(points: Any, resolution: int | Sequence[int], *, padding: float = 0.05,
                bounds: tuple[Any, Any] | None = None) -> LatentGrid:
    """A regular grid covering the bounding box of ``points`` (or ``bounds``), padded.

    Args:
        points: (N, d) coordinates, d in {2, 3}; only their bounding box is used.
        resolution: nodes per axis, one int for all axes or one per axis (each >= 1;
            an axis with 1 node sits at the box's middle).
        padding: margin added on each side, as a fraction of the box's largest extent
            (so flat geometries still get a non-degenerate box along their thin axis).
        bounds: explicit ``(lower, upper)`` corners instead of the points' bounding box.
    """
    pts = as_points(points, "points")
    d = pts.shape[1]
    res = [int(resolution)] * d if isinstance(resolution, int) else [int(r) for r in resolution]
    if len(res) != d or min(res) < 1:
        raise ValueError(f"resolution must be an int >= 1 or {d} ints >= 1, got {resolution!r}")
    padding = float(padding)
    if not padding >= 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if bounds is None:
        if pts.shape[0] == 0:
            raise ValueError("points is empty; give bounds explicitly")
        lo, hi = pts.min(0).values, pts.max(0).values
    else:
        lo = torch.as_tensor(bounds[0], dtype=pts.dtype).reshape(-1)
        hi = torch.as_tensor(bounds[1], dtype=pts.dtype).reshape(-1)
        if lo.shape != (d,) or hi.shape != (d,) or bool((hi < lo).any()):
            raise ValueError(f"bounds must be two length-{d} corners with lower <= upper")
    margin = padding * float((hi - lo).max())
    lo, hi = lo - margin, hi + margin
    axes = [torch.linspace(float(lo[i]), float(hi[i]), res[i], dtype=pts.dtype) if res[i] > 1
            else ((lo[i] + hi[i]) / 2).reshape(1) for i in range(d)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, d)
    return LatentGrid(points=grid, shape=tuple(res), lower=lo, upper=hi)


@dataclass
class RegionalMesh:
    """RIGNO-style regional nodes with their graphs (all CSR, sorted by row, see pyengine.ops).

    Attributes:
        index: (R,) int64 indices of the regional nodes among the physical points (ascending).
        nodes: (R, d) their coordinates.
        radius: (R,) each node's support radius (density scaled).
        edges: regional-to-regional ``(row_ptr (R+1,), col)``: row i lists the nodes within
            ``radius[i]`` of node i (itself included). Directed: radii differ per node.
        encoder: ``(row_ptr (R+1,), col)``: row i lists the physical points within ``radius[i]``
            of node i (what the encoder aggregates into node i).
        decoder: ``(row_ptr (N+1,), col)``: row p lists the regional nodes whose ball holds
            physical point p, plus always p's nearest node, so no point is left without one.
    """

    index: Tensor
    nodes: Tensor
    radius: Tensor
    edges: tuple[Tensor, Tensor]
    encoder: tuple[Tensor, Tensor]
    decoder: tuple[Tensor, Tensor]

    @property
    def num_nodes(self) -> int:
        return int(self.index.shape[0])


def _union_csr(a: tuple[Tensor, Tensor], b_row: Tensor, b_col: Tensor, num_rows: int, num_cols: int):
    """CSR of the union of graph ``a`` and the edges (b_row[i], b_col[i]), duplicates removed."""
    a_rows = ops.row_index(a[0], a[1].shape[0])
    key = torch.cat([a_rows * num_cols + a[1].long(), b_row * num_cols + b_col])
    key = torch.unique(key)  # sorted: by row, then column
    rows, cols = key // num_cols, key % num_cols
    return ops.index_to_row_ptr(rows, num_rows), cols


def regional_mesh(points: Tensor, ratio: float, *, seed: int, k: int = 6, factor: float = 1.5,
                  min_nodes: int = 4, cache: "DiskCache | None" = None) -> RegionalMesh:
    """Subsample ``points`` into regional nodes and connect them with density-scaled radii.

    Args:
        points: (N, d) physical points, d in {2, 3}.
        ratio: fraction of the points kept as regional nodes, in (0, 1].
        seed: seeds the subsample (same seed and points, same mesh).
        k: a node's radius is ``factor`` times the distance to its ``k``-th nearest other
            regional node, so sparse regions get wide balls and dense ones narrow balls.
        factor: the radius scale; > 1 makes neighboring balls overlap.
        min_nodes: lower bound on the number of regional nodes (at least k + 1 are needed).
        cache: a :class:`pyengine.data.DiskCache`; the mesh is then stored under a hash of the
            points and every argument, and reused by later epochs and runs.
    """
    if not isinstance(points, Tensor) or not points.is_floating_point() or points.dim() != 2:
        raise TypeError("points must be a floating (N, d) torch tensor")
    ratio = float(ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not float(factor) > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    if cache is not None:
        from ..data.cache import content_hash

        key = content_hash(points, ratio, int(seed), int(k), float(factor), int(min_nodes))
        mesh = cache.get_or_compute("regional_mesh", key, lambda: regional_mesh(
            points.cpu(), ratio, seed=seed, k=k, factor=factor, min_nodes=min_nodes))
        return RegionalMesh(*(v.to(points.device) if isinstance(v, Tensor) else tuple(t.to(points.device) for t in v)
                              for v in (mesh.index, mesh.nodes, mesh.radius, mesh.edges, mesh.encoder, mesh.decoder)))
    n = points.shape[0]
    r_count = min(n, max(int(round(ratio * n)), int(min_nodes), k + 1))
    if r_count < k + 1:
        raise ValueError(f"{n} points give at most {n} regional nodes; k = {k} needs at least {k + 1}")
    gen = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(n, generator=gen)[:r_count].sort().values.to(points.device)
    nodes = points[index].contiguous()

    tree = ops.KDTree(nodes)
    dist, _ = tree.knn(nodes, k + 1)  # column 0 is the node itself
    radius = float(factor) * dist[:, k]
    edges = tree.radius(nodes, radius)
    encoder = ops.radius_search(points, nodes, radius)
    # decoder = transpose of the encoder, plus each point's nearest node for coverage
    t_ptr, t_col, _ = ops.csr_transpose(encoder[0], encoder[1], n)
    _, nearest = tree.knn(points, 1)
    decoder = _union_csr((t_ptr, t_col), torch.arange(n, device=points.device), nearest[:, 0], n, r_count)
    return RegionalMesh(index=index, nodes=nodes, radius=radius, edges=edges, encoder=encoder, decoder=decoder)
