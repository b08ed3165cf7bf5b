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
from csr_fuzz import CSR_CORRUPTIONS, bad_csr, csr_graphs, expect_rejected  # noqa: E402

from pyengine import ops  # noqa: E402


@given(g=csr_graphs(), B=st.integers(1, 4), C=st.integers(1, 5), dtype=st.sampled_from([torch.float32, torch.float64]),
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


@given(g=csr_graphs(), kind=st.sampled_from(CSR_CORRUPTIONS + ("psi_rows", "f_dtype", "w_len", "col_float")),
       checks_off=st.booleans(), data=st.data())
def _fuzz_local_bad(g, kind, checks_off, data):
    N = g[2]
    E = g[1].numel()
    psi, f, w = torch.randn(E, 2), torch.randn(N, 3), None
    kind, variants = data.draw(bad_csr(g, kind)) if kind in CSR_CORRUPTIONS else (kind, [g[:2]])
    if kind == "psi_rows":
        psi = torch.randn(E + 1, 2)
    elif kind == "f_dtype":
        f = f.double()
    elif kind == "w_len":
        w = torch.ones(N + 1)
    for row_ptr, col in variants:
        if kind == "col_float":
            col = col.float()
        fh.log_case(op="local_basis_aggregate(bad)", kind=kind, row_ptr=row_ptr, col=col, N=N, checks_off=checks_off)
        expect_rejected(kind, checks_off, ops.local_basis_aggregate, psi, f, row_ptr, col, w)


def test_local_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_local", fuzz_profile)


def test_local_bad_inputs_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_local_bad", fuzz_profile)
