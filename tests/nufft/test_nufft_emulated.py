"""The NUFFT's CUDA kernels (bin sort, tile spreading, interpolation), run on the CPU SIMT emulator.

pyengine.ops.nufft builds the transforms in Python over three kernel ops, which it
calls through its module attribute ``_ops``. Routing those three to
``torch.ops.pyengine_emu`` (the CUDA entry points of csrc/nufft/*_cuda.cu on the
emulator) runs the whole type 1 / type 2 transforms with the CUDA kernels, on the
CPU; they must agree with the CPU kernels to well inside the requested tolerance
(test_nufft.py checks the CPU path against exact sums).
"""

from __future__ import annotations

import math

import pytest
import torch

from pyengine.ops import nufft as nufft_module
from pyengine.ops import nufft1, nufft2

pytestmark = pytest.mark.emulated
KERNEL_OPS = ("nufft_sort", "nufft_spread", "nufft_interp")


class _Routed:
    """torch.ops.pyengine with the NUFFT kernel ops taken from the emulator (and counted)."""

    def __init__(self, real, emu):
        self._real, self._emu = real, emu
        self.calls = 0

    def __getattr__(self, name):
        if name in KERNEL_OPS:
            self.calls += 1
            return getattr(self._emu, name)
        return getattr(self._real, name)


@pytest.fixture
def on_emulator(emu, monkeypatch):
    """run(fn, ...): fn with the CUDA kernels on the emulator, in the CUDA geometry (bins = GPU tiles)."""
    real_ops, real_geometry = nufft_module._ops, nufft_module._geometry

    def run(fn, *args, **kw):
        routed = _Routed(real_ops, emu)
        monkeypatch.setattr(nufft_module, "_ops", routed)
        monkeypatch.setattr(nufft_module, "_geometry", lambda n, eps, dt, _dev, *rest: real_geometry(n, eps, dt, "cuda", *rest))
        try:
            out = fn(*args, **kw)
        finally:
            monkeypatch.setattr(nufft_module, "_ops", real_ops)
            monkeypatch.setattr(nufft_module, "_geometry", real_geometry)
        assert routed.calls >= 2, "the emulated sort and spread/interp kernels were not called"
        return out

    return run


def rel_err(a, b):
    a, b = a.to(torch.complex128), b.to(torch.complex128)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("prec", ["c64", "c128"])
@pytest.mark.parametrize("d,n_modes", [(1, (37,)), (2, (12, 9)), (3, (6, 5, 8))], ids=str)
def test_types_1_and_2_match_cpu(on_emulator, prec, d, n_modes):
    real, cplx, eps = {"c64": (torch.float32, torch.complex64, 1e-5), "c128": (torch.float64, torch.complex128, 1e-12)}[prec]
    M, B = 301, 2
    g = torch.Generator().manual_seed(0)
    x = ((torch.rand(M, d, generator=g, dtype=torch.float64) * 2 - 1) * 3 * math.pi).to(real)
    c = torch.randn(B, M, generator=g, dtype=cplx)
    f = torch.randn(B, *n_modes, generator=g, dtype=cplx)
    for isign in (1, -1):
        ref1 = nufft1(x, c, n_modes, eps=eps, isign=isign)
        assert rel_err(on_emulator(nufft1, x, c, n_modes, eps=eps, isign=isign), ref1) <= 4 * eps
        ref2 = nufft2(x, f, eps=eps, isign=isign)
        assert rel_err(on_emulator(nufft2, x, f, eps=eps, isign=isign), ref2) <= 4 * eps


def test_clustered_points_at_the_seam(on_emulator):
    # Every point in one corner next to the periodic seam: one tile holds them all,
    # and on the tiny grid the neighbour-tile range covers every tile.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(200, 3, generator=g, dtype=torch.float64) * 0.2 - 0.1
    c = torch.randn(1, 200, generator=g, dtype=torch.complex128)
    for n_modes in [(2, 3, 4), (8, 8, 8)]:
        torch.testing.assert_close(on_emulator(nufft1, x, c, n_modes, eps=1e-12), nufft1(x, c, n_modes, eps=1e-12),
                                   rtol=1e-10, atol=1e-10)  # fmt: skip
