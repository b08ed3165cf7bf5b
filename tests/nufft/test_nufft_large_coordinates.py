"""Regression tests of the NUFFT coordinate folding (issue 14, finding 1).

One large but finite coordinate crashed the process (float32 1e38: munmap_chunk(); float64
1e25: std::bad_alloc thrown inside an OpenMP region; 1e300: SIGSEGV or all zeros) or gave
silently wrong values (nufft2 at 1e19: 1e141 where the bound is 12): the fold was a single
``u -= n`` after a scaling whose rounding error exceeds the period, not a reduction modulo
the period. Coordinates are now reduced with an exact fmod by the double 2*pi; the
reference below uses the same reduction (np.fmod), so the results must agree to the
transform's accuracy. Each case runs in a subprocess, so a crash fails the test instead of
killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CASE = """
import json, sys
import numpy as np
import torch
from pyengine.ops import nufft1, nufft2

def one(dtype, d, mag, kind):
    real = {"float32": torch.float32, "float64": torch.float64}[dtype]
    cplx = torch.complex64 if real == torch.float32 else torch.complex128
    eps = 1e-6 if real == torch.float32 else 1e-12
    g = torch.Generator().manual_seed(d)
    M = 7
    x = (torch.rand(M, d, generator=g, dtype=torch.float64) * 6 - 3)
    x[1, 0] = mag
    x[3, d - 1] = -mag
    x[5] = 0.37 * mag
    x = x.to(real)
    n_modes = (12, 9, 5)[:d]
    xr = np.fmod(x.double().numpy(), 2 * np.pi)  # the documented reduction (exact)
    axes = [np.arange(n) - n // 2 for n in n_modes]
    k = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    e = np.exp(1j * (xr @ k.T))  # (M, K), isign +1
    if kind == "type1":
        c = torch.randn(M, generator=g, dtype=torch.float64).to(cplx)
        out = nufft1(x, c, n_modes, eps=eps).reshape(-1).to(torch.complex128).numpy()
        ref = c.to(torch.complex128).numpy() @ e
    else:
        f = torch.randn(*n_modes, generator=g, dtype=torch.float64).to(cplx)
        out = nufft2(x, f, eps=eps, isign=1).to(torch.complex128).numpy()
        ref = e @ f.reshape(-1).to(torch.complex128).numpy()
    err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    return {"case": [dtype, d, mag, kind], "err": err, "finite": bool(np.isfinite(out).all())}

dtype, kind = sys.argv[1], sys.argv[2]
mags = json.loads(sys.argv[3])
for d in (1, 2, 3):
    for mag in mags:
        print(json.dumps(one(dtype, d, mag, kind)), flush=True)
"""

MAGS = {"float32": [1e16, 1e19, 3e30, 1e38, 3.4e38], "float64": [1e16, 1e19, 1e25, 1e100, 1e300, 1.7e308]}


@pytest.mark.parametrize("kind", ["type1", "type2"])
@pytest.mark.parametrize("dtype", sorted(MAGS))
def test_large_coordinates_fold_exactly(dtype, kind):
    r = subprocess.run([sys.executable, "-c", CASE, dtype, kind, json.dumps(MAGS[dtype])], capture_output=True,
                       text=True, timeout=120)
    results = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert r.returncode == 0, f"crashed or raised (rc {r.returncode}) after {len(results)} cases: {r.stderr[-1500:]}"
    assert len(results) == 3 * len(MAGS[dtype])
    tol = 1e-4 if dtype == "float32" else 1e-8
    bad = [res for res in results if not (res["finite"] and res["err"] < tol)]
    assert not bad, bad


def test_non_finite_coordinates_are_refused():
    import torch

    from pyengine.ops import nufft1, nufft2

    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.tensor([[0.5], [bad]], dtype=torch.float64)
        with pytest.raises(ValueError, match="finite"):
            nufft1(x, torch.ones(2, dtype=torch.complex128), (12,))
        with pytest.raises(ValueError, match="finite"):
            nufft2(x, torch.ones(12, dtype=torch.complex128))


def test_no_exception_can_escape_an_openmp_region():
    # An exception thrown inside a raw `#pragma omp parallel` region terminates the process
    # (1e25 in float64 used to end in std::bad_alloc there). at::parallel_for captures and
    # rethrows by itself; every raw OpenMP loop in csrc/ must catch inside the loop body and
    # rethrow after the region (std::exception_ptr), or state above the pragma why it cannot
    # throw (`// omp-nothrow: reason`, e.g. fps's barrier loop). A source check, so a new region without
    # it fails here rather than in a user's process.
    import pathlib
    import re

    csrc = pathlib.Path(__file__).resolve().parents[2] / "csrc"
    regions = 0
    for path in sorted(csrc.rglob("*")):
        if path.suffix not in (".cpp", ".h") or "_cuda" in path.name:
            continue
        text = path.read_text()
        for m in re.finditer(r"#pragma omp parallel[^\n]*\n", text):
            regions += 1
            if "omp-nothrow:" in text[max(0, m.start() - 300):m.start()]:
                continue  # a region that cannot throw (arithmetic only), with its reason stated
            body = text[m.end():m.end() + 600]
            assert "try {" in body and "catch (...)" in body, f"{path.name}: OpenMP region without try/catch"
            assert "rethrow_exception" in text[m.end():m.end() + 2000], f"{path.name}: exception not rethrown"
    assert regions >= 1  # the NUFFT spreader's region is the one known today
