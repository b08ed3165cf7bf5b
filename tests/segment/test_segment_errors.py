"""Argument validation of the segment ops: exception types and messages that name the argument.

Shape / dtype / device errors surface as TypeError or ValueError (TORCH_CHECK_TYPE /
TORCH_CHECK_VALUE), never as a crash or a generic RuntimeError. Data checks
(row_ptr monotone and consistent, indices in range) can be switched off with
``pyengine.ops.input_checks(False)``.
"""

from __future__ import annotations

import re

import pytest
import torch

import pyengine
from pyengine import ops

P = torch.ops.pyengine


def _t(*values, dtype=torch.long):
    return torch.tensor(values, dtype=dtype)


_GEN = torch.Generator().manual_seed(0)  # module-level data, created before the seeding fixture runs
ROW_PTR = _t(0, 2, 2, 3)  # 3 rows (one empty), 3 edges
COL = _t(0, 1, 1)  # into N = 2 columns
SRC = torch.randn(3, 2, generator=_GEN)
X = torch.randn(2, 4, generator=_GEN)
VALUES = torch.randn(3, generator=_GEN)
A = torch.randn(3, 4, generator=_GEN)  # one row per CSR row, for sddmm
ARG = P.segment_reduce(SRC, ROW_PTR, "max")[1]

