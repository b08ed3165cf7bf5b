"""Drop-ins for ``torch_cluster`` and PyG's graph utilities, on pyengine's kernels.

Same names, arguments and ``edge_index`` layout as ``torch_cluster`` /
``torch_geometric.utils``, so ``from pyengine.pyg import knn_graph`` replaces
``from torch_cluster import knn_graph``:

* :func:`radius`, :func:`radius_graph`, :func:`knn`, :func:`knn_graph`: neighbour
  graphs as ``edge_index (2, E)`` int64. ``radius`` / ``knn`` give
  ``[query (y) index, point (x) index]`` rows; the ``*_graph`` forms follow ``flow``
  (``"source_to_target"``: ``[neighbour, centre]``, PyG's message-passing default;
  ``"target_to_source"``: ``[centre, neighbour]``). Edges are grouped by centre.
* :func:`fps`: farthest point sampling.
* :func:`softmax`, :func:`log_softmax`: PyG's ``softmax(src, index, ptr, num_nodes, dim)``
  (and ``torch_scatter``'s log-softmax), unsorted ``index`` allowed (no sort).

Points may be float16 / bfloat16 (searched in float32, which holds their values
exactly), float32 or float64, in any dimension: 1-D inputs and ``d = 1`` are padded
to 2-D for the k-d tree, ``d`` in {2, 3} uses the k-d tree, larger ``d`` (and cosine
distance) the tiled brute-force kernel (:func:`pyengine.ops.knn_bruteforce`).

Where pyengine differs from torch_cluster, on purpose:

* ``radius``: a point at distance exactly ``r`` counts (``<= r``; torch_cluster uses ``< r``).
* ``max_num_neighbors`` keeps the *nearest* neighbours (ties: lower index), not an
  arbitrary subset as torch_cluster's CPU and CUDA kernels do; ``None`` means no limit.
* ``loop=False`` removes the self-loop *before* truncating to ``max_num_neighbors`` / ``k``,
  so every node gets ``min(k, cloud size - 1)`` neighbours even when duplicate points tie
  with it (torch_cluster asks for ``k + 1`` and drops self only if it came back).
* A batch vector given for one side only treats the other side as one cloud with id 0
  (torch_cluster asserts); ``r = inf`` gives all pairs of each cloud, guarded by ``max_pairs``.
* ``knn`` with ``k`` larger than a cloud returns that cloud's ``min(k, n)`` points, as
  torch_cluster does; :func:`pyengine.ops.knn_bruteforce` keeps the padded ``(M, k)`` form.
* ``num_workers`` is accepted and ignored (the kernels use all OpenMP threads / the GPU).

``torch.compile(fullgraph=True)``: the graph builders trace without graph breaks when
``batch_size`` is given (otherwise ``batch.max()`` is read on the host) and, for
:func:`softmax` / :func:`log_softmax`, when ``num_nodes`` is given. Under tracing the value
checks of batch vectors are skipped (they run in eager mode), kNN searches every cloud with
the exact brute-force kernel (the k-d tree needs cloud sizes read on the host), and
``radius_graph`` always applies its nearest-first truncation pass; the results are the same.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .ops import segment as _segment
from .ops.bruteforce import knn_bruteforce
from .ops.sampling import farthest_point_sampling

_ops = torch.ops.pyengine
DEFAULT_MAX_PAIRS = 1 << 28  # all-pairs graphs (r = inf) larger than this raise instead of exhausting memory

__all__ = ["fps", "knn", "knn_graph", "log_softmax", "radius", "radius_graph", "softmax"]


# --------------------------------------------------------------------------- input handling


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def _points(x, name: str) -> Tensor:
    """``(N, d)`` coordinates in a dtype the kernels take (half / bfloat16 -> float32, exact)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 1:
        x = x.view(-1, 1)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, d) or (N,), got {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    elif x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x.contiguous()


def _num_clouds(batch_x: Tensor | None, batch_y: Tensor | None, batch_size: int | None) -> int:
    if batch_size is not None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return int(batch_size)
    b = 1
    for v in (batch_x, batch_y):
        if isinstance(v, Tensor) and v.numel():
            b = max(b, int(v.max()) + 1)
    return b


def _ptr(batch: Tensor | None, n: int, num_clouds: int, name: str, device) -> Tensor:
    """Cloud offsets ``(B + 1,)`` of a sorted batch vector; no vector: every row in cloud 0."""
    if batch is None:
        ptr = torch.full((num_clouds + 1,), n, dtype=torch.long, device=device)
        ptr[0] = 0
        return ptr
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D tensor with one entry per point ({n})")
    if batch.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32, got {batch.dtype}")
    if batch.device.type != torch.device(device).type:
        raise ValueError(f"{name} is on {batch.device}, the points on {device}")
    batch = batch.long()
    if n and not _tracing():
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(f"{name} must be sorted (non-decreasing), as PyG batch vectors are")
        lo, hi = int(batch.min()), int(batch.max())
        if lo < 0 or hi >= num_clouds:
            raise ValueError(f"{name} has cloud ids outside [0, batch_size = {num_clouds})")
    return torch.searchsorted(batch, torch.arange(num_clouds + 1, device=batch.device))


def _max_num(max_num_neighbors, name="max_num_neighbors") -> int | None:
    if max_num_neighbors is None:
        return None
    if isinstance(max_num_neighbors, bool) or int(max_num_neighbors) != max_num_neighbors or max_num_neighbors < 1:
        raise ValueError(f"{name} must be None or an integer >= 1, got {max_num_neighbors!r}")
    return int(max_num_neighbors)


def _check_flow(flow: str) -> None:
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"flow must be 'source_to_target' or 'target_to_source', got {flow!r}")


