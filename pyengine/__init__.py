"""pyengine: a geometry-aware neural-operator engine.

Fused C++/CUDA kernels for neighbor search, non-uniform FFTs, message passing and
kernel integrals on meshes and point clouds, exposed as ``torch.ops.pyengine``
and wrapped with validation and autograd in :mod:`pyengine.ops`.
"""

from ._version import __version__
from ._extension import _C  # noqa: F401  (registers torch.ops.pyengine)
from . import ops
from .info import build_info, info

__all__ = ["__version__", "build_info", "info", "ops"]