# (id, call, exception type, regex that must occur in the message)
CASES = [
    # --- segment_reduce / segment_softmax: src and row_ptr
    ("src int64 mean", lambda: ops.segment_reduce(SRC.long(), ROW_PTR, "mean"), TypeError, r"^reduce='mean' needs"),
    ("src int16 raw", lambda: P.segment_reduce(SRC.to(torch.int16), ROW_PTR, "sum"), TypeError, r"^src must be float32"),
    ("src bool", lambda: ops.segment_reduce(SRC > 0, ROW_PTR, "max"), TypeError, r"^src must be float"),
    ("src complex", lambda: ops.segment_reduce(SRC.to(torch.complex64), ROW_PTR), TypeError, r"^src must be float"),
    ("src not a tensor", lambda: ops.segment_reduce([1.0, 2.0, 3.0], ROW_PTR), TypeError, r"^src must be a torch\.Tensor"),
    ("src scalar", lambda: ops.segment_reduce(torch.tensor(1.0), ROW_PTR), ValueError, r"^src must have a leading edge"),
    ("src 3-D raw", lambda: P.segment_reduce(SRC[:, :, None], ROW_PTR, "sum"), ValueError, r"^src must be 2-D"),
    ("src 1-D raw", lambda: P.segment_reduce(SRC[:, 0], ROW_PTR, "mean"), ValueError, r"^src must be 2-D"),
    ("scores int", lambda: ops.segment_softmax(SRC.int(), ROW_PTR), TypeError, r"^scores must be float32"),
    ("scores 3-D raw", lambda: P.segment_softmax(SRC[:, :, None], ROW_PTR), ValueError, r"^scores must be 2-D"),
    ("row_ptr int32", lambda: ops.segment_reduce(SRC, ROW_PTR.int()), TypeError, r"^row_ptr must be int64"),
    ("row_ptr int32 softmax", lambda: ops.segment_softmax(SRC, ROW_PTR.int()), TypeError, r"^row_ptr must be int64"),
    ("row_ptr float", lambda: ops.segment_reduce(SRC, ROW_PTR.float()), TypeError, r"^row_ptr must be int64"),
    # a 2-D row_ptr is a batch of CSR structures (torch_scatter's segment_csr form); src must match it
    ("row_ptr 2-D", lambda: ops.segment_reduce(SRC, ROW_PTR[None]), ValueError, r"^row_ptr of shape \(B, M \+ 1\)"),
    ("row_ptr empty", lambda: ops.segment_reduce(SRC, ROW_PTR[:0]), ValueError, r"^row_ptr must have length num_rows \+ 1"),
    ("row_ptr non-monotone", lambda: ops.segment_reduce(SRC, _t(0, 2, 1, 3)), ValueError, r"^row_ptr must be non-decreasing"),
    ("row_ptr non-monotone softmax", lambda: ops.segment_softmax(SRC, _t(0, 3, 1, 3)), ValueError, r"non-decreasing"),
    ("row_ptr[-1] too small", lambda: ops.segment_reduce(SRC, _t(0, 1, 2)), ValueError, r"^row_ptr\[-1\] must equal .*src \(3\)"),
    ("row_ptr[-1] too large", lambda: ops.segment_reduce(SRC, _t(0, 2, 4), "max"), ValueError, r"^row_ptr\[-1\] must equal"),
    ("row_ptr[0] != 0", lambda: ops.segment_reduce(SRC, _t(1, 2, 3)), ValueError, r"^row_ptr\[0\] must be 0"),
    ("row_ptr[0] negative", lambda: ops.segment_softmax(SRC, _t(-1, 2, 3)), ValueError, r"^row_ptr\[0\] must be 0"),
    ("reduce unknown", lambda: ops.segment_reduce(SRC, ROW_PTR, "prod"), ValueError, r"^reduce must be one of .*'prod'"),
    ("reduce case", lambda: ops.segment_reduce(SRC, ROW_PTR, "Sum"), ValueError, r"^reduce must be one of"),
    ("reduce unknown raw", lambda: P.segment_reduce(SRC, ROW_PTR, "avg"), ValueError, r"^reduce must be one of .*'avg'"),
    # --- backward ops (raw)
    ("reduce_backward reduce", lambda: P.segment_reduce_backward(torch.randn(3, 2), ROW_PTR, ARG, "prod", 3), ValueError, r"^reduce must be one of"),
    ("reduce_backward arg int32", lambda: P.segment_reduce_backward(torch.randn(3, 2), ROW_PTR, ARG.int(), "max", 3), TypeError, r"^arg must be int64"),
    ("reduce_backward arg shape", lambda: P.segment_reduce_backward(torch.randn(3, 2), ROW_PTR, ARG[:, :1], "min", 3), ValueError, r"^arg must have the shape of grad_out"),
    ("reduce_backward grad rows", lambda: P.segment_reduce_backward(torch.randn(4, 2), ROW_PTR, ARG, "sum", 3), ValueError, r"^grad_out must have one row per CSR row"),
    ("reduce_backward grad int", lambda: P.segment_reduce_backward(torch.ones(3, 2, dtype=torch.long), ROW_PTR, ARG, "sum", 3), TypeError, r"^grad_out must be float"),
    ("reduce_backward num_edges", lambda: P.segment_reduce_backward(torch.randn(3, 2), ROW_PTR, ARG, "max", 4), ValueError, r"^row_ptr\[-1\] must equal num_edges \(4\)"),
    ("softmax_backward shape", lambda: P.segment_softmax_backward(torch.randn(3, 3), torch.rand(3, 2), ROW_PTR), ValueError, r"^grad_out must have the shape of out"),
    ("softmax_backward dtype", lambda: P.segment_softmax_backward(torch.randn(3, 2).double(), torch.rand(3, 2), ROW_PTR), TypeError, r"^grad_out has dtype Double but out has dtype Float"),
    ("softmax_backward grad int", lambda: P.segment_softmax_backward(torch.ones(3, 2, dtype=torch.int32), torch.rand(3, 2), ROW_PTR), TypeError, r"^grad_out must be float"),
    # --- spmm
    ("spmm col out of range", lambda: ops.spmm(ROW_PTR, _t(0, 2, 1), VALUES, X), ValueError, r"^col has entries >= the number of rows of x \(2\)"),
    ("spmm col negative", lambda: ops.spmm(ROW_PTR, _t(0, -1, 1), VALUES, X), ValueError, r"^col has negative entries"),
    ("spmm col negative int32", lambda: ops.spmm(ROW_PTR, _t(0, 1, -5, dtype=torch.int32), None, X), ValueError, r"^col has negative entries"),
    ("spmm col float", lambda: ops.spmm(ROW_PTR, COL.float(), VALUES, X), TypeError, r"^col must be int64 or int32"),
    ("spmm col int16", lambda: ops.spmm(ROW_PTR, COL.short(), VALUES, X), TypeError, r"^col must be int64 or int32"),
    ("spmm col 2-D", lambda: ops.spmm(ROW_PTR, COL[None], VALUES, X), ValueError, r"^col must be 1-D"),
    ("spmm col length", lambda: ops.spmm(ROW_PTR, COL[:2], VALUES[:2], X), ValueError, r"^row_ptr\[-1\] must equal the length of col \(2\)"),
    ("spmm row_ptr int32", lambda: ops.spmm(ROW_PTR.int(), COL, VALUES, X), TypeError, r"^row_ptr must be int64"),
    ("spmm row_ptr non-monotone", lambda: ops.spmm(_t(0, 3, 2, 3), COL, VALUES, X), ValueError, r"^row_ptr must be non-decreasing"),
    ("spmm values length", lambda: ops.spmm(ROW_PTR, COL, VALUES[:2], X), ValueError, r"^values must have one entry per edge \(3\), got 2"),
    ("spmm values 2-D", lambda: ops.spmm(ROW_PTR, COL, VALUES[:, None], X), ValueError, r"^values must be 1-D"),
    ("spmm values dtype", lambda: ops.spmm(ROW_PTR, COL, VALUES.double(), X), TypeError, r"^values has dtype Double but x has dtype Float"),
    ("spmm values half vs x float", lambda: ops.spmm(ROW_PTR, COL, VALUES.half(), X), TypeError, r"^values has dtype Half but x"),
    ("spmm values int", lambda: ops.spmm(ROW_PTR, COL, VALUES.long(), X), TypeError, r"^values has dtype Long but x"),
    ("spmm x int", lambda: ops.spmm(ROW_PTR, COL, None, X.long()), TypeError, r"^x must be float32"),
    ("spmm x not a tensor", lambda: ops.spmm(ROW_PTR, COL, None, [[1.0]]), TypeError, r"^x must be a torch\.Tensor"),
    ("spmm x 1-D raw", lambda: P.spmm(ROW_PTR, COL, None, X[:, 0]), ValueError, r"^x must be 2-D"),
    # --- sddmm
    ("sddmm a/b dtype", lambda: ops.sddmm(ROW_PTR, COL, A.double(), X), TypeError, r"^a has dtype Double but b has dtype Float"),
    ("sddmm a int", lambda: ops.sddmm(ROW_PTR, COL, A.long(), X), TypeError, r"^a must be float"),
    ("sddmm a rows", lambda: ops.sddmm(ROW_PTR, COL, A[:2], X), ValueError, r"^a must have one row per CSR row \(3\), got 2"),
    ("sddmm channels", lambda: ops.sddmm(ROW_PTR, COL, A[:, :3], X), ValueError, r"^a and b must have the same number of channels, got 3 and 4"),
    ("sddmm col negative", lambda: ops.sddmm(ROW_PTR, _t(0, -1, 1), A, X), ValueError, r"^col has negative entries"),
    ("sddmm col int16", lambda: ops.sddmm(ROW_PTR, COL.short(), A, X), TypeError, r"^col must be int64 or int32"),
    # the user-facing names of sddmm's dense operands are a and b
    ("sddmm b int", lambda: ops.sddmm(ROW_PTR, COL, A, X.long()), TypeError, r"^b must be float"),
    ("sddmm col out of range", lambda: ops.sddmm(ROW_PTR, _t(0, 2, 1), A, X), ValueError, r"^col has entries >= the number of rows of b \(2\)"),
    # --- csr_transpose
    ("transpose col out of range", lambda: ops.csr_transpose(ROW_PTR, COL, 1), ValueError, r"^col has entries >= num_cols \(1\)"),
    ("transpose col negative", lambda: ops.csr_transpose(ROW_PTR, _t(0, -1, 1), 2), ValueError, r"^col has negative entries"),
    ("transpose num_cols negative", lambda: ops.csr_transpose(ROW_PTR, COL, -1), ValueError, r"^num_cols must be >= 0"),
    ("transpose col float", lambda: ops.csr_transpose(ROW_PTR, COL.float(), 2), TypeError, r"^col must be int64 or int32"),
    ("transpose row_ptr int32", lambda: ops.csr_transpose(ROW_PTR.int(), COL, 2), TypeError, r"^row_ptr must be int64"),
    ("transpose row_ptr[-1]", lambda: ops.csr_transpose(_t(0, 2, 4), COL, 2), ValueError, r"^row_ptr\[-1\] must equal the length of col \(3\)"),
    ("transpose row_ptr non-monotone", lambda: ops.csr_transpose(_t(0, 3, 2, 3), COL, 2), ValueError, r"^row_ptr must be non-decreasing"),
    # --- index_to_row_ptr
    ("index unsorted", lambda: ops.index_to_row_ptr(_t(0, 2, 1), 3), ValueError, r"^index must be sorted"),
    ("index too large", lambda: ops.index_to_row_ptr(_t(0, 1, 3), 3), ValueError, r"^index has entries outside \[0, 3\)"),
    ("index negative", lambda: ops.index_to_row_ptr(_t(-1, 0, 1), 3), ValueError, r"^index has entries outside"),
    ("index float", lambda: ops.index_to_row_ptr(torch.tensor([0.0, 1.0]), 3), TypeError, r"^index must be int64 or int32"),
    ("index 2-D", lambda: ops.index_to_row_ptr(_t(0, 1)[None], 3), ValueError, r"^index must be 1-D"),
]  # fmt: skip


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_raises_with_named_argument(call, exc, pattern):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc, f"expected exactly {exc.__name__}, got {type(info.value).__name__}"
    first_line = str(info.value).splitlines()[0]
    assert re.search(pattern, first_line), f"message {first_line!r} does not match {pattern!r}"


