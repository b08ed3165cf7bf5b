"""Property-based fuzzing of nufft1 / nufft2 with hypothesis (child processes, tests/fuzz_harness.py).

Random point counts, d in {1, 2, 3}, mode counts (odd, even, 1), float32/float64 points
(complex64/complex128 data), strided inputs, coordinates at magnitudes 1e-30..1e38 (and up to
1e308 in float64), NaN/inf coordinates: agreement with the exact sum over the coordinates
reduced modulo the double 2*pi (np.fmod, exact), at the transform's accuracy; non-finite
coordinates give a clean ValueError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_harness as fh  # noqa: E402

from pyengine.ops import nufft1, nufft2  # noqa: E402


def _exact(x, n_modes, isign):
    xr = np.fmod(x.double().numpy(), 2 * np.pi)
    axes = [np.arange(n) - n // 2 for n in n_modes]
    k = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(n_modes))
    return np.exp(1j * isign * (xr @ k.T))  # (M, K)


@given(M=st.integers(1, 40), d=st.sampled_from([1, 2, 3]), modes=st.lists(st.integers(1, 13), min_size=3, max_size=3),
       dtype=st.sampled_from([torch.float32, torch.float64]), mag=fh.magnitudes(), huge=st.booleans(),
       kind=st.sampled_from(["type1", "type2"]), isign=st.sampled_from([1, -1]), B=st.sampled_from([None, 1, 3]),
       bad=st.sampled_from([None, None, None, float("nan"), float("inf")]), stride=st.integers(0, 1),
       seed=st.integers(0, 2**16))
def _fuzz_nufft(M, d, modes, dtype, mag, huge, kind, isign, B, bad, stride, seed):
    n_modes = tuple(modes[:d])
    cplx = torch.complex64 if dtype == torch.float32 else torch.complex128
    x64 = fh.random_tensor(seed, (M, d), torch.float64, 3.0)
    x64[0] = x64[0] * (mag if mag else 1.0)  # one point far out (or tiny), the others in a few periods
    if huge and dtype == torch.float64:
        x64[-1, -1] = 1.7e308 * (1 if seed % 2 else -1)
    x = x64.to(dtype)
    if not torch.isfinite(x).all():  # beyond float32's range
        bad = float("inf")
    if bad is not None:
        x[M // 2, 0] = bad
    x = fh.maybe_noncontiguous(x, stride)
    g = np.random.default_rng(seed + 1)
    shape = (M,) if B is None else (B, M)
    fshape = n_modes if B is None else (B,) + n_modes
    c = torch.from_numpy(g.standard_normal(shape) + 1j * g.standard_normal(shape)).to(cplx)
    f = torch.from_numpy(g.standard_normal(fshape) + 1j * g.standard_normal(fshape)).to(cplx)
    fh.log_case(op=kind, points=x, n_modes=n_modes, isign=isign, B=B, mag=mag, bad=bad)
    eps = 1e-6 if dtype == torch.float32 else 1e-12
    call = ((lambda: nufft1(x, c, n_modes, isign=isign, eps=eps)) if kind == "type1"
            else (lambda: nufft2(x, f, isign=isign, eps=eps)))
    if bad is not None:
        r = fh.expect_clean_error(call)
        assert isinstance(r, ValueError), "non-finite points accepted"
        return
    out = call()
    e = _exact(x, n_modes, isign)
    if kind == "type1":
        want = (c.to(torch.complex128).reshape(-1, M).numpy() @ e).reshape(fshape)
    else:
        want = (f.to(torch.complex128).reshape(-1, e.shape[1]).numpy() @ e.T).reshape(shape)
    got = out.to(torch.complex128).numpy()
    assert got.shape == want.shape and out.dtype == cplx
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)
    assert err < (1e-4 if dtype == torch.float32 else 1e-8), err


def test_nufft_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_nufft", fuzz_profile)
