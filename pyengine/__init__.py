"""pyengine: a geometry-aware neural-operator engine.

Fused C++/CUDA kernels for neighbor search, non-uniform FFTs, message passing and
kernel integrals on meshes and point clouds, exposed as ``torch.ops.pyengine``
and wrapped with validation and autograd in :mod:`pyengine.ops`. Above them:
:mod:`pyengine.nn` (layers), :mod:`pyengine.geometry` and :mod:`pyengine.data`
(meshes, samples, datasets), :mod:`pyengine.models` (GNO, GINO, GAOT, RIGNO) and
:mod:`pyengine.pipeline` (training, prediction, export). Those load on first use
(``pyengine.models`` etc.), so ``import pyengine`` stays light.
"""

import importlib

from ._version import __version__
from ._extension import _C  # noqa: F401  (registers torch.ops.pyengine)
from . import ops
from .info import build_info, info

_LAZY = ("data", "geometry", "models", "nn", "pipeline")

__all__ = ["__version__", "build_info", "info", "ops", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pyengine' has no attribute {name!r}")
