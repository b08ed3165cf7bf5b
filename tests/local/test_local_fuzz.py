"""Property-based fuzzing of local_basis_aggregate with hypothesis (child processes, tests/fuzz_harness.py).

Random CSR graphs (empty rows, no edges), float32/float64, strided inputs, magnitudes
1e-30..1e38 and NaN/inf in the values: agreement with the float64 gather-scatter reference;
out-of-range or negative col, bad row pointers, mismatched shapes and dtypes: a clean
ValueError/TypeError.
"""

from __future__ import annotations

import pytest
import torch

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_harness as fh  # noqa: E402
from attention_reference import local_aggregate_ref  # noqa: E402

from pyengine import ops  # noqa: E402


@st.composite
def graphs(draw):
    lens = draw(st.lists(st.integers(0, 6), max_size=10))
    N = draw(st.integers(1, 12))
    row_ptr = torch.zeros(len(lens) + 1, dtype=torch.long)
    if lens:
        row_ptr[1:] = torch.cumsum(torch.tensor(lens), 0)
    E = int(row_ptr[-1])
    col = torch.tensor(draw(st.lists(st.integers(0, N - 1), min_size=E, max_size=E)), dtype=torch.long)
    return row_ptr, col, N


@given(g=graphs(), B=st.integers(1, 4), C=st.integers(1, 5), dtype=st.sampled_from([torch.float32, torch.float64]),
       mag=fh.magnitudes(True), use_w=st.booleans(), stride=st.integers(0, 2), int32=st.booleans(),
       seed=st.integers(0, 2**16))
def _fuzz_local(g, B, C, dtype, mag, use_w, stride, int32, seed):
    row_ptr, col, N = g
    E = col.numel()
    psi = fh.maybe_noncontiguous(fh.random_tensor(seed, (E, B), torch.float64, 1.0).to(dtype), stride)
    f = fh.maybe_noncontiguous(fh.random_tensor(seed + 1, (N, C), torch.float64, mag).to(dtype), stride)
    w = fh.random_tensor(seed + 2, (N,), torch.float64, 1.0).abs().to(dtype) if use_w else None
    col = col.int() if int32 else col
    fh.log_case(op="local_basis_aggregate", row_ptr=row_ptr, col=col, psi=psi, f=f, w=w)
    out = ops.local_basis_aggregate(psi, f, row_ptr, col, w)
    want = local_aggregate_ref(psi.double(), f.double(), row_ptr, col, None if w is None else w.double())
    assert out.dtype == dtype
    fh.assert_matches(out, want, dtype)


@given(g=graphs(), kind=st.sampled_from(["col_high", "col_negative", "rp_decreasing", "rp_last", "psi_rows",
                                         "f_dtype", "w_len", "col_float"]), checks_off=st.booleans())
def _fuzz_local_bad(g, kind, checks_off):
    row_ptr, col, N = g
    E = col.numel()
    psi, f, w = torch.randn(E, 2), torch.randn(N, 3), None
    if kind in ("col_high", "col_negative") and E == 0 or kind == "rp_decreasing" and row_ptr.numel() < 3:
        kind = "rp_last"
    if kind == "col_high":
        col = col.clone()
        col[E // 2] = N
    elif kind == "col_negative":
        col = col.clone()
        col[-1] = -1
    elif kind == "rp_decreasing":
        row_ptr = row_ptr.clone()
        row_ptr[1] = E + 5
    elif kind == "rp_last":
        row_ptr = row_ptr.clone()
        row_ptr[-1] = E + 1
    elif kind == "psi_rows":
        psi = torch.randn(E + 1, 2)
    elif kind == "f_dtype":
        f = f.double()
    elif kind == "w_len":
        w = torch.ones(N + 1)
    else:
        col = col.float()
    fh.log_case(op="local_basis_aggregate(bad)", kind=kind, row_ptr=row_ptr, col=col, N=N, checks_off=checks_off)
    if checks_off:
        with ops.input_checks(False):
            r = fh.expect_clean_error(lambda: ops.local_basis_aggregate(psi, f, row_ptr, col, w))
    else:
        r = fh.expect_clean_error(lambda: ops.local_basis_aggregate(psi, f, row_ptr, col, w))
    assert isinstance(r, (ValueError, TypeError)), f"{kind}: accepted"


def test_local_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_local", fuzz_profile)


def test_local_bad_inputs_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_local_bad", fuzz_profile)
