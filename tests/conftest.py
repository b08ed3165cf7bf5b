"""Shared pytest setup for the pyengine test suite.

* Tests marked ``@pytest.mark.cuda`` are skipped unless a CUDA device is usable
  *and* pyengine was built with its CUDA kernels.
* Every test starts from fixed RNG seeds, so the suite is deterministic.
* ``make_csr`` builds random CSR row pointers with controlled degree patterns.
* ``emu`` is ``torch.ops.pyengine_emu``, the CUDA kernels compiled as host code (SIMT emulator or
  Thrust host build).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import pyengine
from pyengine import ops


def _cuda_usable() -> tuple[bool, str]:
    if not pyengine._C.cuda_compiled():
        return False, "pyengine was built without its CUDA kernels"
    if not torch.cuda.is_available():
        return False, "no CUDA device available"
    return True, ""


def pytest_collection_modifyitems(config, items):
    usable, why = _cuda_usable()
    if usable:
        return
    skip = pytest.mark.skip(reason=f"cuda test: {why}")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _emu_ops():
    import cuda_emulation

    ok, why = cuda_emulation.available()
    if not ok:
        pytest.skip(f"the SIMT emulator cannot be built here: {why}")
    return cuda_emulation.emulated_ops()


@pytest.fixture(params=["forward", "reverse"])
def emu(request, monkeypatch):
    """``torch.ops.pyengine_emu``: the CUDA kernels compiled as host code (tests/cuda_emulation.py),
    built on first use; the test is skipped when the back end cannot be built here.

    The back end is the test module's ``EMULATION_BACKEND``: ``"simt"`` (default; the CPU SIMT
    emulator) or ``"thrust_host"`` (Thrust sources, such as the k-d tree, on Thrust's host system).
    Every emulated test runs twice, with the fibers of a warp (or the elements of a Thrust
    for_each) run in lane order and in reverse lane order (``PYE_SIMT_ORDER``): a missing barrier
    or warp sync on a data flow between lanes gives different results in one of the two orders.
    """
    import cuda_emulation

    backend = getattr(request.module, "EMULATION_BACKEND", "simt")
    why = cuda_emulation.backend_missing(backend)
    if why:
        pytest.skip(f"the {backend} emulator back end cannot be built here: {why}")
    ops = cuda_emulation.BACKENDS[backend]()
    monkeypatch.setenv("PYE_SIMT_ORDER", request.param)
    return ops


@pytest.fixture(autouse=True)
def _deterministic_and_clean():
    """Fixed seeds for every test; input checks back on afterwards whatever a test did."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    ops.set_input_checks(True)
    yield
    ops.set_input_checks(True)


def _row_lengths(M: int, pattern: str, gen: torch.Generator, max_deg: int, empty_frac: float, huge: int):
    if M == 0:
        return torch.zeros(0, dtype=torch.long)
    lens = torch.randint(1, max_deg + 1, (M,), generator=gen)
    if empty_frac > 0:
        lens[torch.rand(M, generator=gen) < empty_frac] = 0
    if pattern == "random":
        pass
    elif pattern == "huge":  # every row huge (M rows of `huge` edges each)
        lens[:] = huge
    elif pattern == "one_huge":  # one huge row in the middle of small (and empty) ones
        lens[M // 2] = huge
    elif pattern == "two_huge":  # two huge rows of different lengths, an empty row at each end
        lens[M // 3] = huge
        lens[(2 * M) // 3] = huge // 2 + 777
        lens[0] = 0
        lens[-1] = 0
    elif pattern == "empty":
        lens[:] = 0
    else:
        raise ValueError(pattern)
    return lens


@pytest.fixture
def make_csr():
    """Factory: ``make_csr(M, pattern="random", max_deg=8, empty_frac=0.2, huge=30_000, seed=0, lens=None)``.

    Returns an int64 CPU ``row_ptr`` of shape ``(M + 1,)``. Patterns: ``random``
    (degrees in ``[1, max_deg]``, a fraction ``empty_frac`` of rows emptied),
    ``huge`` (every row has ``huge`` edges), ``one_huge``, ``two_huge``, ``empty``;
    or explicit row lengths ``lens`` (then ``M`` is ignored).
    """

    def make(M=None, pattern="random", max_deg=8, empty_frac=0.2, huge=30_000, seed=0, lens=None):
        if lens is not None:  # explicit row lengths
            lens = torch.as_tensor(lens, dtype=torch.long)
            M = lens.numel()
        else:
            gen = torch.Generator().manual_seed(seed)
            lens = _row_lengths(M, pattern, gen, max_deg, empty_frac, huge)
        row_ptr = torch.zeros(M + 1, dtype=torch.long)
        row_ptr[1:] = torch.cumsum(lens, 0)
        return row_ptr

    return make


# --------------------------------------------------------------------------- hypothesis fuzzing
# Profiles "ci" (default, bounded) and "long" (pytest --hypothesis-profile=long); see
# tests/fuzz_harness.py. The fuzz properties run in child processes, which get the profile
# through the fuzz_profile fixture.
try:
    import fuzz_harness as _fuzz_harness
    from hypothesis import settings as _hyp_settings

    _fuzz_harness.register_profiles()
    _hyp_settings.load_profile("ci")
except ImportError:  # hypothesis not installed: the fuzz tests skip themselves
    _fuzz_harness = None


@pytest.fixture(scope="session")
def fuzz_profile(request):
    if _fuzz_harness is None:
        pytest.skip("hypothesis is not installed")
    return request.config.getoption("hypothesis_profile", None) or "ci"
