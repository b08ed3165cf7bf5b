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


# --------------------------------------------------------------------------- type 3 on the CUDA kernels
#
# pyengine.ops.nufft_type3 runs the outer spread, the inner type 2 (sort, interp) and the plan's
# sorts through the same module attribute ``_ops`` and the same ``_geometry`` (CUDA tile sizes
# here), so routing them runs the whole CUDA type-3 path: both sorts, tile spreading of the
# pre-phased sources onto the outer grid, the inner type 2's interpolation, and the backward's
# type 3s (the adjoint with the roles of sources and targets swapped).


def _exact_type3(x, c, s, isign):
    return c.to(torch.complex128) @ torch.exp(1j * isign * (x.double() @ s.double().T))


# Awkward sizes, off-centre and unequal ranges per dimension (grids not multiples of the tiles).
T3_CASES = {1: (203, 157, [3.1], [7.0], [-20.0], [33.0]),
            2: (177, 131, [-1.0, 5.0], [2.5, 0.7], [4.0, -9.0], [15.0, 40.0]),
            3: (151, 97, [0.3, -2.0, 8.0], [1.1, 3.0, 0.4], [2.0, 0.0, -3.0], [9.0, 4.0, 30.0])}


def _t3_case(d, real, cplx, seed=0):
    M, N, xc, xh, sc, sh = T3_CASES[d]
    g = torch.Generator().manual_seed(seed + d)
    u = torch.rand(M, d, generator=g, dtype=torch.float64) * 2 - 1
    v = torch.rand(N, d, generator=g, dtype=torch.float64) * 2 - 1
    x = (torch.tensor(xc, dtype=torch.float64) + u * torch.tensor(xh, dtype=torch.float64)).to(real)
    s = (torch.tensor(sc, dtype=torch.float64) + v * torch.tensor(sh, dtype=torch.float64)).to(real)
    return x, torch.randn(2, M, generator=g, dtype=cplx), s


@pytest.mark.parametrize("prec", ["c64", "c128"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_type3_matches_cpu_and_brute_force(on_emulator, prec, d):
    from pyengine.ops import nufft3

    real, cplx, eps = {"c64": (torch.float32, torch.complex64, 1e-5), "c128": (torch.float64, torch.complex128, 1e-11)}[prec]
    x, c, s = _t3_case(d, real, cplx)
    for isign, sigma in ((1, None), (-1, 2.0)):
        exact = _exact_type3(x, c, s, isign)
        cpu = nufft3(x, c, s, eps=eps, isign=isign, upsampfac=sigma)
        gpu = on_emulator(nufft3, x, c, s, eps=eps, isign=isign, upsampfac=sigma)
        assert gpu.shape == exact.shape and gpu.dtype == cplx
        assert rel_err(gpu, exact) <= 10 * eps, rel_err(gpu, exact)
        assert rel_err(gpu, cpu) <= 10 * eps, rel_err(gpu, cpu)


def test_type3_plan_and_backward(on_emulator):
    # A plan (cached sorts and factors) and the backward in values, sources and targets, all on
    # the emulated kernels, against the CPU kernels' gradients and the float64 brute force.
    from pyengine.ops import NUFFT3Plan

    x, c, s = _t3_case(3, torch.float64, torch.complex128, seed=5)
    w = torch.randn(2, s.shape[0], generator=torch.Generator().manual_seed(9), dtype=torch.complex128)

    def grads(fn):
        xg, sg, cg = (t.clone().requires_grad_() for t in (x, s, c))
        (fn(xg, sg, cg) * w).real.sum().backward()
        return xg.grad, sg.grad, cg.grad

    def ours(xg, sg, cg):
        return NUFFT3Plan(xg, sg, 1e-11, torch.complex128).execute(cg, isign=-1)

    emulated = on_emulator(grads, ours)
    for a, b in zip(emulated, grads(ours)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(emulated, grads(lambda xg, sg, cg: _exact_type3(xg, cg, sg, -1))):
        assert rel_err(a, b) <= 1e-8
