"""Type-3 NUFFT (CPU) against a float64 brute-force sum and finufft's nufft{1,2,3}d3;
autograd (gradcheck in values, sources and targets, double backward), plans, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pyengine.ops import NUFFT3Plan, NUFFTAccuracyWarning, nufft3
from pyengine.ops import nufft as nu
from pyengine.ops import nufft_type3 as t3

finufft = pytest.importorskip("finufft")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def exact_type3(x, c, s, isign):
    e = torch.exp(1j * isign * (x.double() @ s.double().T))  # (M, N)
    return c.to(torch.complex128) @ e


def rel_err(a, b):
    a, b = a.to(torch.complex128), b.to(torch.complex128)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def coords(n, d, centre, half, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
    return (torch.as_tensor(centre, dtype=torch.float64) + u * torch.as_tensor(half, dtype=torch.float64)).to(dtype)


def cplx(*shape, dtype=torch.complex128, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# Awkward sizes and off-centre, unequal ranges per dimension.
CASES = {
    1: dict(M=203, N=157, xc=[3.1], xh=[7.0], sc=[-20.0], sh=[33.0]),
    2: dict(M=177, N=131, xc=[-1.0, 5.0], xh=[2.5, 0.7], sc=[4.0, -9.0], sh=[15.0, 40.0]),
    3: dict(M=151, N=97, xc=[0.3, -2.0, 8.0], xh=[1.1, 3.0, 0.4], sc=[2.0, 0.0, -3.0], sh=[9.0, 4.0, 30.0]),
}


def case(d, dtype=torch.float64, B=2):
    p = CASES[d]
    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    x = coords(p["M"], d, p["xc"], p["xh"], 10 + d, dtype)
    s = coords(p["N"], d, p["sc"], p["sh"], 20 + d, dtype)
    return x, cplx(B, p["M"], dtype=cdt, seed=30 + d), s


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("sigma", [2.0, 1.25])
@pytest.mark.parametrize("isign", [1, -1])
def test_matches_brute_force_float64(d, sigma, isign):
    x, c, s = case(d)
    ref = exact_type3(x, c, s, isign)
    for eps in (1e-3, 1e-6, 1e-9) + ((1e-12,) if sigma == 2.0 else ()):
        out = nufft3(x, c, s, eps=eps, isign=isign, upsampfac=sigma)
        assert out.shape == ref.shape and out.dtype == torch.complex128
        assert rel_err(out, ref) <= 10 * eps, (eps, rel_err(out, ref))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("sigma", [2.0, 1.25])
def test_matches_brute_force_float32(d, sigma):
    x, c, s = case(d, torch.float32)
    ref = exact_type3(x, c, s, 1)
    reach = nu._reachable_eps(sigma, torch.float32)  # 1e-7 (sigma 2), 1e-5 (sigma 1.25)
    for eps in (1e-2, 1e-4, 1e-5, 1e-6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NUFFTAccuracyWarning)
            out = nufft3(x, c, s, eps=eps, upsampfac=sigma)
        assert out.dtype == torch.complex64
        # float32 type 3 has ~3e-6 of its own (rounding of the rescaled coordinates and phases).
        assert rel_err(out, ref) <= 10 * max(eps, reach, 3e-7), (eps, rel_err(out, ref))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_matches_finufft(d):
    g = torch.Generator().manual_seed(d)
    M, N = 5003, 4001
    x = (torch.rand(M, d, generator=g, dtype=torch.float64) - 0.4) * 6.0
    s = (torch.rand(N, d, generator=g, dtype=torch.float64) - 0.7) * 40.0
    c = torch.randn(M, generator=g, dtype=torch.complex128)
    xs = [np.ascontiguousarray(x[:, i].numpy()) for i in range(d)]
    ss = [np.ascontiguousarray(s[:, i].numpy()) for i in range(d)]
    fn = getattr(finufft, f"nufft{d}d3")
    for eps, isign in ((1e-6, 1), (1e-11, -1)):
        ref = torch.from_numpy(fn(*xs, c.numpy(), *ss, eps=eps, isign=isign, nthreads=1))
        out = nufft3(x, c, s, eps=eps, isign=isign)
        assert out.shape == (N,)
        assert rel_err(out, ref) <= 20 * eps
    # Spot check against the exact sum at a few targets (finufft and ours both approximate).
    idx = torch.arange(0, N, 97)
    exact = exact_type3(x, c[None], s[idx], -1)[0]
    assert rel_err(nufft3(x, c, s, eps=1e-11, isign=-1)[idx], exact) <= 1e-10


def test_degenerate_ranges_and_empty_sets():
    x = torch.full((40, 2), 1.5, dtype=torch.float64)  # every source at one point
    s = coords(30, 2, [3.0, -1.0], [10.0, 2.0], 1)
    c = cplx(1, 40)
    assert rel_err(nufft3(x, c, s, eps=1e-10), exact_type3(x, c, s, 1)) <= 1e-9
    s0 = torch.zeros(25, 2, dtype=torch.float64)  # every target at frequency 0
    x2 = coords(40, 2, [0.0, 2.0], [5.0, 5.0], 2)
    assert rel_err(nufft3(x2, c, s0, eps=1e-10), exact_type3(x2, c, s0, 1)) <= 1e-9
    one = nufft3(torch.zeros(1, 1, dtype=torch.float64), cplx(3, 1), torch.zeros(1, 1, dtype=torch.float64))
    torch.testing.assert_close(one, cplx(3, 1), rtol=1e-6, atol=1e-6)
    # No sources: zeros; no targets: an empty result.
    out = nufft3(torch.zeros(0, 3, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.complex128), s0[:, :1].expand(25, 3).contiguous())
    assert torch.equal(out, torch.zeros(2, 25, dtype=torch.complex128))
    assert nufft3(x2, c, torch.zeros(0, 2, dtype=torch.float64)).shape == (1, 0)


def test_large_space_bandwidth_product():
    # X*S = 2000 in 1-D: a fine grid of a few thousand nodes, still to eps.
    x = coords(3001, 1, [100.0], [20.0], 3)
    s = coords(2003, 1, [0.0], [100.0], 4)
    c = cplx(1, 3001)
    plan = NUFFT3Plan(x, s, eps=1e-9, dtype=torch.complex128)
    assert plan.grid[0] > 2 * 2000 / np.pi
    assert rel_err(plan.execute(c), exact_type3(x, c, s, 1)) <= 1e-8


# --------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("d", [1, 2, 3])
def test_gradcheck_values_sources_targets(d):
    # A perturbed coordinate moves the ranges, hence the discretisation: finite differences
    # carry ~1e-12 * |f| / 1e-6 of noise, so atol is 1e-5 on derivatives of size ~10-50.
    M, N = {1: (23, 19), 2: (14, 11), 3: (9, 7)}[d]
    x, c, s = case(d, B=2)
    x, c, s = x[:M].clone().requires_grad_(), c[:, :M].clone().requires_grad_(), s[:N].clone().requires_grad_()
    for isign in (1, -1):
        torch.autograd.gradcheck(lambda x, c, s: nufft3(x, c, s, eps=1e-12, isign=isign), (x, c, s), atol=1e-5,
                                 fast_mode=d == 3)


def test_gradgradcheck():
    x, c, s = case(2, B=1)
    x, c, s = x[:9].clone().requires_grad_(), c[:, :9].clone().requires_grad_(), s[:7].clone().requires_grad_()
    torch.autograd.gradgradcheck(lambda x, c, s: nufft3(x, c, s, eps=1e-12), (x, c, s), atol=1e-5, fast_mode=True)


def test_gradients_match_brute_force():
    x, c, s = case(3, B=2)
    x, c, s = x[:60], c[:, :60], s[:50]
    w = cplx(2, 50, seed=9)

    def loss(fn, x, c, s):
        return (fn(x, c, s) * w).real.sum() + fn(x, c, s).abs().pow(2).sum() * 1e-3

    leaves = [t.clone().requires_grad_() for t in (x, c, s)]
    ref = [t.clone().requires_grad_() for t in (x, c, s)]
    torch.autograd.backward(loss(lambda a, b, e: nufft3(a, b, e, eps=1e-12), *leaves))
    torch.autograd.backward(loss(lambda a, b, e: exact_type3(a, b, e, 1), *ref))
    for a, b in zip(leaves, ref):
        assert rel_err(a.grad, b.grad) <= 1e-9


# --------------------------------------------------------------------------- plans and errors


def test_plan_matches_function_and_is_reusable():
    x, c, s = case(2, torch.float32, B=3)
    plan = NUFFT3Plan(x, s, eps=1e-4, dtype=torch.complex64)
    assert plan.upsampfac == 1.25  # FINUFFT's default for type 3 where 1.25 reaches eps (float32: eps >= 1e-4)
    assert NUFFT3Plan(x, s, eps=1e-5, dtype=torch.complex64).upsampfac == 2.0
    torch.testing.assert_close(plan.execute(c), nufft3(x, c, s, eps=1e-4), rtol=0, atol=0)
    torch.testing.assert_close(plan.execute(c[1]), plan.execute(c)[1], rtol=0, atol=0)
    assert rel_err(plan.execute(c, isign=-1), exact_type3(x, c, s, -1)) <= 1e-3
    assert "NUFFT3Plan" in repr(plan)
    assert NUFFT3Plan(x, s, eps=1e-10, dtype=torch.complex128).upsampfac == 2.0


def test_bad_inputs():
    x, c, s = case(2)
    with pytest.raises(ValueError, match="targets has d = 3"):
        nufft3(x, c, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="values must be"):
        nufft3(x, c[:, :-1], s)
    with pytest.raises(ValueError, match="finite"):
        nufft3(x, c, torch.full((2, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        nufft3(x.clone().index_fill_(0, torch.tensor([3]), float("inf")), c, s)
    with pytest.raises(TypeError, match="points must be float32 or float64"):
        nufft3(x.long(), c, s)
    with pytest.raises(ValueError, match="upsampfac"):
        nufft3(x, c, s, upsampfac=1.5)
    with pytest.raises(ValueError, match="isign"):
        nufft3(x, c, s, isign=0)
    with pytest.raises(ValueError, match="too large"):
        nufft3(torch.tensor([[0.0], [1e12]], dtype=torch.float64), cplx(1, 2), torch.tensor([[0.0], [1e12]], dtype=torch.float64))
    with pytest.warns(NUFFTAccuracyWarning):
        nufft3(x.float(), c.to(torch.complex64), s.float(), eps=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NUFFTAccuracyWarning)
        nufft3(x, c, s, eps=1e-12)  # auto: sigma = 2, reachable in double


def test_kernel_ft_quadrature_matches_integer_frequency_op():
    # The type-3 deconvolution evaluates phihat at real frequencies in torch; at the
    # integer frequencies of a grid it must equal the C++ op the types 1/2 use.
    for w, beta, nf in ((7, 16.1, 64), (13, 0.97 * np.pi * 0.6 * 13, 40)):
        k = torch.arange(17, dtype=torch.float64) - 8
        ours = t3._kernel_ft_at((2 * np.pi * k / nf)[:, None], w, beta)
        ref = torch.ops.pyengine.nufft_kernel_ft(17, nf, w, beta)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=0)  # the op uses 2w+2 nodes, this 3w+8
