"""Vertex normals that never fail: angle-weighted on a cleaned surface, local PCA where faces cannot tell.

Area-weighted face normals (trimesh's ``vertex_normals``) break on real
exports: where the same sheet appears twice with opposite winding, or a sliver
folds back over its neighbour, the face normals cancel and the vertex normal
comes out with length ~1e-30 (or exactly 0 in float32); where a vertex belongs
to no face there is nothing to average. Here:

1. the surface is cleaned first (:func:`pyengine.geometry.clean.clean_surface`):
   duplicates and degenerates are gone and the winding is consistent per
   component, outward where the component is closed;
2. vertex normals are the angle-weighted mean of the adjacent face normals
   (Thürmer & Wüthrich), which does not depend on how a face fan is triangulated;
3. where those weights are zero (a vertex in no face) or cancel (the weighted
   mean is shorter than ``cancel_ratio`` of the total weight), the normal is the
   direction of least spread of the ``k`` nearest surface vertices (local PCA,
   through :func:`pyengine.ops.knn`), signed to agree with the neighbours'
   normals.

Every returned normal is unit length and finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .clean import CleanSurface, clean_surface

__all__ = ["SurfaceNormals", "angle_weighted_normals", "pca_normals", "point_cloud_normals", "robust_vertex_normals",
           "surface_normals"]

#: A vertex whose angle-weighted normal sum is shorter than this fraction of its total weight
#: (its faces point in cancelling directions) gets a local-PCA normal instead.
CANCEL_RATIO = 1e-3


@dataclass
class SurfaceNormals:
    """Unit normals per vertex of a :class:`CleanSurface`.

    Attributes:
        normals: (V, 3) float64 unit vectors.
        fallback: (V,) bool, the normal came from local PCA (faces cancel or vertex in no face).
    """

    normals: np.ndarray
    fallback: np.ndarray

    def summary(self) -> str:
        n = int(self.fallback.sum())
        return "normals: angle-weighted" + (f"; {n:,} vert{'ex' if n == 1 else 'ices'} by local PCA (faces cancel or "
                                            f"none)" if n else "")


def angle_weighted_normals(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum over adjacent faces of (corner angle x unit face normal), and the sum of the angles.

    Args:
        points: (V, 3); faces: (F, 3) non-degenerate triangles.
    Returns:
        ``(sums (V, 3), weights (V,))``: unnormalised normals and total corner angle (radians).
    """
    v = len(points)
    sums = np.zeros((v, 3))
    weights = np.zeros(v)
    if len(faces) == 0:
        return sums, weights
    tri = points[faces]  # (F, 3, 3)
    e = [tri[:, (i + 1) % 3] - tri[:, i] for i in range(3)]  # edge i goes from corner i to corner i+1
    cross = np.cross(e[0], -e[2])
    length = np.sqrt((cross ** 2).sum(1))
    unit = cross / np.where(length > 0, length, 1.0)[:, None]
    for i in range(3):
        a, b = e[i], -e[(i + 2) % 3]  # the two edges leaving corner i
        ang = np.arctan2(np.sqrt((np.cross(a, b) ** 2).sum(1)), (a * b).sum(1))
        idx = faces[:, i]
        weights += np.bincount(idx, weights=ang, minlength=v)
        for d in range(3):
            sums[:, d] += np.bincount(idx, weights=ang * unit[:, d], minlength=v)
    return sums, weights


def pca_normals(samples: np.ndarray, queries: np.ndarray, k: int = 16) -> np.ndarray:
    """(M, 3) unit direction of least spread of the ``k`` nearest ``samples`` of each query (unsigned).

    Uses :func:`pyengine.ops.knn`; ``k`` is capped at the number of samples (at least 3 needed).
    """
    from .. import ops

    if len(samples) < 3:
        raise ValueError(f"local PCA normals need at least 3 surface points, got {len(samples)}")
    if len(queries) == 0:
        return np.zeros((0, 3))
    k = int(min(k, len(samples)))
    s = torch.as_tensor(np.ascontiguousarray(samples, dtype=np.float64))
    _, idx = ops.knn(s, torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float64)), k)
    nb = samples[idx.numpy()]  # (M, k, 3)
    d = nb - nb.mean(1, keepdims=True)
    cov = np.einsum("mki,mkj->mij", d, d)
    _, vecs = np.linalg.eigh(cov)
    n = vecs[:, :, 0]
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _sign_to(n: np.ndarray, ref: np.ndarray) -> np.ndarray:
    s = np.sign((n * ref).sum(1))
    return n * np.where(s == 0, 1.0, s)[:, None]


def surface_normals(surface: CleanSurface, *, k: int = 16, cancel_ratio: float = CANCEL_RATIO) -> SurfaceNormals:
    """Unit vertex normals of a cleaned surface (see the module docstring for the rules)."""
    pts, faces = surface.points, surface.faces
    sums, weights = angle_weighted_normals(pts, faces)
    length = np.linalg.norm(sums, axis=1)
    bad = (weights <= 0) | (length <= cancel_ratio * weights)
    normals = np.zeros_like(sums)
    good = ~bad
    normals[good] = sums[good] / length[good, None]
    if bad.any():
        q = np.flatnonzero(bad)
        surf = np.flatnonzero(surface.used)
        if len(surf) >= 3:
            n = pca_normals(pts[surf], pts[q], k)
            # sign: agree with the vertex's own (weak) sum and its well-defined neighbours
            from .. import ops

            kk = int(min(k, len(surf)))
            _, idx = ops.knn(torch.as_tensor(pts[surf]), torch.as_tensor(pts[q]), kk)
            nb = surf[idx.numpy()]
            ref = sums[q] / np.maximum(weights[q], 1e-300)[:, None] + (normals[nb] * good[nb, None]).sum(1)
            weak = np.linalg.norm(ref, axis=1) < 1e-9
            centre = pts[surf].mean(0)
            ref[weak] = pts[q[weak]] - centre
            normals[q] = _sign_to(n, ref)
        elif len(surf):  # a single triangle or less: its face normal for everything
            normals[q] = normals[surf[0]] if good[surf[0]] else np.array([0.0, 0.0, 1.0])
        else:
            normals[q] = point_cloud_normals(pts[q], k) if len(q) >= 3 else np.array([0.0, 0.0, 1.0])
    # exact unit length (and never NaN) whatever happened above
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    zero = (norm[:, 0] == 0) | ~np.isfinite(norm[:, 0])
    normals[zero] = [0.0, 0.0, 1.0]
    normals[~zero] /= norm[~zero]
    return SurfaceNormals(normals=normals, fallback=bad)


def point_cloud_normals(points: np.ndarray, k: int = 16) -> np.ndarray:
    """(N, 3) unit normals of a point cloud: local PCA of ``k`` neighbours, pointing away from the
    centroid (right for star-shaped bodies; a point cloud carries no orientation of its own)."""
    pts = np.asarray(points, dtype=np.float64)
    n = pca_normals(pts, pts, k)
    return _sign_to(n, pts - pts.mean(0))


def robust_vertex_normals(points: np.ndarray, faces: np.ndarray, *, k: int = 16) -> tuple[np.ndarray, CleanSurface,
                                                                                       SurfaceNormals]:
    """(N, 3) unit normals for every input vertex of a triangle surface, via clean -> normals -> map back.

    Returns ``(normals, cleaned surface, its SurfaceNormals)``; coincident input vertices share a normal.
    """
    surface = clean_surface(points, faces)
    sn = surface_normals(surface, k=k)
    return sn.normals[surface.vertex_map], surface, sn
