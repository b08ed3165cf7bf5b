"""Geometry: mesh IO, surface sampling, geometric features and latent geometries.

Calls only :mod:`pyengine.ops` and mesh libraries (trimesh, meshio), never models.
"""

from .features import (EMBEDDING_NAMES, curvature, geometry_embedding, normal_variation, signed_distance,
                       vertex_normals, winding_number)
from .clean import CleanSurface, clean_surface
from .io import Mesh, MeshIOError, MeshWarning, PartialMeshError, load_mesh, save_mesh, supported_formats
from .normals import SurfaceNormals, robust_vertex_normals, surface_normals
from .latent import LatentGrid, RegionalMesh, latent_grid, regional_mesh
from .quadrature import density_weights, dual_volumes, quadrature_weights, vertex_areas
from .sampling import SurfaceSamples, sample_surface

__all__ = [
    "CleanSurface",
    "MeshWarning",
    "PartialMeshError",
    "SurfaceNormals",
    "clean_surface",
    "robust_vertex_normals",
    "surface_normals",
    "EMBEDDING_NAMES",
    "LatentGrid",
    "Mesh",
    "MeshIOError",
    "RegionalMesh",
    "SurfaceSamples",
    "curvature",
    "geometry_embedding",
    "latent_grid",
    "load_mesh",
    "normal_variation",
    "regional_mesh",
    "sample_surface",
    "save_mesh",
    "signed_distance",
    "supported_formats",
    "vertex_normals",
    "winding_number",
    "density_weights",
    "dual_volumes",
    "quadrature_weights",
    "vertex_areas",
]
