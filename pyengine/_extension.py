"""Loads the compiled extension ``pyengine._C`` (which registers ``torch.ops.pyengine``).

The extension is ABI-bound to the torch it was compiled against, so a mismatch is
reported here with the fix, instead of as an undefined-symbol error.
"""

import torch  # noqa: F401  (libtorch must be loaded before the extension)

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "pyengine's compiled extension could not be loaded "
        f"({exc}). Build it against the installed torch with "
        "`pip install --no-build-isolation -e .` (or run scripts/setup.sh)."
    ) from exc


def _release(version: str) -> str:
    return version.split("+")[0]


if _release(_C.torch_version) != _release(torch.__version__):  # pragma: no cover
    raise ImportError(
        f"pyengine was compiled against torch {_C.torch_version} but torch {torch.__version__} "
        "is installed; rebuild with `pip install --no-build-isolation -e .` (or scripts/setup.sh)."
    )

__all__ = ["_C"]
