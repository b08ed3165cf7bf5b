"""Property-based fuzzing of the segment family (segment_reduce, segment_softmax, spmm) with hypothesis.

Each property runs in a child process (tests/fuzz_harness.py), so a crash in a kernel fails the
test instead of killing pytest. Inputs: random CSR shapes (empty rows, zero rows, no edges),
float32/float64, contiguous and strided, magnitudes 1e-30..1e38 and NaN/inf; and corrupt
row pointers and column indices, also with the input checks switched off in another thread.
Properties: agreement with a float64 PyTorch reference (NaN where the reference has NaN), or
a clean ValueError/TypeError for invalid input.
"""

from __future__ import annotations

import threading

import pytest
import torch

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_harness as fh  # noqa: E402

from pyengine import ops  # noqa: E402

DTYPES = [torch.float32, torch.float64]


@st.composite
def csr(draw, max_rows=12, max_deg=6):
    lens = draw(st.lists(st.integers(0, max_deg), min_size=0, max_size=max_rows))
    row_ptr = torch.zeros(len(lens) + 1, dtype=torch.long)
    if lens:
        row_ptr[1:] = torch.cumsum(torch.tensor(lens), 0)
    return row_ptr


def _rows(row_ptr):
    return torch.repeat_interleave(torch.arange(row_ptr.numel() - 1), row_ptr.diff())


def _reference_reduce(src, row_ptr, reduce):
    M, E = row_ptr.numel() - 1, src.shape[0]
    x = src.double()
    out = torch.zeros((M,) + tuple(src.shape[1:]), dtype=torch.float64)
    if E == 0:
        return out
    idx = _rows(row_ptr).view(-1, *([1] * (src.dim() - 1))).expand_as(x)
    amap = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}
    out = out.scatter_reduce(0, idx, x, amap[reduce], include_self=False)
    return out


@given(row_ptr=csr(), feat=st.integers(1, 4), dtype=st.sampled_from(DTYPES), mag=fh.magnitudes(True),
       reduce=st.sampled_from(["sum", "mean", "max", "min"]), stride=st.integers(0, 2), seed=st.integers(0, 2**16))
def _fuzz_segment_reduce(row_ptr, feat, dtype, mag, reduce, stride, seed):
    E = int(row_ptr[-1])
    src = fh.maybe_noncontiguous(fh.random_tensor(seed, (E, feat), torch.float64, mag).to(dtype), stride)
    fh.log_case(op="segment_reduce", row_ptr=row_ptr, src=src, reduce=reduce, mag=mag)
    out = ops.segment_reduce(src, row_ptr, reduce)
    want = _reference_reduce(src, row_ptr, reduce)
    assert out.shape == want.shape and out.dtype == dtype
    fh.assert_matches(out, want.to(dtype).double() if reduce in ("max", "min") else want, dtype)


@given(row_ptr=csr(), heads=st.integers(1, 3), dtype=st.sampled_from(DTYPES), mag=fh.magnitudes(),
       seed=st.integers(0, 2**16))
def _fuzz_segment_softmax(row_ptr, heads, dtype, mag, seed):
    E = int(row_ptr[-1])
    scores = fh.random_tensor(seed, (E, heads), torch.float64, mag).to(dtype)
    fh.log_case(op="segment_softmax", row_ptr=row_ptr, scores=scores)
    out = ops.segment_softmax(scores, row_ptr)
    assert out.shape == scores.shape and torch.isfinite(out).all()
    if E:
        s = scores.double()
        mx = _reference_reduce(s, row_ptr, "max")[_rows(row_ptr)]
        e = torch.exp(s - mx)
        den = _reference_reduce(e, row_ptr, "sum")[_rows(row_ptr)]
        want = e / den
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert torch.allclose(out.double(), want, rtol=tol, atol=tol), (out, want)


@st.composite
def bad_csr(draw):
    """A row pointer and column indices of which exactly one thing is wrong."""
    row_ptr = draw(csr(max_rows=8))
    E, N = int(row_ptr[-1]), draw(st.integers(1, 6))
    col = torch.tensor(draw(st.lists(st.integers(0, N - 1), min_size=E, max_size=E)), dtype=torch.long)
    kind = draw(st.sampled_from(["col_high", "col_negative", "col_huge", "rp_decreasing", "rp_last", "rp_first"]))
    if kind.startswith("col") and E == 0:
        kind = "rp_last"
    if kind == "rp_decreasing" and row_ptr.numel() < 3:
        kind = "rp_last"
    if kind == "col_high":
        col[draw(st.integers(0, E - 1))] = N + draw(st.integers(0, 5))
    elif kind == "col_negative":
        col[draw(st.integers(0, E - 1))] = -draw(st.integers(1, 2**40))
    elif kind == "col_huge":
        col[draw(st.integers(0, E - 1))] = 2**62
    elif kind == "rp_decreasing":
        i = draw(st.integers(1, row_ptr.numel() - 2))
        row_ptr = row_ptr.clone()
        row_ptr[i] = row_ptr[-1] + 3
    elif kind == "rp_last":
        row_ptr = row_ptr.clone()
        row_ptr[-1] += draw(st.sampled_from([1, 7, 2**40]))  # past the edges (col and src keep E)
    else:
        row_ptr = row_ptr.clone()
        row_ptr[0] = -1
    return row_ptr, col, N, kind


@given(case=bad_csr(), checks_off_elsewhere=st.booleans(), int32=st.booleans())
def _fuzz_spmm_bad_indices(case, checks_off_elsewhere, int32):
    row_ptr, col, N, kind = case
    if int32 and (col.numel() == 0 or int(col.abs().max()) < 2**31):
        col = col.int()
    E = col.numel()
    x = torch.randn(N, 3)
    vals = torch.randn(E)
    fh.log_case(op="spmm", kind=kind, row_ptr=row_ptr, col=col, N=N, checks_off_elsewhere=checks_off_elsewhere)
    # Another thread sits in `with input_checks(False)` for the whole call: the switch is
    # thread-local, and on the CPU the index checks run whatever it says.
    entered, leave = threading.Event(), threading.Event()

    def other():
        with ops.input_checks(False):
            entered.set()
            leave.wait()

    t = threading.Thread(target=other)
    if checks_off_elsewhere:
        t.start()
        entered.wait()
    try:
        for call in (lambda: ops.spmm(row_ptr, col, vals, x), lambda: ops.segment_reduce(vals, row_ptr, "sum")):
            r = fh.expect_clean_error(call)
            if kind.startswith("col") and isinstance(r, torch.Tensor):
                continue  # segment_reduce has no col
            assert isinstance(r, (ValueError, TypeError)), f"{kind}: no error, got {r}"
        with ops.input_checks(False):  # this thread: still checked on the CPU
            r = fh.expect_clean_error(lambda: ops.spmm(row_ptr, col, vals, x))
            assert isinstance(r, (ValueError, TypeError)), f"{kind} with checks off: no error"
    finally:
        leave.set()
        if checks_off_elsewhere:
            t.join()


def test_segment_reduce_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_segment_reduce", fuzz_profile)


def test_segment_softmax_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_segment_softmax", fuzz_profile)


def test_spmm_bad_indices_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_spmm_bad_indices", fuzz_profile)
