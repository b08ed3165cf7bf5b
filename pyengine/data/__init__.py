"""Samples, batches, normalisation, caching and physics datasets.

The physics datasets (gmsh + scikit-fem, :mod:`pyengine.data.physics`) and the file
datasets (users' own results, :mod:`pyengine.data.files`) load on first use, so importing
:mod:`pyengine.data` pulls in neither the solvers nor vtk.
"""

from .batch import Batch
from .cache import DiskCache, content_hash, default_cache_dir
from .normalize import Normalizer
from .sample import Sample

_FILES = ("CachedSamples", "DataFileError", "FileCache", "FileDataset", "FileDatasetConfig", "ForceConfig")
_PHYSICS = ("AhmedBody", "CarBody", "Ellipsoid", "build_darcy_dataset", "build_flow_dataset", "darcy2d",
            "potential_flow", "random_body", "sphere")

__all__ = ["Batch", "DiskCache", "Normalizer", "Sample", "content_hash", "default_cache_dir", *_FILES,
           *_PHYSICS]


def __getattr__(name: str):
    if name in _PHYSICS:
        from . import physics

        return getattr(physics, name)
    if name in _FILES:
        from . import files

        return getattr(files, name)
    raise AttributeError(f"module 'pyengine.data' has no attribute {name!r}")
