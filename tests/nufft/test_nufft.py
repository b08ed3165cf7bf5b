"""NUFFT types 1 and 2 (CPU) against the exact non-uniform DFT and against finufft.

The exact sums are computed in float64/complex128 with plain torch (an (M, K) phase
matrix), so sizes stay small there; finufft (a test dependency) covers larger
sizes. Accuracy is measured as the relative L2 error ||ours - ref|| / ||ref||.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pyengine.ops import NUFFTPlan, nufft1, nufft2

finufft = pytest.importorskip("finufft")


def mode_grid(n_modes):
    """(K, d) float64 integer frequencies in FINUFFT order (C order over the mode axes)."""
    axes = [torch.arange(n, dtype=torch.float64) - n // 2 for n in n_modes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(n_modes))


def exact_type1(x, c, n_modes, isign):
    phase = x.double() @ mode_grid(n_modes).T  # (M, K)
    e = torch.exp(1j * isign * phase)
    return (c.to(torch.complex128) @ e).reshape(c.shape[0], *n_modes)


def exact_type2(x, f, isign):
    n_modes = f.shape[1:]
    phase = x.double() @ mode_grid(n_modes).T
    e = torch.exp(1j * isign * phase)
    return f.to(torch.complex128).reshape(f.shape[0], -1) @ e.T


def rel_err(a, b):
    a, b = a.to(torch.complex128), b.to(torch.complex128)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def random_points(M, d, dtype=torch.float64, spread=1.0):
    # Beyond one period on both sides: the transforms must fold them.
    return ((torch.rand(M, d, dtype=torch.float64) * 2 - 1) * math.pi * 3 * spread).to(dtype)


def random_complex(*shape, dtype=torch.complex128):
    return torch.randn(*shape, dtype=dtype)


CDTYPES = {"c64": (torch.complex64, 1e-5), "c128": (torch.complex128, 1e-12)}
SHAPES = [(1, (17,)), (1, (64,)), (2, (12, 9)), (2, (7, 16)), (3, (6, 5, 8)), (3, (9, 4, 7))]


# --------------------------------------------------------------------------- against the exact sums


@pytest.mark.parametrize("prec", list(CDTYPES))
@pytest.mark.parametrize("d,n_modes", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("isign", [1, -1])
def test_type1_exact(prec, d, n_modes, isign):
    dtype, eps = CDTYPES[prec]
    M, B = 203, 3
    x = random_points(M, d)
    c = random_complex(B, M)
    ref = exact_type1(x, c, n_modes, isign)
    out = nufft1(x.to(torch.float32 if dtype == torch.complex64 else torch.float64), c.to(dtype), n_modes,
                 eps=eps, isign=isign)
    assert out.shape == (B, *n_modes) and out.dtype == dtype
    assert rel_err(out, ref) <= 10 * eps


@pytest.mark.parametrize("prec", list(CDTYPES))
@pytest.mark.parametrize("d,n_modes", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("isign", [1, -1])
def test_type2_exact(prec, d, n_modes, isign):
    dtype, eps = CDTYPES[prec]
    M, B = 157, 2
    x = random_points(M, d)
    f = random_complex(B, *n_modes)
    ref = exact_type2(x, f, isign)
    out = nufft2(x, f.to(dtype), eps=eps, isign=isign)
    assert out.shape == (B, M) and out.dtype == dtype
    assert rel_err(out, ref) <= 10 * eps


@pytest.mark.parametrize("eps", [1e-2, 1e-4, 1e-6, 1e-9, 1e-12, 1e-14])
def test_accuracy_follows_eps(eps):
    # Every kernel width (2 .. 15) in 2-D, double precision.
    x = random_points(300, 2)
    c = random_complex(1, 300)
    ref = exact_type1(x, c, (10, 13), 1)
    assert rel_err(nufft1(x, c, (10, 13), eps=eps), ref) <= 10 * max(eps, 1e-14)
    f = random_complex(1, 10, 13)
    assert rel_err(nufft2(x, f, eps=eps), exact_type2(x, f, -1)) <= 10 * max(eps, 1e-14)


def test_single_precision_eps_1e6():
    x = random_points(500, 3, torch.float32)
    c = random_complex(2, 500, dtype=torch.complex64)
    ref = exact_type1(x, c, (8, 8, 8), 1)
    assert rel_err(nufft1(x, c, (8, 8, 8), eps=1e-6), ref) <= 2e-5


def test_edge_cases():
    # One point, one mode, 1-D values, points exactly on grid nodes and at +-2*pi.
    x = torch.tensor([[0.0], [2 * math.pi], [-2 * math.pi], [math.pi], [1e-17], [-1e-17]], dtype=torch.float64)
    c = random_complex(x.shape[0])
    for n in (1, 2, 3):
        ref = exact_type1(x, c[None], (n,), 1)[0]
        assert rel_err(nufft1(x, c, (n,), eps=1e-12), ref) <= 1e-11
    out = nufft1(x[:1], c[:1], (5,), eps=1e-12)
    assert rel_err(out, exact_type1(x[:1], c[None, :1], (5,), 1)[0]) <= 1e-11
    # No points: zeros out of type 1, empty out of type 2.
    empty = torch.zeros(0, 2, dtype=torch.float64)
    assert torch.equal(nufft1(empty, torch.zeros(2, 0, dtype=torch.complex128), (4, 5)),
                       torch.zeros(2, 4, 5, dtype=torch.complex128))
    assert nufft2(empty, random_complex(2, 4, 5)).shape == (2, 0)


def test_clustered_points():
    # All points in one corner: one bin, subgrids overlapping the periodic seam.
    x = (torch.rand(2000, 3, dtype=torch.float64) * 0.3 - 0.15)
    c = random_complex(2, 2000)
    ref = exact_type1(x, c, (6, 7, 8), -1)
    assert rel_err(nufft1(x, c, (6, 7, 8), eps=1e-10, isign=-1), ref) <= 1e-9
    f = random_complex(2, 6, 7, 8)
    assert rel_err(nufft2(x, f, eps=1e-10), exact_type2(x, f, -1)) <= 1e-9


# --------------------------------------------------------------------------- against finufft


def _finufft(kind, d, x, data, n_modes, eps, isign):
    xs = [np.ascontiguousarray(x[:, i].numpy()) for i in range(d)]
    fn = getattr(finufft, f"nufft{d}d{kind}")
    if kind == 1:
        return torch.from_numpy(fn(*xs, data.numpy(), n_modes, eps=eps, isign=isign))
    return torch.from_numpy(fn(*xs, data.numpy(), eps=eps, isign=isign))


@pytest.mark.parametrize("prec", list(CDTYPES))
@pytest.mark.parametrize("d,n_modes", [(1, (1000,)), (1, (999,)), (2, (64, 33)), (3, (24, 17, 32))],
                         ids=lambda v: str(v))
def test_matches_finufft(prec, d, n_modes):
    dtype, eps = CDTYPES[prec]
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    M, B = 20_011, 2
    x = random_points(M, d, real)
    c = random_complex(B, M, dtype=dtype)
    ref1 = _finufft(1, d, x, c, n_modes, eps, 1)
    assert rel_err(nufft1(x, c, n_modes, eps=eps), ref1) <= 10 * eps
    f = random_complex(B, *n_modes, dtype=dtype)
    ref2 = _finufft(2, d, x, f, n_modes, eps, -1)
    assert rel_err(nufft2(x, f, eps=eps), ref2) <= 10 * eps


# --------------------------------------------------------------------------- adjointness, plans


@pytest.mark.parametrize("d,n_modes", [(1, (31,)), (2, (8, 11)), (3, (5, 6, 7))], ids=str)
def test_adjoint(d, n_modes):
    # <type1(c), f> = <c, type2(f)> with opposite signs (type 2 with -isign is the adjoint).
    x = random_points(400, d)
    c = random_complex(2, 400)
    f = random_complex(2, *n_modes)
    lhs = torch.vdot(nufft1(x, c, n_modes, eps=1e-13, isign=1).reshape(-1), f.reshape(-1))
    rhs = torch.vdot(c.reshape(-1), nufft2(x, f, eps=1e-13, isign=-1).reshape(-1))
    assert abs(complex(lhs - rhs)) <= 1e-11 * abs(complex(lhs))


def test_plan_matches_direct_calls():
    x = random_points(1000, 3, torch.float32)
    plan = NUFFTPlan(x, (8, 9, 10), eps=1e-5, dtype=torch.complex64)
    c = random_complex(3, 1000, dtype=torch.complex64)
    f = random_complex(3, 8, 9, 10, dtype=torch.complex64)
    torch.testing.assert_close(plan.type1(c), nufft1(x, c, (8, 9, 10), eps=1e-5), rtol=0, atol=0)
    torch.testing.assert_close(plan.type2(f), nufft2(x, f, eps=1e-5), rtol=0, atol=0)
    assert plan.type1(c[0]).shape == (8, 9, 10) and plan.type2(f[0]).shape == (1000,)
    # perm is a permutation and bin_ptr a CSR pointer over bins.
    assert torch.equal(plan.perm.sort().values, torch.arange(1000))
    assert int(plan.bin_ptr[0]) == 0 and int(plan.bin_ptr[-1]) == 1000 and bool((plan.bin_ptr.diff() >= 0).all())


def test_results_independent_of_thread_count():
    x = random_points(30_000, 3)
    c = random_complex(2, 30_000)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nufft1(x, c, (16, 16, 16), eps=1e-9)
        torch.set_num_threads(max(2, prev))
        many = nufft1(x, c, (16, 16, 16), eps=1e-9)
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(one, many)  # subgrids are added in a fixed order, no atomics


# --------------------------------------------------------------------------- errors


def test_bad_inputs():
    x = random_points(10, 2)
    c = random_complex(1, 10)
    with pytest.raises(ValueError, match="finite"):
        nufft1(torch.tensor([[0.0, float("nan")]], dtype=torch.float64), c[:, :1], (4, 4))
    with pytest.raises(ValueError, match="finite"):
        nufft2(torch.tensor([[float("inf"), 0.0]]), random_complex(1, 4, 4))
    with pytest.raises(ValueError, match="values must be"):
        nufft1(x, random_complex(1, 11), (4, 4))
    with pytest.raises(ValueError, match="n_modes has 3 entries"):
        nufft1(x, c, (4, 4, 4))
    with pytest.raises(ValueError, match="modes must be"):
        nufft2(x, random_complex(2, 3, 4, 5, 6))
    with pytest.raises(TypeError, match="points must be float32 or float64"):
        nufft1(x.to(torch.int64), c, (4, 4))
    with pytest.raises(TypeError, match="values must be complex64 or complex128"):
        nufft1(x, c.real.to(torch.float16), (4, 4))
    with pytest.raises(ValueError, match="eps must be in"):
        nufft1(x, c, (4, 4), eps=0.0)
    with pytest.raises(ValueError, match="isign"):
        nufft1(x, c, (4, 4), isign=2)
    with pytest.raises(ValueError, match="points must be"):
        nufft1(torch.zeros(10, 4), c, (4, 4, 4, 4))
    plan = NUFFTPlan(x, (4, 4), eps=1e-6, dtype=torch.complex128)
    with pytest.raises(TypeError, match="plan was made for"):
        plan.type1(c.to(torch.complex64))
    with pytest.raises(ValueError, match="n_modes"):
        plan.type2(random_complex(1, 4, 5))
    # The raw ops check their arguments too.
    P = torch.ops.pyengine
    with pytest.raises(ValueError, match="bin_ptr must have"):
        P.nufft_spread(x, c, plan.perm, plan.bin_ptr[:-1], [16, 16], [8, 32], 7, 16.1)
    with pytest.raises(ValueError, match="perm entries"):
        P.nufft_spread(x, c, plan.perm + 5, plan.bin_ptr, [16, 16], [8, 32], 7, 16.1)
    with pytest.raises(ValueError, match="width"):
        P.nufft_spread(x, c, plan.perm, plan.bin_ptr, [16, 16], [8, 32], 40, 16.1)


def test_baseline_kernels_match_avx2(tmp_path):
    # The CPU kernels exist twice (AVX2+FMA and baseline x86-64, chosen at run time);
    # PYENGINE_NUFFT_NO_AVX2 forces the baseline copy, run here in a subprocess.
    import os
    import subprocess
    import sys

    cases = [(1, (33,)), (2, (10, 7)), (3, (6, 5, 4))]
    gen = torch.Generator().manual_seed(1)
    inputs = []
    for d, n in cases:
        inputs.append((torch.rand(300, d, generator=gen, dtype=torch.float64) * 7 - 1,
                       torch.randn(2, 300, generator=gen, dtype=torch.complex128),
                       torch.randn(2, *n, generator=gen, dtype=torch.complex128), n))
    torch.save(inputs, tmp_path / "in.pt")
    code = (
        "import sys, torch; from pyengine.ops import nufft1, nufft2\n"
        "inputs = torch.load(sys.argv[1])\n"
        "torch.save([(nufft1(x, c, n, eps=e), nufft2(x, f, eps=e)) for x, c, f, n in inputs\n"
        "            for e in (1e-3, 1e-9, 1e-13)], sys.argv[2])\n"
    )
    env = dict(os.environ, PYENGINE_NUFFT_NO_AVX2="1")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")], env=env,
                   check=True)
    baseline = torch.load(tmp_path / "out.pt")
    ours = [(nufft1(x, c, n, eps=e), nufft2(x, f, eps=e)) for x, c, f, n in inputs for e in (1e-3, 1e-9, 1e-13)]
    for (a1, a2), (b1, b2) in zip(ours, baseline):
        # Same algorithm, different rounding (FMA vs separate multiply and add).
        assert rel_err(a1, b1) <= 1e-13 and rel_err(a2, b2) <= 1e-13
