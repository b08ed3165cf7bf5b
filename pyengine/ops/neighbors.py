"""Neighbor search on point clouds: k-d tree, radius (single and multi-scale) and kNN.

Points and queries are ``(N, d)`` / ``(M, d)`` float32 or float64 tensors with
``d`` in {2, 3}, in any consistent length unit. Batched clouds use sorted batch
vectors, as in torch-geometric: ``batch_points[j]`` is the cloud of point ``j``;
neighbors never cross clouds.

Radius results are CSR over the queries (see :mod:`pyengine.ops.segment`):
``row_ptr (M + 1,)`` and ``col (nnz,)`` holding point indices, each row sorted by
point index, ready for :func:`~pyengine.ops.segment_reduce` and
:func:`~pyengine.ops.spmm`. The searches are not differentiable (they return
indices); to differentiate distances, recompute them from the indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine
DEFAULT_LEAF_SIZE = 16


def _batch_ptr(batch: Tensor | None, n: int, num_batches: int, name: str, device) -> Tensor:
    """CSR-style offsets (num_batches + 1,) of a sorted batch vector (or one batch)."""
    if batch is None:
        return torch.tensor([0, n], dtype=torch.long, device=device)
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D tensor with one entry per row ({n})")
    if batch.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32, got {batch.dtype}")
    if batch.device != torch.device(device) and batch.device.type != torch.device(device).type:
        raise ValueError(f"{name} is on {batch.device}, expected {device}")
    if n and not torch.compiler.is_compiling():  # value checks: eager only (no graph breaks when traced)
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(f"{name} must be sorted (non-decreasing), as torch-geometric batch vectors are")
        if int(batch[0]) < 0:
            raise ValueError(f"{name} has negative entries")
        if int(batch[-1]) >= num_batches:
            raise ValueError(f"{name} has batch ids >= {num_batches}, the number of batches of the points")
    # offsets of a sorted vector, of a size known without reading it (fullgraph-friendly)
    return torch.searchsorted(batch.long(), torch.arange(num_batches + 1, device=batch.device))


def _num_batches(*batches: Tensor | None) -> int:
    last = 0
    for b in batches:
        if b is not None and b.numel():
            last = max(last, int(b[-1]))
    return last + 1


def _radius_tensor(radius, queries: Tensor) -> Tensor:
    m = queries.shape[0]
    if isinstance(radius, Tensor):
        if radius.dim() == 0:
            radius = radius.expand(m)
        if radius.shape != (m,):
            raise ValueError(f"radius must be a float or a tensor of shape (M,) = ({m},), got {tuple(radius.shape)}")
        if radius.device != queries.device:  # no silent copies between devices, as for the other inputs
            raise ValueError(f"radius is on {radius.device} but queries are on {queries.device}; "
                             "move both to the same device")
        return radius.to(device=queries.device, dtype=queries.dtype).contiguous()
    radius = float(radius)
    if not radius >= 0.0 or radius == float("inf"):
        raise ValueError(f"radius must be finite and >= 0, got {radius}")
    if queries.dtype.is_floating_point and radius > torch.finfo(queries.dtype).max:
        raise ValueError(f"radius {radius:g} is not representable in the points' dtype {queries.dtype} "
                         f"(max {torch.finfo(queries.dtype).max:g})")
    return torch.full((m,), radius, dtype=queries.dtype, device=queries.device)


def _max_neighbors(max_neighbors: int | None) -> int:
    if max_neighbors is None:
        return -1
    if int(max_neighbors) != max_neighbors or max_neighbors < 1:
        raise ValueError(f"max_neighbors must be None or an integer >= 1, got {max_neighbors!r}")
    return int(max_neighbors)


class KDTree:
    """A k-d tree over a point cloud (or a batch of clouds), built once and queried many times.

    Args:
        points: ``(N, d)`` float32/float64, ``d`` in {2, 3}. The tree lives on ``points.device``.
        batch: optional sorted ``(N,)`` batch vector; queries then pass their own.
        num_batches: number of clouds (default: ``batch[-1] + 1``); give it when later
            queries may belong to clouds past the last non-empty one.
        leaf_size: points per leaf (bucket); 8-32 is a good range.
    """

    def __init__(self, points: Tensor, batch: Tensor | None = None, *, num_batches: int | None = None,
                 leaf_size: int = DEFAULT_LEAF_SIZE):
        if not isinstance(points, Tensor):
            raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
        if int(leaf_size) < 1:
            raise ValueError(f"leaf_size must be >= 1, got {leaf_size}")
        self.points = points.contiguous()
        self.batched = batch is not None
        self.num_batches = int(num_batches) if num_batches is not None else _num_batches(batch)
        n = points.shape[0] if points.dim() >= 1 else 0
        self.batch_ptr = _batch_ptr(batch, n, self.num_batches, "batch (batch_points)", points.device)
        self.perm, self.nodes, self.bounds, self.roots = _ops.kdtree_build(self.points, self.batch_ptr, int(leaf_size))

    @property
    def device(self) -> torch.device:
        return self.points.device

    def _tree(self):
        return self.points, self.perm, self.nodes, self.bounds, self.roots

    def _query_ptr(self, queries: Tensor, batch: Tensor | None) -> Tensor:
        if not isinstance(queries, Tensor):
            raise TypeError(f"queries must be a torch.Tensor, got {type(queries).__name__}")
        if self.batched != (batch is not None):
            raise ValueError("pass batch vectors for both points and queries, or for neither")
        m = queries.shape[0] if queries.dim() >= 1 else 0
        return _batch_ptr(batch, m, self.num_batches, "batch_queries", queries.device)

    def radius(self, queries: Tensor, radius, *, max_neighbors: int | None = None,
               batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Points within ``radius`` of each query (distance <= radius) as CSR ``(row_ptr, col)``.

        ``radius``: a float or a per-query ``(M,)`` tensor. ``max_neighbors``: keep only the
        nearest ones per query (ties: lower index).
        """
        query_ptr = self._query_ptr(queries, batch)
        queries = queries.contiguous()
        return _ops.kdtree_radius(*self._tree(), queries, query_ptr, _radius_tensor(radius, queries),
                                  _max_neighbors(max_neighbors))

    def radius_multi(self, queries: Tensor, radii: Sequence[float], *, max_neighbors: int | None = None,
                     batch: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        """:meth:`radius` for several radii in one traversal; one ``(row_ptr, col)`` per radius."""
        radii = [float(r) for r in radii]
        if not radii:
            raise ValueError("radii must contain at least one radius")
        query_ptr = self._query_ptr(queries, batch)
        flat = _ops.kdtree_radius_multi(*self._tree(), queries.contiguous(), query_ptr, radii,
                                        _max_neighbors(max_neighbors))
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(radii))]

    def knn(self, queries: Tensor, k: int, *, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest points of each query: ``(dist (M, k), idx (M, k))``, ascending distance."""
        if int(k) != k or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if k > self.points.shape[0]:
            raise ValueError(f"k = {k} is larger than the number of points ({self.points.shape[0]})")
        query_ptr = self._query_ptr(queries, batch)
        dist, idx = _ops.kdtree_knn(*self._tree(), queries.contiguous(), query_ptr, int(k))
        if torch.is_grad_enabled() and (queries.requires_grad or self.points.requires_grad):
            # the search gives indices; distances are recomputed so they carry gradients
            dist = (queries.unsqueeze(1) - self.points[idx]).norm(dim=-1)
        return dist, idx


def _tree_for(points: Tensor, batch_points: Tensor | None, batch_queries: Tensor | None) -> KDTree:
    if (batch_points is None) != (batch_queries is None):
        raise ValueError("pass batch vectors for both points and queries (batch_points, batch_queries), or neither")
    return KDTree(points, batch_points, num_batches=_num_batches(batch_points, batch_queries))


def radius_search(points: Tensor, queries: Tensor, radius, *, max_neighbors: int | None = None,
                  batch_points: Tensor | None = None, batch_queries: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """All points within ``radius`` of each query, as CSR ``(row_ptr (M + 1,), col (nnz,))``.

    Args:
        points: ``(N, d)``; queries: ``(M, d)``; float32/float64, ``d`` in {2, 3}.
        radius: a float, or a per-query ``(M,)`` tensor; a point at distance exactly ``radius`` counts.
        max_neighbors: keep only each query's nearest ``max_neighbors`` (ties: lower index).
        batch_points, batch_queries: sorted batch vectors (both or neither).

    Builds a :class:`KDTree` each call; reuse one for repeated queries on a fixed cloud.
    """
    tree = _tree_for(points, batch_points, batch_queries)
    return tree.radius(queries, radius, max_neighbors=max_neighbors, batch=batch_queries)


def radius_search_multi(points: Tensor, queries: Tensor, radii: Sequence[float], *,
                        max_neighbors: int | None = None, batch_points: Tensor | None = None,
                        batch_queries: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
    """:func:`radius_search` for several radii in one tree traversal (multiscale encoders)."""
    tree = _tree_for(points, batch_points, batch_queries)
    return tree.radius_multi(queries, radii, max_neighbors=max_neighbors, batch=batch_queries)


def knn(points: Tensor, queries: Tensor, k: int, *, batch_points: Tensor | None = None,
        batch_queries: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest points of each query: ``(dist (M, k), idx (M, k))``, ascending distance.

    Distances are Euclidean (not squared); ties go to the lower point index. Raises
    ``ValueError`` if a query's cloud has fewer than ``k`` points. On the CPU, squared
    distances are compared in a wider type (float64 for float32 points), so far but finite
    points never get distance inf, and many identical points cost O(k) per query, not O(N).
    """
    tree = _tree_for(points, batch_points, batch_queries)
    return tree.knn(queries, k, batch=batch_queries)


# --------------------------------------------------------------------------- fake kernels (torch.compile)


@torch.library.register_fake("pyengine::kdtree_build")
def _kdtree_build_fake(points, batch_ptr, leaf_size):
    num_nodes = torch.library.get_ctx().new_dynamic_size()
    return (
        points.new_empty((points.shape[0],), dtype=torch.long),
        points.new_empty((num_nodes, 4), dtype=torch.long),
        points.new_empty((num_nodes, 2, points.shape[1])),
        points.new_empty((batch_ptr.shape[0] - 1,), dtype=torch.long),
    )


@torch.library.register_fake("pyengine::kdtree_radius")
def _kdtree_radius_fake(points, perm, nodes, bounds, roots, queries, query_ptr, radius, max_neighbors):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return queries.new_empty((queries.shape[0] + 1,), dtype=torch.long), queries.new_empty((nnz,), dtype=torch.long)


@torch.library.register_fake("pyengine::kdtree_radius_multi")
def _kdtree_radius_multi_fake(points, perm, nodes, bounds, roots, queries, query_ptr, radii, max_neighbors):
    out = []
    for _ in radii:
        nnz = torch.library.get_ctx().new_dynamic_size()
        out += [queries.new_empty((queries.shape[0] + 1,), dtype=torch.long),
                queries.new_empty((nnz,), dtype=torch.long)]
    return out


@torch.library.register_fake("pyengine::kdtree_knn")
def _kdtree_knn_fake(points, perm, nodes, bounds, roots, queries, query_ptr, k):
    m = queries.shape[0]
    return queries.new_empty((m, k)), queries.new_empty((m, k), dtype=torch.long)
