"""Property-based fuzzing of csr_attention with hypothesis (child processes, tests/fuzz_harness.py).

Random CSR graphs, heads and head sizes, float32/float64, strided inputs, an optional bias
with -inf (masked) entries; queries/keys at magnitudes 1e-30..1e15 (scores stay within
float32), values at 1e-30..1e38 and NaN/inf: agreement with the float64 gather-softmax-scatter
reference (tests/attention_reference.py). Corrupt graphs and mismatched shapes/dtypes: a
clean ValueError/TypeError.
"""

from __future__ import annotations

import pytest
import torch

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_harness as fh  # noqa: E402
from attention_reference import attention_ref  # noqa: E402
from csr_fuzz import CSR_CORRUPTIONS, bad_csr, csr_graphs, expect_rejected  # noqa: E402

from pyengine import ops  # noqa: E402


@given(g=csr_graphs(), H=st.integers(1, 3), Dk=st.integers(1, 9), Dv=st.integers(1, 9),
       dtype=st.sampled_from([torch.float32, torch.float64]), qk_exp=st.integers(-30, 15),
       vmag=fh.magnitudes(True), use_bias=st.booleans(), stride=st.integers(0, 2), seed=st.integers(0, 2**16))
def _fuzz_attention(g, H, Dk, Dv, dtype, qk_exp, vmag, use_bias, stride, seed):
    row_ptr, col, N = g
    M, E = row_ptr.numel() - 1, col.numel()
    s = 10.0 ** (qk_exp / 2)
    q = fh.maybe_noncontiguous(fh.random_tensor(seed, (M, H, Dk), torch.float64, s).to(dtype), stride)
    k = fh.maybe_noncontiguous(fh.random_tensor(seed + 1, (N, H, Dk), torch.float64, s).to(dtype), stride)
    v = fh.maybe_noncontiguous(fh.random_tensor(seed + 2, (N, H, Dv), torch.float64, vmag).to(dtype), stride)
    bias = None
    if use_bias:
        bias = fh.random_tensor(seed + 3, (E, H), torch.float64, 1.0).to(dtype)
        if E:
            bias[::3] = -float("inf")
    fh.log_case(op="csr_attention", row_ptr=row_ptr, col=col, q=q, k=k, v=v, bias=bias, vmag=vmag)
    out = ops.csr_attention(q, k, v, row_ptr, col, bias)
    want = attention_ref(q.double(), k.double(), v.double(), row_ptr, col,
                         None if bias is None else bias.double())
    assert out.dtype == dtype
    # float32 scores are rounded before the softmax: relative 1e-6 of a score of 1e15 is 1e9,
    # so the weights only agree to float32 rounding of the scores' spread
    fh.assert_matches(out, want, dtype, rtol=1e-3 if dtype == torch.float32 else 1e-8)


@given(g=csr_graphs(), kind=st.sampled_from(CSR_CORRUPTIONS + ("k_rows", "v_dtype", "bias_shape", "q_2d")),
       checks_off=st.booleans(), data=st.data())
def _fuzz_attention_bad(g, kind, checks_off, data):
    N = g[2]
    M, E = g[0].numel() - 1, g[1].numel()
    q, k, v, bias = torch.randn(M, 2, 4), torch.randn(N, 2, 4), torch.randn(N, 2, 3), None
    kind, variants = data.draw(bad_csr(g, kind)) if kind in CSR_CORRUPTIONS else (kind, [g[:2]])
    if kind == "k_rows":
        k = torch.randn(N + 1, 2, 4)
    elif kind == "v_dtype":
        v = v.double()
    elif kind == "bias_shape":
        bias = torch.randn(E + 1, 2)
    elif kind == "q_2d":
        q = q[:, 0]
    for row_ptr, col in variants:
        fh.log_case(op="csr_attention(bad)", kind=kind, row_ptr=row_ptr, col=col, N=N, checks_off=checks_off)
        expect_rejected(kind, checks_off, ops.csr_attention, q, k, v, row_ptr, col, bias)


def test_attention_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_attention", fuzz_profile)


def test_attention_bad_inputs_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_attention_bad", fuzz_profile)
