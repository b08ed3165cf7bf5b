"""Build and runtime facts: what `pyengine info` prints."""

from __future__ import annotations

import sys

import torch

from ._extension import _C
from ._version import __version__


def _registered_ops() -> list[str]:
    """Names of the ops in the ``pyengine`` namespace (forward ops only, not their backward twins)."""
    names = {n.split("::", 1)[1].split(".")[0] for n in torch._C._dispatch_get_all_op_names()
             if n.startswith("pyengine::")}
    return sorted(n for n in names if not n.endswith("_backward"))


def build_info() -> dict:
    """Return the facts about this installation as a dict.

    Keys: ``version``, ``torch``, ``torch_compiled_against``, ``cuda_kernels``
    (CUDA kernels compiled in), ``cuda_available`` (a CUDA device is usable now),
    ``cuda_devices``, ``operators`` (the ``torch.ops.pyengine`` ops registered),
    ``openmp_threads``, ``torch_threads``, ``input_checks``, ``python``.
    """
    cuda_available = bool(_C.cuda_compiled() and torch.cuda.is_available())
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda_available else []
    return {
        "version": __version__,
        "torch": torch.__version__,
        "torch_compiled_against": _C.torch_version,
        "cuda_kernels": bool(_C.cuda_compiled()),
        "cuda_available": cuda_available,
        "cuda_devices": devices,
        "operators": _registered_ops(),
        "openmp_threads": int(_C.openmp_max_threads()),
        "torch_threads": torch.get_num_threads(),
        "input_checks": bool(_C.input_checks_enabled()),
        "python": sys.version.split()[0],
    }


def info(file=None) -> dict:
    """Print :func:`build_info` as an aligned table (to ``file``, default stdout) and return it."""
    facts = build_info()
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "-"
        print(f"{key:<{width}}  {value}", file=file or sys.stdout)
    return facts
