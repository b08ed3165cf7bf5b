"""Rediscretising a surface mesh without changing the geometry it samples (tests and benchmarks).

Every function keeps the input vertices as the first ``N`` rows of its output (moved, for
:func:`jitter`, but in the same order), so predictions before and after can be compared at
the shared vertices.

* :func:`subdivide`: midpoint subdivision (each triangle into 4, via ``trimesh.remesh``),
  everywhere or on selected faces only (a non-uniform mesh with hanging nodes, as CAD
  exports of locally refined meshes have).
* :func:`refine_half`: subdivide the faces on one side of a plane, ``times`` times.
* :func:`jitter`: move every vertex in its tangent plane by a random fraction of the local
  edge length (a different, irregular sampling of almost the same surface).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["jitter", "refine_half", "subdivide"]


def _arrays(points: Any, triangles: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(points.detach().cpu().numpy() if hasattr(points, "detach") else points, dtype=np.float64)
    t = np.asarray(triangles.detach().cpu().numpy() if hasattr(triangles, "detach") else triangles)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {p.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"triangles must be an integer (T, 3) array, got {t.shape} ({t.dtype})")
    if t.size and (t.min() < 0 or t.max() >= len(p)):
        raise ValueError(f"triangles index outside the {len(p)} points")
    return p, t.astype(np.int64)


def subdivide(points: Any, triangles: Any, times: int = 1, face_mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint-subdivide a triangle surface ``times`` times: ``(points (N', 3), triangles (T', 3))``.

    Args:
        points, triangles: the surface (numpy or torch).
        times: rounds of subdivision (each multiplies the subdivided faces by 4, halving h).
        face_mask: (T,) bool, which faces of the *input* to subdivide (default all); later
            rounds subdivide the children of those faces.
    The input vertices are the first ``N`` output rows, unmoved.
    """
    from trimesh.remesh import subdivide as _subdivide

    p, t = _arrays(points, triangles)
    if int(times) != times or times < 0:
        raise ValueError(f"times must be an integer >= 0, got {times!r}")
    mask = np.ones(len(t), bool) if face_mask is None else np.asarray(face_mask, bool)
    if mask.shape != (len(t),):
        raise ValueError(f"face_mask must have shape ({len(t)},), got {mask.shape}")
    for _ in range(int(times)):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            break
        new_p, new_t = _subdivide(p, t, face_index=idx)
        if not np.array_equal(new_p[: len(p)], p):
            raise RuntimeError("trimesh.remesh.subdivide reordered the input vertices")
        # trimesh keeps the unsplit faces first, then 4 children per split face
        kept = len(t) - idx.size
        mask = np.concatenate([np.zeros(kept, bool), np.ones(len(new_t) - kept, bool)])
        p, t = new_p, new_t
    return p, t


def refine_half(points: Any, triangles: Any, axis: int = 0, times: int = 1,
                threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide the faces whose centroid has ``coordinate[axis] > threshold`` (default: the
    middle of the bounding box) ``times`` times: a mesh fine on one half, coarse on the other."""
    p, t = _arrays(points, triangles)
    c = p[t].mean(axis=1)[:, axis]
    thr = 0.5 * (p[:, axis].min() + p[:, axis].max()) if threshold is None else float(threshold)
    return subdivide(p, t, times, face_mask=c > thr)


def jitter(points: Any, triangles: Any, amount: float = 0.25, seed: int = 0) -> np.ndarray:
    """Vertices moved at random in their tangent planes: ``(N, 3)`` (the triangles are unchanged).

    Each vertex moves by up to ``amount`` times its mean incident edge length, in a random
    direction orthogonal to its (area-weighted) normal, so the surface stays close to the
    original while the sampling becomes irregular. Deterministic for a given ``seed``.
    """
    p, t = _arrays(points, triangles)
    if not 0 <= amount < 0.5:
        raise ValueError(f"amount must be in [0, 0.5) (fold-free), got {amount}")
    rng = np.random.default_rng(seed)
    fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    normal = np.zeros_like(p)
    for k in range(3):
        np.add.at(normal, t[:, k], fn)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    length = np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=1)
    total, count = np.zeros(len(p)), np.zeros(len(p))
    for k in range(2):
        np.add.at(total, edges[:, k], length)
        np.add.at(count, edges[:, k], 1)
    mean_edge = total / np.maximum(count, 1)
    d = rng.normal(size=p.shape)
    d -= np.sum(d * normal, axis=1, keepdims=True) * normal
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300)
    r = amount * mean_edge * rng.uniform(0, 1, size=len(p))
    return p + d * r[:, None]
