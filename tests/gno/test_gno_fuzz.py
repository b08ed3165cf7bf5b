"""Property-based fuzzing of gno_integral with hypothesis (child processes, tests/fuzz_harness.py).

Random CSR graphs, d in {2, 3}, every transform and reduction, 1-3 MLP layers, float32/float64,
strided inputs; coordinates at 1e-30..1e15, features and weights at 1e-30..1e38 and NaN/inf:
agreement with the float64 gather-MLP-scatter reference of tests/gno/test_gno.py. Corrupt
graphs and mismatched shapes: a clean ValueError/TypeError.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_harness as fh  # noqa: E402
from csr_fuzz import CSR_CORRUPTIONS, bad_csr, csr_graphs, expect_rejected  # noqa: E402

from pyengine import ops  # noqa: E402

_spec = importlib.util.spec_from_file_location("_gno_ref", pathlib.Path(__file__).with_name("test_gno.py"))
_gno_ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gno_ref)

TRANSFORMS = ["linear", "nonlinear", "linear_kernelonly", "nonlinear_kernelonly"]


@given(g=csr_graphs(max_row_len=5, max_rows=8, max_cols=10), d=st.sampled_from([2, 3]), C=st.integers(1, 4), hidden=st.lists(st.integers(1, 8), max_size=2),
       transform=st.sampled_from(TRANSFORMS), reduction=st.sampled_from(["sum", "mean"]),
       act=st.sampled_from(["gelu", "relu", "silu", "tanh"]), dtype=st.sampled_from([torch.float32, torch.float64]),
       xexp=st.integers(-30, 15), fmag=fh.magnitudes(True), use_w=st.booleans(), stride=st.integers(0, 2),
       seed=st.integers(0, 2**16))
def _fuzz_gno(g, d, C, hidden, transform, reduction, act, dtype, xexp, fmag, use_w, stride, seed):
    row_ptr, col, N = g
    M = row_ptr.numel() - 1
    xs = 10.0 ** xexp
    y = fh.maybe_noncontiguous(fh.random_tensor(seed, (N, d), torch.float64, xs).to(dtype), stride)
    x = fh.maybe_noncontiguous(fh.random_tensor(seed + 1, (M, d), torch.float64, xs).to(dtype), stride)
    f = fh.random_tensor(seed + 2, (N, C), torch.float64, fmag).to(dtype)
    w = fh.random_tensor(seed + 3, (N,), torch.float64, 1.0).abs().to(dtype) if use_w else None
    c_out = C if transform != "nonlinear_kernelonly" else 3
    dims = [_gno_ref.in_width(d, C, transform)] + hidden + [c_out]
    Ws, bs = _gno_ref.random_mlp(dims, dtype=torch.float64, seed=seed)
    Ws, bs = [W.to(dtype) for W in Ws], [b.to(dtype) for b in bs]
    f_in = None if transform == "linear_kernelonly" else f
    fh.log_case(op="gno_integral", row_ptr=row_ptr, col=col, y=y, x=x, f=f, transform=transform,
                reduction=reduction, act=act, dims=dims, fmag=fmag)
    out = ops.gno_integral(y, x, row_ptr, col, f_in, w, Ws, bs, act, transform, reduction)
    want = _gno_ref.reference(y.double(), x.double(), row_ptr, col, None if f_in is None else f.double(),
                              None if w is None else w.double(), [W.double() for W in Ws],
                              [b.double() for b in bs], act, transform, reduction)
    assert out.dtype == dtype
    # the MLP of float32 coordinates: relative rounding of ~1e-6 per layer
    fh.assert_matches(out, want, dtype, rtol=1e-3 if dtype == torch.float32 else 1e-8)


@given(g=csr_graphs(max_row_len=5, max_rows=8, max_cols=10),
       kind=st.sampled_from(CSR_CORRUPTIONS + ("f_rows", "w_len", "mlp_width", "act")), checks_off=st.booleans(),
       data=st.data())
def _fuzz_gno_bad(g, kind, checks_off, data):
    N = g[2]
    M = g[0].numel() - 1
    y, x, f, w = torch.rand(N, 3), torch.rand(M, 3), torch.randn(N, 2), None
    Ws, bs = [torch.randn(2, 6)], [torch.randn(2)]
    act = "gelu"
    kind, variants = data.draw(bad_csr(g, kind)) if kind in CSR_CORRUPTIONS else (kind, [g[:2]])
    if kind == "f_rows":
        f = torch.randn(N + 2, 2)
    elif kind == "w_len":
        w = torch.ones(N + 1)
    elif kind == "mlp_width":
        Ws = [torch.randn(2, 5)]
    elif kind == "act":
        act = "sigmoidish"
    for row_ptr, col in variants:
        fh.log_case(op="gno_integral(bad)", kind=kind, row_ptr=row_ptr, col=col, N=N, checks_off=checks_off)
        expect_rejected(kind, checks_off, ops.gno_integral, y, x, row_ptr, col, f, w, Ws, bs, act)


def test_gno_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_gno", fuzz_profile)


def test_gno_bad_inputs_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_gno_bad", fuzz_profile)
