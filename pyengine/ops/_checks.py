"""Switch for the data-dependent input checks done inside the kernels.

Shape, dtype and device checks always run. The data checks (``row_ptr`` starts at
0, is non-decreasing and ends at the edge count; indices are in range; k-d tree
structure) are on by default.

* **Thread-local.** The switch affects only the calling thread: another thread
  (a server's other request, a DataLoader thread) keeps validating while one
  thread runs inside ``with input_checks(False)``. (Autograd may run backward
  kernels on its own threads, where the checks are on.)
* **CUDA only.** The checks cost one device synchronisation per call on CUDA,
  and that is all the switch saves: for CPU tensors they always run, since they
  are cheap there and they are what keeps a bad index from becoming an
  out-of-bounds read. Turn them off only for CUDA graphs you have already
  validated; a bad index there is then a CUDA error, not a Python exception.
"""

from __future__ import annotations

import contextlib

from .._extension import _C


def set_input_checks(enabled: bool) -> bool:
    """Enable or disable the data-dependent checks (CUDA tensors) in the calling thread; returns the previous setting."""
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
