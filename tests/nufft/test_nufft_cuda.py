"""CUDA NUFFT: parity with the CPU path (tested against exact sums in test_nufft.py).

Every test is marked ``cuda`` (skipped without a CUDA device or without pyengine's
CUDA kernels, see conftest.py). The CUDA spreader accumulates tiles in a different
order than the CPU one, so results agree to rounding, well inside the requested eps;
both are also checked against the exact sum where sizes allow.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyengine.nn import SpectralConvPoints
from pyengine.ops import NUFFTPlan, nufft1, nufft2

pytestmark = pytest.mark.cuda
DEV = torch.device("cuda")
P = torch.ops.pyengine

CASES = [(1, (17,)), (1, (1000,)), (2, (12, 9)), (2, (64, 33)), (3, (6, 5, 8)), (3, (24, 17, 32))]
PRECS = {"c64": (torch.float32, torch.complex64, 1e-5), "c128": (torch.float64, torch.complex128, 1e-12)}


def rel_err(a, b):
    a, b = a.cpu().to(torch.complex128), b.cpu().to(torch.complex128)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("prec", list(PRECS))
@pytest.mark.parametrize("d,n_modes", CASES, ids=str)
def test_types_1_and_2_match_cpu(prec, d, n_modes):
    real, cplx, eps = PRECS[prec]
    M, B = 5003, 3
    x = ((torch.rand(M, d, dtype=torch.float64) * 2 - 1) * 3 * math.pi).to(real)
    c = torch.randn(B, M, dtype=cplx)
    f = torch.randn(B, *n_modes, dtype=cplx)
    for isign in (1, -1):
        cpu1 = nufft1(x, c, n_modes, eps=eps, isign=isign)
        gpu1 = nufft1(x.to(DEV), c.to(DEV), n_modes, eps=eps, isign=isign)
        assert gpu1.device.type == "cuda" and gpu1.shape == cpu1.shape
        assert rel_err(gpu1, cpu1) <= 4 * eps
        cpu2 = nufft2(x, f, eps=eps, isign=isign)
        gpu2 = nufft2(x.to(DEV), f.to(DEV), eps=eps, isign=isign)
        assert rel_err(gpu2, cpu2) <= 4 * eps


def test_clustered_and_seam_points():
    # Every point in one tile corner next to the periodic seam; tiny grids where the
    # neighbour-tile range covers every tile.
    x = torch.rand(3000, 3, dtype=torch.float64) * 0.2 - 0.1
    c = torch.randn(2, 3000, dtype=torch.complex128)
    for n_modes in [(2, 3, 4), (16, 16, 16)]:
        torch.testing.assert_close(nufft1(x.to(DEV), c.to(DEV), n_modes, eps=1e-12).cpu(),
                                   nufft1(x, c, n_modes, eps=1e-12), rtol=1e-10, atol=1e-10)


def test_sort_and_plan():
    x = torch.rand(10_000, 3) * 2 * math.pi
    plan = NUFFTPlan(x.to(DEV), (32, 32, 32), eps=1e-6)
    assert torch.equal(plan.perm.sort().values.cpu(), torch.arange(10_000))
    assert int(plan.bin_ptr[-1]) == 10_000 and bool((plan.bin_ptr.diff() >= 0).all())
    c = torch.randn(4, 10_000, dtype=torch.complex64)
    torch.testing.assert_close(plan.type1(c.to(DEV)).cpu(), nufft1(x, c, (32, 32, 32)), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="finite"):
        NUFFTPlan(torch.full((3, 3), float("nan"), device=DEV), (4, 4, 4))


@pytest.mark.parametrize("d,n_modes", [(1, (7,)), (2, (4, 5)), (3, (3, 4, 2))], ids=str)
def test_gradients_match_cpu(d, n_modes):
    x = (torch.rand(40, d, dtype=torch.float64) * 6)
    c = torch.randn(2, 40, dtype=torch.complex128)
    f = torch.randn(2, *n_modes, dtype=torch.complex128)
    g1 = torch.randn(2, *n_modes, dtype=torch.complex128)
    g2 = torch.randn(2, 40, dtype=torch.complex128)

    def grads(device):
        xs, cs, fs = (t.to(device).requires_grad_() for t in (x, c, f))
        out = (nufft1(xs, cs, n_modes, eps=1e-12) * g1.to(device).conj()).real.sum()
        out = out + (nufft2(xs, fs, eps=1e-12) * g2.to(device).conj()).real.sum()
        return [t.cpu() for t in torch.autograd.grad(out, (xs, cs, fs))]

    for a, b in zip(grads(DEV), grads("cpu")):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_layer_matches_cpu():
    layer = SpectralConvPoints(3, 5, (8, 8, 8), 3)
    points = torch.rand(2000, 3) * 6
    x = torch.randn(2000, 3)
    ref = layer(points, x)
    out = layer.to(DEV)(points.to(DEV), x.to(DEV))
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_cuda(dtype):
    from pyengine.ops.nufft import _geometry

    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    x = torch.rand(300, 3, dtype=dtype, device=DEV) * 2 * math.pi
    geo = _geometry((6, 7, 8), 1e-6, dtype, "cuda")
    perm, bin_ptr = P.nufft_sort(x, list(geo.grid), list(geo.bins))
    c = torch.randn(2, 300, dtype=cdt, device=DEV)
    fine = torch.randn(2, *geo.grid, dtype=cdt, device=DEV)
    torch.library.opcheck(P.nufft_sort, (x, list(geo.grid), list(geo.bins)))
    torch.library.opcheck(P.nufft_spread, (x, c, perm, bin_ptr, list(geo.grid), list(geo.bins), geo.width, geo.beta))
    torch.library.opcheck(P.nufft_interp, (x, fine, perm, bin_ptr, list(geo.bins), geo.width, geo.beta))
