"""Samples, batches, normalisation, caching and physics datasets."""

from .cache import DiskCache, content_hash, default_cache_dir
from .sample import Sample

__all__ = ["DiskCache", "Sample", "content_hash", "default_cache_dir"]

# Physics datasets from real solvers (gmsh + scikit-fem): bodies, potential flow, 2D Darcy, builders.
from .physics import (  # noqa: E402
    AhmedBody,
    CarBody,
    Ellipsoid,
    build_darcy_dataset,
    build_flow_dataset,
    darcy2d,
    potential_flow,
    random_body,
    sphere,
)

__all__ += ["AhmedBody", "CarBody", "Ellipsoid", "build_darcy_dataset", "build_flow_dataset", "darcy2d",
            "potential_flow", "random_body", "sphere"]
