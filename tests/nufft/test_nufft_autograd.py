"""NUFFT gradients (values and point coordinates) by gradcheck, and opcheck of every nufft op.

Gradients are those of the exact transforms (the adjoint transform for values,
i*k-weighted transforms for coordinates); gradcheck compares them in float64 with
finite differences of our NUFFT at eps = 1e-13, where the transform and the exact
sum agree to ~1e-13.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyengine.ops import NUFFTPlan, nufft1, nufft2
from pyengine.ops.nufft import _geometry

P = torch.ops.pyengine
EPS = 1e-13


def points(M, d):
    return ((torch.rand(M, d, dtype=torch.float64) * 2 - 1) * 4).requires_grad_()


def cplx(*shape):
    return torch.randn(*shape, dtype=torch.complex128, requires_grad=True)


CASES = [(1, (7,)), (2, (4, 5)), (3, (3, 4, 2))]


@pytest.mark.parametrize("d,n_modes", CASES, ids=str)
@pytest.mark.parametrize("isign", [1, -1])
def test_gradcheck_type1(d, n_modes, isign):
    x, c = points(6, d), cplx(2, 6)
    fn = lambda x, c: nufft1(x, c, n_modes, eps=EPS, isign=isign)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, c), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=d == 3)


@pytest.mark.parametrize("d,n_modes", CASES, ids=str)
@pytest.mark.parametrize("isign", [1, -1])
def test_gradcheck_type2(d, n_modes, isign):
    x, f = points(6, d), cplx(2, *n_modes)
    fn = lambda x, f: nufft2(x, f, eps=EPS, isign=isign)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, f), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=d == 3)


def test_gradgradcheck_values():
    x, c = points(5, 2).detach(), cplx(1, 5)
    assert torch.autograd.gradgradcheck(lambda c: nufft1(x, c, (3, 4), eps=EPS), (c,), eps=1e-6, atol=1e-6)


def test_coordinate_gradient_matches_exact_sum():
    # Larger case than gradcheck can afford: autograd through the exact sum as reference.
    x = points(300, 3)
    c = torch.randn(2, 300, dtype=torch.complex128)
    g = torch.randn(2, 5, 6, 7, dtype=torch.complex128)
    (nufft1(x, c, (5, 6, 7), eps=1e-12) * g.conj()).real.sum().backward()
    ours = x.grad.clone()
    x.grad = None
    axes = [torch.arange(n, dtype=torch.float64) - n // 2 for n in (5, 6, 7)]
    k = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    ref = (c @ torch.exp(1j * (x @ k.T))).reshape(2, 5, 6, 7)
    (ref * g.conj()).real.sum().backward()
    torch.testing.assert_close(ours, x.grad, rtol=1e-9, atol=1e-9)


def test_plan_gradients_and_single_precision():
    x = points(50, 2).detach().float()
    plan = NUFFTPlan(x, (6, 6), eps=1e-6, dtype=torch.complex64)
    c = torch.randn(3, 50, dtype=torch.complex64, requires_grad=True)
    out = plan.type1(c)
    g = torch.randn_like(out)
    (grad_c,) = torch.autograd.grad(out, c, g)
    # grad_c = type2(g) with the opposite sign (adjoint), checked against the exact sum.
    axes = [torch.arange(6, dtype=torch.float64) - 3] * 2
    k = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    ref = g.reshape(3, -1).to(torch.complex128) @ torch.exp(-1j * (x.double() @ k.T)).T
    assert float((grad_c - ref).abs().max() / ref.abs().max()) < 1e-5


# --------------------------------------------------------------------------- opcheck


def _sorted(x, n_modes, eps):
    geo = _geometry(n_modes, eps, x.dtype, "cpu")
    perm, bin_ptr = P.nufft_sort(x, list(geo.grid), list(geo.bins))
    return geo, perm, bin_ptr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_kernels(dtype):
    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    x = (torch.rand(40, 2, dtype=dtype) * 2 * math.pi)
    geo, perm, bin_ptr = _sorted(x, (6, 7), 1e-6)
    c = torch.randn(2, 40, dtype=cdt)
    fine = torch.randn(2, *geo.grid, dtype=cdt)
    torch.library.opcheck(P.nufft_sort, (x, list(geo.grid), list(geo.bins)))
    torch.library.opcheck(P.nufft_spread, (x, c, perm, bin_ptr, list(geo.grid), list(geo.bins), geo.width, geo.beta))
    torch.library.opcheck(P.nufft_interp, (x, fine, perm, bin_ptr, list(geo.bins), geo.width, geo.beta))
    torch.library.opcheck(P.nufft_kernel_ft, (6, 16, 7, 16.1))


def test_transforms_compile_as_one_graph():
    """nufft1/nufft2 are Python composites of the registered primitives: torch.compile
    traces them (forward and backward) without graph breaks and gives the eager values."""
    x = (torch.rand(30, 3, dtype=torch.float64) * 2 * math.pi)
    c = torch.randn(2, 30, dtype=torch.complex128)

    def roundtrip(x, c):
        return nufft2(x, nufft1(x, c, (4, 5, 6), eps=1e-9), eps=1e-9, isign=-1)

    explanation = torch._dynamo.explain(roundtrip)(x, c)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(roundtrip, backend="aot_eager", fullgraph=True)
    xr, cr = x.clone().requires_grad_(), c.clone().requires_grad_()
    out = compiled(xr, cr)
    ref = roundtrip(x.clone().requires_grad_(), c.clone().requires_grad_())
    torch.testing.assert_close(out, ref)
    out.abs().sum().backward()
    xe, ce = x.clone().requires_grad_(), c.clone().requires_grad_()
    roundtrip(xe, ce).abs().sum().backward()
    torch.testing.assert_close(xr.grad, xe.grad)
    torch.testing.assert_close(cr.grad, ce.grad)