def test_errors_are_raised_before_autograd_records_anything():
    src = torch.randn(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.segment_reduce(src, _t(0, 3, 1, 3), "sum")
    with pytest.raises(TypeError, match="^values has dtype"):
        ops.spmm(ROW_PTR, COL, torch.randn(3, dtype=torch.float64, requires_grad=True), X.clone().requires_grad_())
    assert src.grad is None


# --------------------------------------------------------------------------- switching the data checks off


def _valid_calls():
    return {
        "segment_reduce": lambda: ops.segment_reduce(SRC, ROW_PTR, "max"),
        "segment_softmax": lambda: ops.segment_softmax(SRC, ROW_PTR),
        "spmm": lambda: ops.spmm(ROW_PTR, COL, VALUES, X),
        "sddmm": lambda: ops.sddmm(ROW_PTR, COL, A, X),
        "csr_transpose": lambda: ops.csr_transpose(ROW_PTR, COL, 2),
    }


def _same(a, b):
    if isinstance(a, tuple):
        return all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def test_input_checks_context_manager_keeps_valid_results_and_restores():
    assert pyengine._C.input_checks_enabled()
    expected = {name: call() for name, call in _valid_calls().items()}
    with ops.input_checks(False):
        assert not pyengine._C.input_checks_enabled()
        assert pyengine.build_info()["input_checks"] is False
        for name, call in _valid_calls().items():
            assert _same(call(), expected[name]), name
        # gradients still flow with the checks off
        src = SRC.clone().requires_grad_()
        ops.segment_reduce(src, ROW_PTR, "sum").sum().backward()
        assert torch.equal(src.grad, torch.ones(3, 2))
    assert pyengine._C.input_checks_enabled()


def test_input_checks_restored_after_exception_and_nesting():
    with pytest.raises(RuntimeError, match="boom"):
        with ops.input_checks(False):
            raise RuntimeError("boom")
    assert pyengine._C.input_checks_enabled()
    with ops.input_checks(False):
        with ops.input_checks(True):
            assert pyengine._C.input_checks_enabled()
            with pytest.raises(ValueError, match="non-decreasing"):
                ops.segment_reduce(SRC, _t(0, 2, 1, 3))
        assert not pyengine._C.input_checks_enabled()
    assert pyengine._C.input_checks_enabled()


def test_set_input_checks_returns_previous_setting():
    assert ops.set_input_checks(False) is True
    try:
        assert ops.set_input_checks(False) is False
        assert not pyengine._C.input_checks_enabled()
    finally:
        assert ops.set_input_checks(True) is False
    assert pyengine._C.input_checks_enabled()


def test_disabled_checks_still_validate_cpu_data():
    with ops.input_checks(False):
        # On the CPU the data checks run whatever the switch says: they cost no device sync
        # there, and they are what keeps a bad index from becoming an out-of-bounds read
        # (issue 14). The switch only skips them for CUDA tensors.
        with pytest.raises(ValueError, match="row_ptr"):
            ops.segment_reduce(SRC, _t(0, 2), "sum")
        with pytest.raises(ValueError, match="col"):
            ops.spmm(ROW_PTR, COL + 100, VALUES, X)
        # structural checks (dtype, rank, lengths) always run
        with pytest.raises(TypeError, match="^row_ptr must be int64"):
            ops.segment_reduce(SRC, ROW_PTR.int())
        with pytest.raises(TypeError, match="^src must be float"):
            ops.segment_reduce(SRC.to(torch.int16), ROW_PTR)
        with pytest.raises(ValueError, match="^values must have one entry per edge"):
            ops.spmm(ROW_PTR, COL, VALUES[:2], X)
        with pytest.raises(TypeError, match="^values has dtype"):
            ops.spmm(ROW_PTR, COL, VALUES.double(), X)
        with pytest.raises(ValueError, match="^reduce must be one of"):
            ops.segment_reduce(SRC, ROW_PTR, "prod")
        with pytest.raises(ValueError, match="^index must be sorted"):  # a Python-side check, always on
            ops.index_to_row_ptr(_t(1, 0), 2)
    assert pyengine._C.input_checks_enabled()
