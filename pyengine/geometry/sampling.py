"""Area-weighted random sampling of points on triangle surfaces."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from ._common import as_trimesh

__all__ = ["SurfaceSamples", "sample_surface"]


class SurfaceSamples(NamedTuple):
    """Points drawn on a surface.

    points: (n, 3) positions; normals: (n, 3) unit normals of the face each point lies on;
    face_index: (n,) int64 face of each point; values: name -> (n,) or (n, k) vertex data
    interpolated linearly (barycentric) at the points.
    """

    points: torch.Tensor
    normals: torch.Tensor
    face_index: torch.Tensor
    values: dict[str, torch.Tensor]


def sample_surface(mesh: Any, n: int, *, seed: int | None = None, point_data: dict[str, Any] | None = None,
                   dtype: torch.dtype | None = None) -> SurfaceSamples:
    """Draw ``n`` points uniformly by area on a triangle surface (trimesh's sampler).

    Each face is picked with probability proportional to its area, then a uniform point
    inside it, so the density per unit area is constant however the mesh is refined.

    Args:
        mesh: a pyengine :class:`~pyengine.geometry.Mesh` with faces, or a ``trimesh.Trimesh``.
        n: number of points (>= 1).
        seed: makes the draw reproducible; None draws fresh randomness.
        point_data: vertex arrays ((N,) or (N, k)) to interpolate at the samples, e.g. a
            surface pressure. Defaults to the Mesh's own ``point_data``.
        dtype: floating dtype of the results (default: torch's default dtype).
    """
    import trimesh

    if int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    tm = as_trimesh(mesh)
    if len(tm.faces) == 0 or not tm.area > 0:
        raise ValueError("mesh has no faces with positive area to sample")
    if point_data is None:
        point_data = getattr(mesh, "point_data", {}) or {}
    pts, face, bary = trimesh.sample.sample_surface(tm, int(n), seed=seed, return_barycentric=True)
    dtype = dtype or torch.get_default_dtype()
    corners = tm.faces[face]  # (n, 3) vertex ids of each sample's face
    values = {}
    for name, v in point_data.items():
        v = np.asarray(v, dtype=np.float64)
        if v.shape[:1] != (len(tm.vertices),):
            raise ValueError(f"point_data[{name!r}] must have {len(tm.vertices)} rows, got shape {v.shape}")
        vals = np.einsum("nc,nc...->n...", bary, v[corners])
        values[name] = torch.as_tensor(vals, dtype=dtype)
    return SurfaceSamples(
        points=torch.tensor(np.array(pts), dtype=dtype),
        normals=torch.tensor(np.array(tm.face_normals)[face], dtype=dtype),
        face_index=torch.tensor(np.array(face), dtype=torch.int64),
        values=values,
    )