def _empty_edges(device) -> Tensor:
    return torch.empty((2, 0), dtype=torch.long, device=device)


# --------------------------------------------------------------------------- kNN core (padded rows)


def _pad2(x: Tensor) -> Tensor:
    return torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1) if x.shape[1] == 1 else x


def _knn_padded(x: Tensor, y: Tensor, k: int, ptr_x: Tensor, ptr_y: Tensor, cosine: bool) -> tuple[Tensor, Tensor]:
    """``(dist (M, k), idx (M, k))`` ascending, padded with ``(inf, -1)`` in clouds of fewer than k points."""
    if cosine or x.shape[1] > 3 or _tracing():
        # Under torch.compile the cloud sizes cannot be read to choose the k-d tree, whose
        # search needs k points per cloud: the exact brute-force kernel serves every cloud.
        return knn_bruteforce(x, y, k, point_ptr=ptr_x, query_ptr=ptr_y, cosine=cosine)
    xs, ys = _pad2(x), _pad2(y)
    sizes = ptr_x[1:] - ptr_x[:-1]
    has_queries = ptr_y[1:] > ptr_y[:-1]
    small = (sizes < k) & has_queries
    if not bool(small.any()):  # every cloud with queries has k points: the k-d tree alone
        tree = _ops.kdtree_build(xs, ptr_x, 16)
        return _ops.kdtree_knn(xs, *tree, ys, ptr_y, k)
    if bool(small[has_queries].all()):  # every such cloud is small: brute force over a few points each
        return knn_bruteforce(xs, ys, k, point_ptr=ptr_x, query_ptr=ptr_y)
    # Mixed: the k-d tree on the large clouds, brute force on the small ones, merged.
    dist = torch.full((y.shape[0], k), math.inf, dtype=x.dtype, device=x.device)
    idx = torch.full((y.shape[0], k), -1, dtype=torch.long, device=x.device)
    cloud_x = torch.repeat_interleave(torch.arange(sizes.shape[0], device=x.device), sizes)
    cloud_y = torch.repeat_interleave(torch.arange(sizes.shape[0], device=x.device), ptr_y[1:] - ptr_y[:-1])
    for part in (small, ~small):
        sel_x = torch.nonzero(part[cloud_x]).flatten()
        sel_y = torch.nonzero(part[cloud_y]).flatten()
        if sel_y.numel() == 0 or sel_x.numel() == 0:  # no queries, or no points: rows stay (inf, -1)
            continue
        sub_sizes = torch.where(part, sizes, torch.zeros_like(sizes))
        sub_qsizes = torch.where(part, ptr_y[1:] - ptr_y[:-1], torch.zeros_like(sizes))
        px = torch.cat([sizes.new_zeros(1), torch.cumsum(sub_sizes, 0)])
        py = torch.cat([sizes.new_zeros(1), torch.cumsum(sub_qsizes, 0)])
        if part is small:
            d, i = knn_bruteforce(xs[sel_x], ys[sel_y], k, point_ptr=px, query_ptr=py)
        else:
            sub = xs[sel_x].contiguous()
            tree = _ops.kdtree_build(sub, px, 16)
            d, i = _ops.kdtree_knn(sub, *tree, ys[sel_y].contiguous(), py, k)
        dist[sel_y] = d
        idx[sel_y] = torch.where(i >= 0, sel_x[i.clamp(min=0)], i)
    return dist, idx


