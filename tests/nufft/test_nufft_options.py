"""FINUFFT's options on types 1 and 2: modeord, upsampling factor 1.25 / 2 (auto and forced),
and the warning for tolerances the dtype cannot reach.

References: the exact non-uniform DFT in float64 (an (M, K) phase matrix) and finufft
(2.5.1 here; it uses a different kernel, so the two are compared through their errors
against the exact sums, not against each other to eps).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from pyengine.ops import NUFFTAccuracyWarning, NUFFTPlan, nufft1, nufft2
from pyengine.ops import nufft as nufft_module

finufft = pytest.importorskip("finufft")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mode_grid(n_modes, modeord=0):
    axes = [torch.arange(n, dtype=torch.float64) - n // 2 for n in n_modes]
    if modeord == 1:
        axes = [torch.fft.ifftshift(a) for a in axes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(n_modes))


def exact_type1(x, c, n_modes, isign, modeord=0):
    e = torch.exp(1j * isign * (x.double() @ mode_grid(n_modes, modeord).T))
    return (c.to(torch.complex128) @ e).reshape(c.shape[0], *n_modes)


def exact_type2(x, f, isign, modeord=0):
    e = torch.exp(1j * isign * (x.double() @ mode_grid(f.shape[1:], modeord).T))
    return f.to(torch.complex128).reshape(f.shape[0], -1) @ e.T


def rel_err(a, b):
    a, b = a.to(torch.complex128), b.to(torch.complex128)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def points(M, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(M, d, generator=g, dtype=torch.float64) * 2 - 1) * 3 * math.pi).to(dtype)


def cplx(*shape, dtype=torch.complex128, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _finufft(kind, x, data, n_modes, eps, isign, **opts):
    d = x.shape[1]
    xs = [np.ascontiguousarray(x[:, i].numpy()) for i in range(d)]
    fn = getattr(finufft, f"nufft{d}d{kind}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == 1:
            return torch.from_numpy(fn(*xs, data.numpy(), n_modes, eps=eps, isign=isign, nthreads=1, **opts))
        return torch.from_numpy(fn(*xs, data.numpy(), eps=eps, isign=isign, nthreads=1, **opts))


# --------------------------------------------------------------------------- modeord


@pytest.mark.parametrize("d,n_modes", [(1, (17,)), (1, (16,)), (2, (9, 12)), (3, (5, 6, 7))], ids=str)
def test_modeord_fft_order_matches_exact_and_finufft(d, n_modes):
    x = points(211, d)
    c = cplx(2, 211)
    f = cplx(2, *n_modes, seed=2)
    out1 = nufft1(x, c, n_modes, eps=1e-12, modeord=1)
    assert rel_err(out1, exact_type1(x, c, n_modes, 1, modeord=1)) <= 1e-11
    # The same numbers as the centred output, rolled: torch.fft.ifftshift over the mode axes.
    centred = nufft1(x, c, n_modes, eps=1e-12)
    torch.testing.assert_close(out1, torch.fft.ifftshift(centred, dim=tuple(range(1, d + 1))), rtol=0, atol=1e-13)
    ref = torch.stack([_finufft(1, x, c[b], n_modes, 1e-12, 1, modeord=1) for b in range(2)])
    assert rel_err(out1, ref) <= 1e-11
    out2 = nufft2(x, f, eps=1e-12, modeord=1)
    assert rel_err(out2, exact_type2(x, f, -1, modeord=1)) <= 1e-11
    ref2 = torch.stack([_finufft(2, x, f[b], n_modes, 1e-12, -1, modeord=1) for b in range(2)])
    assert rel_err(out2, ref2) <= 1e-11


def test_modeord_plan_and_gradients():
    x = points(60, 2).requires_grad_()
    c = cplx(1, 60).requires_grad_()
    plan = NUFFTPlan(x, (6, 5), eps=1e-12, dtype=torch.complex128, modeord=1)
    assert plan.modeord == 1
    torch.autograd.gradcheck(lambda x, c: NUFFTPlan(x, (6, 5), 1e-12, torch.complex128, modeord=1).type1(c),
                             (x, c), atol=1e-8)
    f = cplx(1, 6, 5, seed=3).requires_grad_()
    torch.autograd.gradcheck(lambda x, f: nufft2(x, f, eps=1e-12, modeord=1), (x, f), atol=1e-8)


def test_bad_modeord_and_upsampfac():
    x, c = points(10, 2), cplx(1, 10)
    for bad in (2, -1, True, "fft"):
        with pytest.raises(ValueError, match="modeord"):
            nufft1(x, c, (4, 4), modeord=bad)
    for bad in (1.5, 3.0, 0, True, "auto"):
        with pytest.raises(ValueError, match="upsampfac"):
            nufft2(x, cplx(1, 4, 4), upsampfac=bad)


# --------------------------------------------------------------------------- upsampling factor


SWEEP64 = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14]
SWEEP32 = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def _sweep_errors(sigma, eps, real, d, n_modes):
    """Errors of ours and finufft against the exact sums, type 1 and type 2."""
    cdt = torch.complex64 if real == torch.float32 else torch.complex128
    x = points(701, d, real, seed=5)
    c = cplx(1, 701, dtype=cdt, seed=6)
    f = cplx(1, *n_modes, dtype=cdt, seed=7)
    ref1, ref2 = exact_type1(x, c, n_modes, 1), exact_type2(x, f, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NUFFTAccuracyWarning)
        ours = (rel_err(nufft1(x, c, n_modes, eps=eps, upsampfac=sigma), ref1),
                rel_err(nufft2(x, f, eps=eps, upsampfac=sigma), ref2))
    peer = (rel_err(_finufft(1, x, c[0], n_modes, eps, 1, upsampfac=sigma)[None], ref1),
            rel_err(_finufft(2, x, f[0], n_modes, eps, -1, upsampfac=sigma)[None], ref2))
    return ours, peer


@pytest.mark.parametrize("d,n_modes", [(1, (97,)), (2, (14, 11)), (3, (7, 6, 9))], ids=str)
@pytest.mark.parametrize("sigma", [2.0, 1.25])
def test_tolerance_sweep_float64(sigma, d, n_modes):
    reach = nufft_module._reachable_eps(sigma, torch.float64)
    for eps in SWEEP64:
        ours, peer = _sweep_errors(sigma, eps, torch.float64, d, n_modes)
        target = max(eps, reach)
        for o, p in zip(ours, peer):
            # Within 10x of the tolerance, as FINUFFT promises, and never far behind finufft.
            assert o <= 10 * target, (eps, ours, peer)
            assert o <= max(10 * target, 5 * p), (eps, ours, peer)


@pytest.mark.parametrize("d,n_modes", [(1, (97,)), (2, (14, 11)), (3, (7, 6, 9))], ids=str)
@pytest.mark.parametrize("sigma", [2.0, 1.25])
def test_tolerance_sweep_float32(sigma, d, n_modes):
    reach = nufft_module._reachable_eps(sigma, torch.float32)
    for eps in SWEEP32:
        ours, peer = _sweep_errors(sigma, eps, torch.float32, d, n_modes)
        for o, p in zip(ours, peer):
            assert o <= 10 * max(eps, reach), (eps, ours, peer)


def test_sigma_125_uses_a_smaller_grid_and_wider_kernel():
    g2 = nufft_module._geometry((100, 64), 1e-6, torch.float64, "cpu", 2.0)
    g1 = nufft_module._geometry((100, 64), 1e-6, torch.float64, "cpu", 1.25)
    assert g2.grid == (200, 128) and g1.grid == (128, 80)  # 2*N and the next 2,3,5-smooth even >= 1.25*N
    assert g2.width == 7 and g1.width == 10


def test_auto_upsampfac_rule():
    choose = nufft_module._choose_upsampfac
    assert choose(1e-6, 1000, 1) == 2.0 and choose(1e-6, 10_000_001, 1) == 1.25
    assert choose(1e-6, 300_000, 2) == 2.0 and choose(1e-6, 300_001, 2) == 1.25
    assert choose(1e-6, 3_000_001, 3) == 1.25 and choose(1e-10, 3_000_001, 3) == 2.0
    assert choose(1e-9, 0, 1, type3=True) == 1.25 and choose(1e-10, 0, 1, type3=True) == 2.0
    assert choose(1e-4, 0, 2, True, torch.float32) == 1.25 and choose(1e-5, 0, 2, True, torch.float32) == 2.0
    x = points(300, 2, seed=9)
    plan = NUFFTPlan(x, (640, 480), eps=1e-6, dtype=torch.complex128)  # 307200 modes: sigma = 1.25
    assert plan.upsampfac == 1.25
    assert NUFFTPlan(x, (640, 480), eps=1e-10, dtype=torch.complex128).upsampfac == 2.0
    assert NUFFTPlan(x, (64, 48), eps=1e-6, dtype=torch.complex128).upsampfac == 2.0
    f = cplx(1, 640, 480, seed=10)
    ref = _finufft(2, x, f[0], (640, 480), 1e-6, -1)[None]
    assert rel_err(plan.type2(f), ref) <= 1e-5


# --------------------------------------------------------------------------- unreachable tolerances


def test_unreachable_eps_warns_like_finufft():
    x = points(300, 2, torch.float32)
    c = cplx(1, 300, dtype=torch.complex64)
    with pytest.warns(NUFFTAccuracyWarning, match="complex64"):
        out = nufft1(x, c, (12, 10), eps=1e-12)
    # It still returns the best complex64 can do (~2e-7), and says so rather than pretending 1e-12.
    assert rel_err(out, exact_type1(x, c, (12, 10), 1)) <= 1e-6
    with pytest.warns(NUFFTAccuracyWarning):
        nufft2(x.double(), cplx(1, 12, 10), eps=1e-15)
    with pytest.warns(NUFFTAccuracyWarning, match="upsampfac 1.25"):
        plan = NUFFTPlan(x, (12, 10), eps=1e-12, dtype=torch.complex128, upsampfac=1.25)
    assert plan.eps == 1e-9  # raised to the floor, as FINUFFT raises tol
    with pytest.warns(NUFFTAccuracyWarning, match="upsampfac 1.25"):
        NUFFTPlan(x, (12, 10), eps=1e-6, dtype=torch.complex64, upsampfac=1.25)
    # Reachable tolerances, and the auto rule at 1e-12 (it picks sigma = 2), stay silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error", NUFFTAccuracyWarning)
        nufft1(x, c, (12, 10), eps=1e-7)
        NUFFTPlan(x, (12, 10), eps=1e-12, dtype=torch.complex128)
        NUFFTPlan(x, (800, 800), eps=1e-6, dtype=torch.complex64)  # auto picks 1.25 only where it reaches eps
        NUFFTPlan(x, (12, 10), eps=1e-14, dtype=torch.complex128)
        # ... and turn into an error for those who want one.
        with pytest.raises(NUFFTAccuracyWarning):
            nufft1(x, c, (12, 10), eps=1e-8)
