"""Switch for the data-dependent input checks done inside the kernels.

Shape, dtype and device checks always run. The data checks (``row_ptr`` starts at
0, is non-decreasing and ends at the edge count; indices are in range) cost one
device synchronisation per call on CUDA. They are on by default; turn them off
only for graphs you have already validated.
"""

from __future__ import annotations

import contextlib

from .._extension import _C


def set_input_checks(enabled: bool) -> bool:
    """Enable or disable the data-dependent checks process-wide; returns the previous setting."""
    previous = bool(_C.input_checks_enabled())
    _C.set_input_checks_enabled(bool(enabled))
    return previous


@contextlib.contextmanager
def input_checks(enabled: bool):
    """Context manager form of :func:`set_input_checks`."""
    previous = set_input_checks(enabled)
    try:
        yield
    finally:
        set_input_checks(previous)
