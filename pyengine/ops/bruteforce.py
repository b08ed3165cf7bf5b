"""Brute-force (exhaustive) k-nearest neighbours for points of any dimension.

The k-d tree of :mod:`pyengine.ops.neighbors` is the right tool in 2-D and 3-D;
in feature space (DGCNN-style dynamic graphs, ``d`` = 16 to 1024) a tree prunes
nothing, and an exhaustive tiled search is faster: on CPU, blocks of queries
against tiles of points through one GEMM each in the input dtype, every query
keeping the candidates that a rigorous bound on the GEMM's rounding cannot rule
out, whose distances are then recomputed exactly (memory O(threads x tile), not
the ``(M, N)`` matrix of ``torch.cdist`` + ``topk``); on CUDA, shared-memory tiles
of points streamed past one thread per query.

Clouds are given by offsets, as in :mod:`pyengine.ops.neighbors`: points sorted
by cloud with ``point_ptr (B + 1,)``, queries with ``query_ptr (B + 1,)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine


def knn_bruteforce(points: Tensor, queries: Tensor, k: int, *, point_ptr: Tensor | None = None,
                   query_ptr: Tensor | None = None, cosine: bool = False) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest points of every query by exhaustive search.

    Args:
        points: ``(N, d)`` float32/float64, any ``d >= 1``, any consistent unit.
        queries: ``(M, d)``, same dtype and device.
        k: neighbours per query (``>= 1``).
        point_ptr, query_ptr: int64 ``(B + 1,)`` cloud offsets (both or neither; default:
            one cloud). A query only sees the points of its own cloud.
        cosine: rank by cosine distance ``1 - <q, p> / (|q| |p|)`` (a zero vector is at
            distance 1 from everything) instead of the Euclidean distance.

    Returns:
        ``(dist (M, k), idx (M, k) int64)``, ascending distance, ties to the lower point
        index. Rows of a cloud with fewer than ``k`` points are padded with
        ``(inf, -1)``. Distances are Euclidean (not squared), or cosine distances, in
        the input dtype, recomputed in float64 from the coordinates. The result is exact
        on the input values: the same indices as a float64 search over the same float32
        numbers, near-ties and exact ties (lower index first) included. On CPU the
        float32 GEMM form ``|q|^2 + |p|^2 - 2 <q, p>`` (of coordinates shifted by the
        cloud's mean, scaled by a power of two) only pre-selects, widened by a forward
        error bound; the CUDA kernel ranks by differences in the input dtype. Points or
        queries with NaN coordinates have no neighbours / are no neighbours; a point with
        an infinite coordinate is a neighbour at distance ``inf`` only when a cloud has
        fewer than ``k`` finite points. Distances carry gradients to ``points`` and
        ``queries`` (recomputed from the indices), indices do not.
    """
    if not isinstance(points, Tensor) or not isinstance(queries, Tensor):
        raise TypeError("points and queries must be torch.Tensors")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if (point_ptr is None) != (query_ptr is None):
        raise ValueError("pass point_ptr and query_ptr together, or neither")
    if point_ptr is None:
        n = points.shape[0] if points.dim() else 0
        m = queries.shape[0] if queries.dim() else 0
        point_ptr = torch.tensor([0, n], dtype=torch.long, device=points.device)
        query_ptr = torch.tensor([0, m], dtype=torch.long, device=queries.device)
    dist, idx = _ops.knn_bruteforce(points.contiguous(), queries.contiguous(), point_ptr, query_ptr, int(k),
                                    bool(cosine))
    if torch.is_grad_enabled() and (points.requires_grad or queries.requires_grad):
        dist = _distances(points, queries, idx, cosine)
    return dist, idx


def _distances(points: Tensor, queries: Tensor, idx: Tensor, cosine: bool) -> Tensor:
    """Differentiable distances of the (query, idx) pairs; padded slots stay inf."""
    valid = idx >= 0
    nb = points[idx.clamp(min=0)]
    q = queries.unsqueeze(1)
    if cosine:
        den = q.norm(dim=-1) * nb.norm(dim=-1)
        safe = torch.where(den > 0, den, torch.ones_like(den))
        d = torch.where(den > 0, 1 - (q * nb).sum(-1) / safe, torch.ones_like(den))
    else:
        d = (q - nb).norm(dim=-1)
    return torch.where(valid, d, torch.full_like(d, float("inf")))


@torch.library.register_fake("pyengine::knn_bruteforce")
def _knn_bruteforce_fake(points, queries, point_ptr, query_ptr, k, cosine=False):
    m = queries.shape[0]
    return queries.new_empty((m, k)), queries.new_empty((m, k), dtype=torch.long)
