"""Quadrature weights: how much of the geometry each point stands for.

A model that integrates over a geometry (a GNO ball, a GAOT token's neighbourhood)
approximates ``integral_B f(y) dy`` by ``sum_j w_j f(y_j)``. With ``w_j`` the measure
that point ``j`` represents, the sum converges as the mesh is refined or resampled;
with ``w_j = 1`` (a plain neighbour mean) it follows the local point density instead,
so a mesh refined on one half pulls every average towards that half.

* :func:`vertex_areas`: surface meshes. ``"barycentric"`` gives each vertex a third of
  the area of every triangle around it; ``"mixed"`` is the mixed Voronoi area (the
  Voronoi region inside non-obtuse triangles, the barycentric-like split inside obtuse
  ones). Both sum to the surface area exactly. Units: length^2.
* :func:`dual_volumes`: volume meshes (tetrahedra in 3-D, triangles of a 2-D domain).
  Each vertex gets ``1/(d+1)`` of every cell around it; they sum to the volume. Units: length^d.
* :func:`density_weights`: bare point clouds. ``w_i = V_m r_k(i)^m / k``, with
  ``r_k(i)`` the distance to the ``k``-th nearest other point and ``V_m`` the volume of the
  unit ``m``-ball (``m`` the intrinsic dimension: 2 for a sampled surface, ``d`` for a
  volume): the ball reaching the k-th neighbour holds k points' worth of measure, an
  unbiased estimate of ``1 / density`` for random samples, so the weights sum approximately
  to the sampled measure (regular lattices come out up to ~1.5x larger; a weighted mean
  does not see a common factor).
* :func:`quadrature_weights`: picks one of the above for a :class:`~pyengine.data.Sample`
  (triangles -> vertex areas, tetrahedra -> dual volumes, else density weights).

Everything is float64 numpy internally; the torch wrappers return the input's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["density_weights", "dual_volumes", "intrinsic_dimension", "quadrature_weights", "vertex_areas"]


def _np_points(points: Any, name: str = "points") -> np.ndarray:
    p = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3) or p.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 2) or (N, 3) with N >= 1, got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return p


def _np_cells(cells: Any, n: int, width: int, name: str) -> np.ndarray:
    c = cells.detach().cpu().numpy() if isinstance(cells, torch.Tensor) else np.asarray(cells)
    if c.ndim != 2 or c.shape[1] != width or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"{name} must be an integer (n_cells, {width}) array, got shape {c.shape} ({c.dtype})")
    if c.size and (c.min() < 0 or c.max() >= n):
        raise ValueError(f"{name} index outside the {n} points")
    return c.astype(np.int64)


def _like(values: np.ndarray, like: Any) -> Any:
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(values, dtype=like.dtype if like.is_floating_point() else torch.float64,
                               device=like.device)
    return values


def vertex_areas(points: Any, triangles: Any, kind: str = "barycentric") -> Any:
    """Area per vertex of a triangle surface: ``(N,)``, summing to the surface area.

    Args:
        points: (N, 3) (or (N, 2)) vertex coordinates, numpy or torch.
        triangles: (T, 3) integer vertex indices.
        kind: ``"barycentric"`` (a third of each incident triangle) or ``"mixed"`` (mixed
            Voronoi areas, Meyer et al. 2003: exact Voronoi cells in non-obtuse triangles,
            half / quarter / quarter of the area in obtuse ones).

    Vertices in no triangle get 0. Returns torch (input dtype) for torch points, numpy otherwise.
    """
    if kind not in ("barycentric", "mixed"):
        raise ValueError(f"kind must be 'barycentric' or 'mixed', got {kind!r}")
    p = _np_points(points)
    t = _np_cells(triangles, len(p), 3, "triangles")
    if p.shape[1] == 2:
        p = np.concatenate([p, np.zeros((len(p), 1))], axis=1)
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    out = np.zeros(len(p))
    if kind == "barycentric":
        for k in range(3):
            np.add.at(out, t[:, k], area / 3)
        return _like(out, points)
    corners = (a, b, c)
    # per corner k: the edges to the two other corners, its cosine and the opposite cotangents
    share = np.zeros((len(t), 3))
    dots = []
    for k in range(3):
        u, v = corners[(k + 1) % 3] - corners[k], corners[(k + 2) % 3] - corners[k]
        dots.append(np.einsum("ij,ij->i", u, v))
    dots = np.stack(dots, axis=1)  # (T, 3): dot of the two edges at each corner
    twice = np.maximum(2 * area, 1e-300)
    cot = dots / twice[:, None]  # cot of the angle at each corner
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        # Voronoi part of corner k: (|k-i|^2 cot(j) + |k-j|^2 cot(i)) / 8
        e_ki = np.sum((corners[i] - corners[k]) ** 2, axis=1)
        e_kj = np.sum((corners[j] - corners[k]) ** 2, axis=1)
        share[:, k] = (e_ki * cot[:, j] + e_kj * cot[:, i]) / 8
    obtuse = dots < 0  # (T, 3): which corner is obtuse
    any_obtuse = obtuse.any(axis=1)
    share[any_obtuse] = np.where(obtuse[any_obtuse], area[any_obtuse, None] / 2, area[any_obtuse, None] / 4)
    for k in range(3):
        np.add.at(out, t[:, k], share[:, k])
    return _like(out, points)


def dual_volumes(points: Any, cells: Any) -> Any:
    """Volume per vertex of a simplex mesh (``1/(d+1)`` of each incident cell): ``(N,)``.

    Args:
        points: (N, d) coordinates, d = 3 with (C, 4) tetrahedra or d = 2 with (C, 3) triangles.
        cells: the simplices (integer vertex indices).
    Returns torch (input dtype) for torch points, numpy otherwise; sums to the mesh's volume (area in 2-D).
    """
    p = _np_points(points)
    d = p.shape[1]
    c = _np_cells(cells, len(p), d + 1, "cells")
    edges = np.stack([p[c[:, k]] - p[c[:, 0]] for k in range(1, d + 1)], axis=1)  # (C, d, d)
    vol = np.abs(np.linalg.det(edges)) / math.factorial(d)
    out = np.zeros(len(p))
    for k in range(d + 1):
        np.add.at(out, c[:, k], vol / (d + 1))
    return _like(out, points)


def intrinsic_dimension(points: Any, k: int = 12) -> int:
    """2 if a 3-D cloud samples a surface, else the ambient dimension (local PCA on k neighbours).

    A neighbourhood counts as flat when its smallest covariance eigenvalue is below 5% of the
    middle one; the cloud is a surface when most neighbourhoods are flat.
    """
    from scipy.spatial import cKDTree

    p = _np_points(points)
    n, d = p.shape
    if d == 2 or n < 5:
        return d
    k = min(k, n)
    sample = p[np.linspace(0, n - 1, min(n, 512)).astype(np.int64)]
    _, idx = cKDTree(p).query(sample, k)
    nb = p[idx] - p[idx].mean(axis=1, keepdims=True)
    ev = np.linalg.eigvalsh(np.einsum("nki,nkj->nij", nb, nb))
    flat = ev[:, 0] < 0.05 * np.maximum(ev[:, 1], 1e-300)
    return 2 if flat.mean() > 0.5 else 3


def density_weights(points: Any, k: int = 8, dim: int | None = None) -> Any:
    """Quadrature weights of a bare point cloud from k-nearest-neighbour distances: ``(N,)``.

    ``w_i = V_m r_k(i)^m / k`` with ``r_k(i)`` the distance from point ``i`` to its
    ``k``-th nearest other point and ``V_m`` the unit ``m``-ball volume (pi for m = 2).
    Coincident points share their weight (their ``r_k`` is that of the cluster).

    Args:
        points: (N, d) coordinates.
        k: neighbour rank (>= 2). Larger is smoother and less local.
        dim: intrinsic dimension ``m`` (2: surface samples, d: volume samples); default
            :func:`intrinsic_dimension`.
    """
    from scipy.spatial import cKDTree

    if int(k) != k or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    p = _np_points(points)
    n = len(p)
    m = intrinsic_dimension(p) if dim is None else int(dim)
    if m not in (1, 2, 3):
        raise ValueError(f"dim must be 1, 2 or 3, got {dim!r}")
    if n == 1:
        return _like(np.ones(1), points)
    kk = min(int(k), n - 1)
    dist, _ = cKDTree(p).query(p, kk + 1)
    r = dist[:, -1]
    if not (r > 0).any():
        return _like(np.ones(n), points)
    r = np.where(r > 0, r, r[r > 0].min())
    unit_ball = math.pi ** (m / 2) / math.gamma(m / 2 + 1)
    return _like(unit_ball * r ** m / kk, points)


def _fill_unreferenced(w: np.ndarray) -> np.ndarray:
    """Points in no cell (dangling vertices) get the median positive weight, never 0."""
    pos = w > 0
    if pos.all():
        return w
    fill = float(np.median(w[pos])) if pos.any() else 1.0
    return np.where(pos, w, fill)


def quadrature_weights(sample: Any, method: str = "auto", k: int = 8) -> torch.Tensor:
    """Positive quadrature weights ``(N,)`` of a :class:`~pyengine.data.Sample`'s points.

    Args:
        sample: the sample (its ``points`` and ``cells`` are used).
        method: ``"auto"`` (tetrahedra -> dual volumes; triangles -> vertex areas in 3-D, dual
            areas of a 2-D domain; else density weights), ``"area"``, ``"volume"`` or ``"density"``.
        k: neighbour rank of the density weights.

    Vertices that no cell touches get the median weight (so every weight is > 0). Units:
    length^m in the sample's coordinates (m = 2 for surfaces, d for volumes).
    """
    if method not in ("auto", "area", "volume", "density"):
        raise ValueError(f"method must be 'auto', 'area', 'volume' or 'density', got {method!r}")
    pts = sample.points
    cells = sample.cells
    d = pts.shape[1]
    tets, tris = cells.get("tetra"), cells.get("triangle")
    has = lambda c: c is not None and c.numel() > 0  # noqa: E731
    if method == "auto":
        method = ("volume" if (d == 3 and has(tets)) or (d == 2 and has(tris)) else
                  "area" if has(tris) else "density")
    if method == "area":
        if not has(tris):
            raise ValueError("method 'area' needs triangle cells (cells['triangle'])")
        w = vertex_areas(pts, tris)
    elif method == "volume":
        c = tets if d == 3 else tris
        if not has(c):
            raise ValueError(f"method 'volume' needs {'tetra' if d == 3 else 'triangle'} cells in {d}-D")
        w = dual_volumes(pts, c)
    else:
        w = density_weights(pts, k=k)
    w = _fill_unreferenced(w.detach().cpu().double().numpy())
    return torch.as_tensor(w, dtype=pts.dtype)
