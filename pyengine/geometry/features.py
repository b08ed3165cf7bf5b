"""Per-point geometric features: normals, curvature, signed distance, neighborhood embeddings.

Surface quantities (normals, curvature, closest points) come from trimesh. The
GAOT-style neighborhood statistics run on pyengine's own neighbor search and
segment reductions, so they work batched and on the GPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import ops
from ._common import as_points, as_trimesh

__all__ = [
    "EMBEDDING_NAMES",
    "curvature",
    "geometry_embedding",
    "normal_variation",
    "signed_distance",
    "vertex_normals",
    "winding_number",
]

# Column layout of geometry_embedding's output.
EMBEDDING_NAMES = (
    "count",
    "mean_dx", "mean_dy", "mean_dz",
    "var_dx", "var_dy", "var_dz",
    "pca_l1", "pca_l2", "pca_l3",
    "normal_x", "normal_y", "normal_z",
)


def vertex_normals(mesh: Any, dtype: torch.dtype | None = None) -> Tensor:
    """(N, 3) unit vertex normals of a triangle surface, one per input vertex.

    Computed on the cleaned surface (:func:`pyengine.geometry.normals.robust_vertex_normals`):
    angle-weighted face normals, wound consistently per component and outward on closed
    components; local PCA of the nearest surface vertices where the face normals cancel
    (double-sided sheets, folds) or a vertex belongs to no face. Never zero, never NaN.
    """
    from .normals import robust_vertex_normals

    tm = as_trimesh(mesh)
    n, _, _ = robust_vertex_normals(np.asarray(tm.vertices), np.asarray(tm.faces))
    return torch.as_tensor(n, dtype=dtype or torch.get_default_dtype())


def curvature(mesh: Any, radius: float, points: Any = None, dtype: torch.dtype | None = None
              ) -> tuple[Tensor, Tensor]:
    """Mean and Gaussian curvature proxies at ``points`` (default: the vertices), in 1/length, 1/length².

    trimesh's discrete curvature *measures* integrate curvature over the surface inside
    a ball of ``radius``; dividing by the ball's cross-section ``pi r^2`` (the area a
    ball cuts from a smooth surface, to leading order) turns them into densities. On a
    sphere of radius R this gives mean ≈ 1/R and Gaussian ≈ 1/R². ``radius`` should
    span a few edge lengths: smaller is noisier, larger smooths features away.

    Returns ``(mean (M,), gaussian (M,))``.
    """
    import trimesh

    radius = float(radius)
    if not radius > 0 or not math.isfinite(radius):
        raise ValueError(f"radius must be a positive finite length, got {radius}")
    tm = as_trimesh(mesh)
    pts = np.asarray(tm.vertices) if points is None else as_points(points, "points", torch.float64, (3,)).numpy()
    area = math.pi * radius * radius
    mean = trimesh.curvature.discrete_mean_curvature_measure(tm, pts, radius) / area
    gauss = trimesh.curvature.discrete_gaussian_curvature_measure(tm, pts, radius) / area
    dtype = dtype or torch.get_default_dtype()
    return torch.as_tensor(mean, dtype=dtype), torch.as_tensor(gauss, dtype=dtype)


def normal_variation(points: Tensor, normals: Tensor, radius: float, *, batch: Tensor | None = None) -> Tensor:
    """(N,) curvature proxy for point clouds: mean of ``1 - n_i . n_j`` over the neighbors
    ``j`` within ``radius`` of each point ``i`` (itself included).

    Needs no faces, only per-point unit normals (e.g. from :func:`sample_surface`). On a
    smooth surface with principal curvature k (a sphere: k = 1/R) it approaches
    ``k^2 r^2 / 4`` for small r; flat regions give 0, creases and thin features large values.
    Runs on :func:`pyengine.ops.radius_search` and :func:`pyengine.ops.segment_reduce`.
    """
    if not isinstance(points, Tensor) or not isinstance(normals, Tensor):
        raise TypeError("points and normals must be torch tensors")
    if normals.shape != points.shape:
        raise ValueError(f"normals must have the shape of points {tuple(points.shape)}, got {tuple(normals.shape)}")
    normals = normals.to(points.dtype)
    row_ptr, col = ops.radius_search(points, points, radius, batch_points=batch, batch_queries=batch)
    rows = ops.row_index(row_ptr, col.shape[0])
    return ops.segment_reduce(1.0 - (normals[rows] * normals[col]).sum(1), row_ptr, "mean")


def winding_number(mesh: Any, queries: Any, *, chunk: int = 1 << 18) -> Tensor:
    """(M,) float64 generalized winding number of a triangle surface at each query.

    The sum of the signed solid angles of all triangles seen from the query, over 4π
    (Van Oosterom-Strackee formula): ≈ 1 inside a closed, outward-wound surface,
    ≈ 0 outside, and a smooth in-between value near holes, so it still classifies
    inside/outside for slightly open or self-intersecting CAD surfaces. Cost is
    O(M·F), vectorised in ``chunk``-sized blocks of query-triangle pairs.
    """
    tm = as_trimesh(mesh)
    q = as_points(queries, "queries", torch.float64, (3,))
    tri = torch.tensor(np.asarray(tm.triangles), dtype=torch.float64)  # (F, 3, 3)
    center = tri.reshape(-1, 3).mean(0) if tri.numel() else q.new_zeros(3)
    A, B, C = (tri[:, i] - center for i in range(3))  # (F, 3) each; centred to limit cancellation
    q = q - center
    # With a = A - q etc., every term of the formula is multilinear in q, so per pair it
    # reduces to per-triangle constants and (M, 3) @ (3, F) products instead of (M, F, 3) temporaries:
    #   a.(b x c) = A.(B x C) - q.(A x B + B x C + C x A),  a.b = A.B - q.(A + B) + |q|^2
    det0 = (A * torch.cross(B, C, dim=1)).sum(1)
    nrm = torch.cross(A, B, dim=1) + torch.cross(B, C, dim=1) + torch.cross(C, A, dim=1)
    sq = [(X * X).sum(1) for X in (A, B, C)]
    dots = [(A * B).sum(1), (B * C).sum(1), (C * A).sum(1)]
    sums_t = torch.cat([A + B, B + C, C + A, A, B, C, nrm], dim=0).t()  # (3, 7F), block-major
    f = tri.shape[0]
    out = torch.empty(q.shape[0], dtype=torch.float64)
    step = max(1, chunk // max(1, f))
    for s in range(0, q.shape[0], step):
        qs = q[s:s + step]
        q2 = (qs * qs).sum(1, keepdim=True)
        proj = (qs @ sums_t).reshape(len(qs), 7, f)
        ab, bc, ca = (dots[i] - proj[:, i] + q2 for i in range(3))
        la, lb, lc = ((sq[i] - 2 * proj[:, 3 + i] + q2).clamp_min(0).sqrt() for i in range(3))
        det = det0 - proj[:, 6]
        den = la * lb * lc + ab * lc + bc * la + ca * lb
        out[s:s + step] = torch.atan2(det, den).sum(1) / (2.0 * math.pi)
    return out


def signed_distance(mesh: Any, queries: Any, *, signed: bool | None = None, sign_method: str = "winding",
                    dtype: torch.dtype | None = None) -> Tensor:
    """(M,) distance from each query to the surface: negative inside, positive outside.

    The magnitude is the exact distance to the closest point on the triangles
    (trimesh's closest-point query). The sign needs a closed surface:

    - ``signed=None`` (default): signed if the mesh is watertight, else unsigned (>= 0).
    - ``signed=True``: always signed; ``sign_method="winding"`` (generalized winding
      number > 1/2 means inside; robust to small holes) or ``"ray"`` (trimesh's ray
      parity test; needs a watertight mesh).
    - ``signed=False``: unsigned distance, for open surfaces (sheets, unclosed scans),
      where inside and outside are undefined.
    """
    import trimesh

    if sign_method not in ("winding", "ray"):
        raise ValueError(f"sign_method must be 'winding' or 'ray', got {sign_method!r}")
    tm = as_trimesh(mesh)
    q = as_points(queries, "queries", torch.float64, (3,)).numpy()
    _, dist, _ = trimesh.proximity.closest_point(tm, q)
    dist = np.asarray(dist, dtype=np.float64)
    if signed is None:
        signed = bool(tm.is_watertight)
    if signed:
        if sign_method == "winding":
            inside = winding_number(tm, q).numpy() > 0.5
        else:
            inside = np.asarray(tm.contains(q), dtype=bool)
        dist = np.where(inside, -dist, dist)
    return torch.as_tensor(dist, dtype=dtype or torch.get_default_dtype())


def geometry_embedding(points: Tensor, tokens: Tensor, radius: float | Tensor, *,
                       batch_points: Tensor | None = None, batch_tokens: Tensor | None = None,
                       max_neighbors: int | None = None, scale: bool = True,
                       graph: tuple[Tensor, Tensor] | None = None,
                       edge_weights: Tensor | None = None, sink: float = 0.0) -> Tensor:
    """GAOT-style statistics of each token's neighborhood of input points.

    For token ``t`` with neighbors ``N(t) = {p : |p - t| <= r}`` and offsets
    ``d = (p - t) / r`` (or ``p - t`` when ``scale=False``), the 13 columns
    (names in :data:`EMBEDDING_NAMES`) are:

    - ``count``: |N(t)|,
    - ``mean_d*``: mean offset (3) — where the local mass sits relative to the token,
    - ``var_d*``: per-axis variance of the offsets (3),
    - ``pca_l1..3``: eigenvalues of the offset covariance, descending (3) — line-,
      sheet- or blob-like neighborhoods,
    - ``normal_*``: eigenvector of the smallest eigenvalue (3), i.e. the local surface
      normal for surface samples. Its sign is made canonical (largest-magnitude
      component positive) because PCA cannot orient it. Zero when |N(t)| < 3.

    Empty neighborhoods give all-zero rows. 2-D inputs give the same layout with the
    z columns zero.

    Args:
        points: (N, d) input points; tokens: (M, d) token positions (same dtype, d in {2, 3}).
        radius: a length, or a per-token (M,) tensor.
        batch_points, batch_tokens: sorted batch vectors for batched clouds (both or neither).
        max_neighbors: keep only the nearest ones (see :func:`pyengine.ops.radius_search`).
        graph: the CSR ``(row_ptr, col)`` of exactly that search, when the caller already has it
            (models that aggregate over the same balls); skips the search.
        edge_weights: optional (E,) quadrature weights of the graph's edges (their sources'
            areas or volumes): ``count`` becomes the ball's measure ``sum w`` and the means and
            covariance are weighted, so the statistics converge under mesh refinement.
        sink: with ``edge_weights``, an extra mass (in the units of the weights) in the means'
            normalisation, ``sum w (.) / (sum w + sink)``: the statistics of a ball the geometry
            barely touches fade to 0 instead of jumping to O(1) when its first point appears
            (used with windowed weights, :func:`pyengine.models._quadrature.smooth_ball`).
    Returns:
        (M, 13) tensor in the dtype of ``points``.
    """
    if not isinstance(points, Tensor) or not isinstance(tokens, Tensor):
        raise TypeError("points and tokens must be torch tensors")
    if points.dtype != tokens.dtype or not points.is_floating_point():
        raise TypeError(f"points and tokens must share a floating dtype, got {points.dtype} and {tokens.dtype}")
    if not float(sink) >= 0:
        raise ValueError(f"sink must be a mass >= 0, got {sink}")
    d = points.shape[1]
    if graph is None:
        graph = ops.radius_search(points, tokens, radius, max_neighbors=max_neighbors, batch_points=batch_points,
                                  batch_queries=batch_tokens)
    row_ptr, col = graph
    m = tokens.shape[0]
    per_row = row_ptr[1:] - row_ptr[:-1]
    counts = per_row.to(points.dtype)
    rows = ops.row_index(row_ptr, col.shape[0])
    off = points[col] - tokens[rows]  # (E, d)
    if scale:
        r = torch.as_tensor(radius, dtype=points.dtype, device=points.device)
        off = off / (r[rows, None] if r.dim() == 1 else r)
    if edge_weights is None:
        mean = ops.segment_reduce(off, row_ptr, "mean")  # (M, d)
        second = ops.segment_reduce(off.unsqueeze(2) * off.unsqueeze(1), row_ptr, "mean")  # (M, d, d)
    else:
        if edge_weights.shape != col.shape:
            raise ValueError(f"edge_weights must have shape ({col.shape[0]},), got {tuple(edge_weights.shape)}")
        ew = edge_weights.to(points.dtype)
        counts = ops.segment_reduce(ew, row_ptr, "sum")
        inv = (1.0 / (counts + float(sink)).clamp_min(torch.finfo(points.dtype).tiny))
        mean = ops.segment_reduce(off * ew[:, None], row_ptr, "sum") * inv[:, None]
        second = ops.segment_reduce(off.unsqueeze(2) * off.unsqueeze(1) * ew[:, None, None], row_ptr,
                                    "sum") * inv[:, None, None]
    cov = second - mean.unsqueeze(2) * mean.unsqueeze(1)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    var = torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals = evals.flip(-1).clamp_min(0)
    normal = evecs[:, :, 0]
    # canonical sign: the component of largest magnitude is positive
    lead = normal.gather(1, normal.abs().argmax(dim=1, keepdim=True))
    normal = torch.where(lead < 0, -normal, normal)
    normal = torch.where((per_row >= 3).unsqueeze(1), normal, torch.zeros_like(normal))
    parts = [mean, var, evals, normal]
    if d == 2:  # same 13-column layout as 3-D: z columns zero
        parts = [torch.cat([t, t.new_zeros(m, 1)], dim=1) for t in parts]
    return torch.cat([counts.unsqueeze(1)] + parts, dim=1)