def _padded_to_edges(idx: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    rows = torch.arange(idx.shape[0], device=idx.device).unsqueeze(1).expand_as(idx)
    return rows[keep], idx[keep]


def knn(x: Tensor, y: Tensor, k: int, batch_x: Tensor | None = None, batch_y: Tensor | None = None,
        cosine: bool = False, num_workers: int = 1, batch_size: int | None = None) -> Tensor:
    """For every point of ``y``, its ``k`` nearest points of ``x`` (same cloud), as ``edge_index``.

    Args:
        x: ``(N, d)`` or ``(N,)`` points; y: ``(M, d)`` or ``(M,)`` queries (same ``d``).
        k: neighbours per query; a cloud with fewer points gives all of them (``min(k, n)``).
        batch_x, batch_y: sorted cloud ids ``(N,)`` / ``(M,)`` (either may be omitted: cloud 0).
        cosine: rank by cosine distance instead of Euclidean.
        batch_size: number of clouds (skips reading ``batch.max()``).

    Returns:
        ``(2, E)`` int64 ``[y index, x index]``, grouped by query, nearest first.
    """
    x, y = _points(x, "x"), _points(y, "y")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if x.shape[1] != y.shape[1] and x.numel() and y.numel():
        raise ValueError(f"x and y must have the same number of coordinates, got {x.shape[1]} and {y.shape[1]}")
    b = _num_clouds(batch_x, batch_y, batch_size)
    ptr_x = _ptr(batch_x, x.shape[0], b, "batch_x", x.device)
    ptr_y = _ptr(batch_y, y.shape[0], b, "batch_y", y.device)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return _empty_edges(x.device)
    y = y.to(x.dtype)
    _, idx = _knn_padded(x, y, int(k), ptr_x, ptr_y, cosine)
    row, col = _padded_to_edges(idx, idx >= 0)
    return torch.stack([row, col])


def knn_graph(x: Tensor, k: int, batch: Tensor | None = None, loop: bool = False, flow: str = "source_to_target",
              cosine: bool = False, num_workers: int = 1, batch_size: int | None = None) -> Tensor:
    """The k-nearest-neighbour graph of a (batched) point cloud, as ``edge_index (2, E)``.

    Every node gets its ``min(k, n - 1)`` nearest other nodes of its cloud (``min(k, n)``
    with ``loop=True``, itself included). ``flow="source_to_target"`` gives
    ``[neighbour, node]`` rows (messages flow from neighbours to the node).
    """
    _check_flow(flow)
    x = _points(x, "x")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    b = _num_clouds(batch, None, batch_size)
    ptr = _ptr(batch, x.shape[0], b, "batch", x.device)
    if x.shape[0] == 0:
        return _empty_edges(x.device)
    kk = int(k) + (0 if loop else 1)
    _, idx = _knn_padded(x, x, kk, ptr, ptr, cosine)
    keep = idx >= 0
    if not loop:
        is_self = idx == torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        keep = keep & ~is_self
        # A row whose self did not come back (more than k duplicates of it with lower
        # indices) holds k + 1 others: drop its farthest.
        keep[:, -1] &= is_self.any(dim=1)
    center, nb = _padded_to_edges(idx, keep)
    return torch.stack([nb, center] if flow == "source_to_target" else [center, nb])


# --------------------------------------------------------------------------- radius core (CSR)


def _radius_csr(x: Tensor, y: Tensor, r: float, ptr_x: Tensor, ptr_y: Tensor, max_num: int | None,
                max_pairs: int) -> tuple[Tensor, Tensor]:
    """CSR ``(row_ptr (M + 1,), col)`` of x-points within r (<= r) of each y, nearest ``max_num`` kept."""
    m = y.shape[0]
    if math.isfinite(r) and x.shape[1] <= 3:
        xs, ys = _pad2(x), _pad2(y)
        tree = _ops.kdtree_build(xs, ptr_x, 16)
        radius_t = torch.full((m,), r, dtype=x.dtype, device=x.device)
        return _ops.kdtree_radius(xs, *tree, ys, ptr_y, radius_t, -1 if max_num is None else max_num)
    # r = inf, or d > 3: the nearest max_num (or all) points by exhaustive search, then the radius test.
    k = max_num
    if k is None:
        sizes = ptr_x[1:] - ptr_x[:-1]
        k = max(int(sizes.max()), 1) if sizes.numel() else 1
    if m * k > max_pairs:
        raise ValueError(f"this graph may hold up to {m} x {k} = {m * k} pairs, more than max_pairs = {max_pairs}; "
                         "set max_num_neighbors or raise max_pairs")
    dist, idx = _knn_padded(x, y, k, ptr_x, ptr_y, cosine=False)
    keep = (idx >= 0) & (dist <= r)
    # rows sorted by point index, as the k-d tree returns them
    idx = torch.where(keep, idx, torch.full_like(idx, torch.iinfo(torch.long).max))
    idx, _ = torch.sort(idx, dim=1)
    keep, _ = torch.sort(keep.to(torch.int8), dim=1, descending=True)
    keep = keep.bool()
    row_ptr = torch.cat([idx.new_zeros(1), torch.cumsum(keep.sum(1), 0)])
    return row_ptr, idx[keep]


def _check_r(r) -> float:
    r = float(r)
    if math.isnan(r) or r < 0:
        raise ValueError(f"r must be >= 0 (inf allowed), got {r}")
    return r


def _csr_rows(row_ptr: Tensor, nnz: int) -> Tensor:
    return _segment.row_index(row_ptr, nnz)


def radius(x: Tensor, y: Tensor, r: float, batch_x: Tensor | None = None, batch_y: Tensor | None = None,
           max_num_neighbors: int | None = 32, num_workers: int = 1, batch_size: int | None = None, *,
           max_pairs: int = DEFAULT_MAX_PAIRS) -> Tensor:
    """For every point of ``y``, the points of ``x`` (same cloud) within distance ``r``, as ``edge_index``.

    Args:
        x: ``(N, d)`` / ``(N,)`` points; y: ``(M, d)`` / ``(M,)`` queries; any ``d``.
        r: radius in the points' unit; a point at distance exactly ``r`` counts; ``inf``
            gives every pair of the cloud (then ``max_pairs`` bounds ``M * max_num_neighbors``
            or ``M * largest cloud``).
        max_num_neighbors: keep each query's nearest ``max_num_neighbors`` (ties: lower
            index); ``None``: all.
        batch_x, batch_y, batch_size: as in :func:`knn`.

    Returns:
        ``(2, E)`` int64 ``[y index, x index]``, grouped by query, each group by x index.
    """
    x, y = _points(x, "x"), _points(y, "y")
    r = _check_r(r)
    max_num = _max_num(max_num_neighbors)
    if x.shape[1] != y.shape[1] and x.numel() and y.numel():
        raise ValueError(f"x and y must have the same number of coordinates, got {x.shape[1]} and {y.shape[1]}")
    b = _num_clouds(batch_x, batch_y, batch_size)
    ptr_x = _ptr(batch_x, x.shape[0], b, "batch_x", x.device)
    ptr_y = _ptr(batch_y, y.shape[0], b, "batch_y", y.device)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return _empty_edges(x.device)
    row_ptr, col = _radius_csr(x, y.to(x.dtype), r, ptr_x, ptr_y, max_num, max_pairs)
    return torch.stack([_csr_rows(row_ptr, col.shape[0]), col])


def _truncate_nearest(x: Tensor, row: Tensor, col: Tensor, row_ptr: Tensor, max_num: int) -> Tensor:
    """Mask keeping, in every row, its ``max_num`` nearest entries (ties: lower col)."""
    d = (x[row] - x[col]).square().sum(1)
    order = torch.argsort(col, stable=True)
    order = order[torch.argsort(d[order], stable=True)]
    order = order[torch.argsort(row[order], stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    rank = rank - row_ptr[row]
    return rank < max_num


def radius_graph(x: Tensor, r: float, batch: Tensor | None = None, loop: bool = False,
                 max_num_neighbors: int | None = 32, flow: str = "source_to_target", num_workers: int = 1,
                 batch_size: int | None = None, *, max_pairs: int = DEFAULT_MAX_PAIRS) -> Tensor:
    """The radius graph of a (batched) point cloud, as ``edge_index (2, E)``.

    Every node is linked to the nodes of its cloud within ``r`` (``<= r``), at most its
    ``max_num_neighbors`` nearest (self excluded first unless ``loop``).
    ``flow="source_to_target"`` gives ``[neighbour, node]`` rows.
    """
    _check_flow(flow)
    x = _points(x, "x")
    r = _check_r(r)
    max_num = _max_num(max_num_neighbors)
    b = _num_clouds(batch, None, batch_size)
    ptr = _ptr(batch, x.shape[0], b, "batch", x.device)
    if x.shape[0] == 0:
        return _empty_edges(x.device)
    ask = None if max_num is None else max_num + (0 if loop else 1)
    row_ptr, col = _radius_csr(x, x, r, ptr, ptr, ask, max_pairs)
    row = _csr_rows(row_ptr, col.shape[0])
    if not loop:
        keep = row != col
        row, col = row[keep], col[keep]
        if max_num is not None and (_tracing() or row.numel()):
            counts = torch.bincount(row, minlength=x.shape[0])
            # self was cut by duplicates with lower indices (traced: always truncate, a no-op otherwise)
            if _tracing() or bool((counts > max_num).any()):
                rp = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
                keep = _truncate_nearest(x, row, col, rp, max_num)
                row, col = row[keep], col[keep]
    return torch.stack([col, row] if flow == "source_to_target" else [row, col])


# --------------------------------------------------------------------------- fps


def fps(src: Tensor, batch: Tensor | None = None, ratio: float | Tensor = 0.5, random_start: bool = True,
        batch_size: int | None = None, ptr: Tensor | None = None) -> Tensor:
    """Farthest point sampling, as ``torch_cluster.fps``.

    Args:
        src: ``(N, d)`` points (any ``d``; float16/bfloat16 sampled in float32).
        batch: sorted cloud ids ``(N,)``, or ``ptr`` ``(B + 1,)`` offsets instead.
        ratio: fraction in ``(0, 1]`` to keep: ``ceil(ratio * n)`` points per cloud (a
            float or a per-cloud ``(B,)`` tensor).
        random_start: first point uniformly at random per cloud; ``False``: the cloud's
            first point (deterministic).

    Returns:
        ``(S,)`` int64 indices into ``src``, cloud by cloud, in the order picked.
    """
    src = _points(src, "src")
    n = src.shape[0]
    if ptr is not None:
        if not isinstance(ptr, Tensor) or ptr.dim() != 1 or ptr.numel() < 1:
            raise ValueError("ptr must be a 1-D tensor of B + 1 cloud offsets")
        ptr = ptr.long()
    else:
        b = _num_clouds(batch, None, batch_size)
        ptr = _ptr(batch, n, b, "batch", src.device)
    sizes = ptr[1:] - ptr[:-1]
    if isinstance(ratio, Tensor):
        if not _tracing() and bool(((ratio <= 0) | (ratio > 1)).any()):
            raise ValueError("ratio must lie in (0, 1]")
        ratio_t = ratio.to(device=src.device, dtype=torch.float32)
    else:
        ratio = float(ratio)
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
        ratio_t = ratio
    counts = torch.minimum(torch.ceil(sizes.to(torch.float32) * ratio_t).long(), sizes)
    if random_start:
        start = (torch.rand(sizes.shape, device=src.device) * sizes).long()
        start = torch.minimum(start, (sizes - 1).clamp(min=0))
    else:
        start = torch.zeros_like(sizes)
    return farthest_point_sampling(src, ptr, counts, start)


# --------------------------------------------------------------------------- softmax


def _grouped(src: Tensor, index, ptr, num_nodes, dim: int, log: bool) -> Tensor:
    """(Log-)softmax of ``src`` along ``dim`` over CSR groups (``ptr``) or an unsorted ``index``."""
    if not isinstance(src, Tensor):
        raise TypeError(f"src must be a torch.Tensor, got {type(src).__name__}")
    if src.dim() == 0:
        raise ValueError("src must have at least one dimension")
    dim = dim + src.dim() if dim < 0 else dim
    if not 0 <= dim < src.dim():
        raise ValueError(f"dim {dim} is out of range for src of shape {tuple(src.shape)}")
    moved = src.movedim(dim, 0).contiguous()
    n = moved.shape[0]
    if ptr is not None:
        if not isinstance(ptr, Tensor) or ptr.dim() != 1:
            raise ValueError("ptr must be a 1-D tensor of group offsets")
        fn = _segment.segment_log_softmax if log else _segment.segment_softmax
        out = fn(moved, ptr.long())
    else:
        if index is None:
            raise ValueError("pass index or ptr")
        if not isinstance(index, Tensor) or index.dim() != 1 or index.shape[0] != n:
            raise ValueError(f"index must be a 1-D tensor with one entry per element along dim ({n})")
        if index.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"index must be int64 or int32, got {index.dtype}")
        if num_nodes is None:  # reads the index on the host, as PyG does; pass num_nodes to avoid it
            num_nodes = int(index.max()) + 1 if n else 0
        # the kernel checks the index range (one-line ValueError) and needs no sorted order
        out = _segment.index_softmax(moved, index, num_nodes, log=log)
    return out.movedim(0, dim)


def softmax(src: Tensor, index: Tensor | None = None, ptr: Tensor | None = None, num_nodes: int | None = None,
            dim: int = 0) -> Tensor:
    """Softmax of ``src`` over the groups that ``index`` (or ``ptr``) defines along ``dim``: PyG's
    ``torch_geometric.utils.softmax``.

    ``index`` need not be sorted: it goes to :func:`pyengine.ops.index_softmax` (group
    maxima, sums and outputs in three passes, no sort); ``ptr`` is CSR offsets of contiguous
    groups (:func:`pyengine.ops.segment_softmax`). Without ``num_nodes``, ``index.max()`` is
    read on the host (as PyG does); give it to stay free of host syncs and graph breaks under
    ``torch.compile(fullgraph=True)``. A group whose entries are all ``-inf`` gives zeros
    (PyG gives NaN). Differentiable (twice).
    """
    return _grouped(src, index, ptr, num_nodes, dim, log=False)


def log_softmax(src: Tensor, index: Tensor | None = None, ptr: Tensor | None = None, num_nodes: int | None = None,
                dim: int = 0) -> Tensor:
    """Log-softmax over the groups of ``index`` / ``ptr`` along ``dim`` (``torch_scatter.scatter_log_softmax``).

    A group whose entries are all ``-inf`` gives ``-inf``. Differentiable (twice).
    """
    return _grouped(src, index, ptr, num_nodes, dim, log=True)
