"""Small conversions shared by the geometry modules (inputs may be numpy, torch, Mesh or trimesh)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_trimesh(mesh: Any, name: str = "mesh"):
    """A ``trimesh.Trimesh`` view of a pyengine Mesh or a trimesh mesh (vertex order kept)."""
    import trimesh

    from .io import Mesh

    if isinstance(mesh, trimesh.Trimesh):
        return mesh
    if isinstance(mesh, Mesh):
        return mesh.to_trimesh()
    raise TypeError(f"{name} must be a pyengine Mesh or a trimesh.Trimesh, got {type(mesh).__name__}")


def as_points(x: Any, name: str, dtype: torch.dtype | None = None, dims=(2, 3)) -> torch.Tensor:
    """(N, d) floating tensor from an array-like; checks shape and finiteness."""
    t = torch.as_tensor(np.array(x) if not isinstance(x, torch.Tensor) else x)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if dtype is not None:
        t = t.to(dtype)
    if t.dim() != 2 or t.shape[1] not in dims:
        raise ValueError(f"{name} must have shape (N, d) with d in {dims}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return t.contiguous()
