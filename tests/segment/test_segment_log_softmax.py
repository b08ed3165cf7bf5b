"""segment_log_softmax against torch.log_softmax per row (float64), -inf rows, half
precision, gradcheck / gradgradcheck, opcheck and torch.compile(fullgraph=True)."""

from __future__ import annotations

import pytest
import torch

from pyengine.ops import segment_log_softmax

P = torch.ops.pyengine


def make(lens, h, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.tensor(lens), 0)])
    scores = torch.randn(int(sum(lens)), h, generator=g, dtype=torch.float64) * 5
    return scores.to(dtype), row_ptr


def reference(scores, row_ptr):
    out = torch.empty_like(scores, dtype=torch.float64)
    for r in range(len(row_ptr) - 1):
        a, b = int(row_ptr[r]), int(row_ptr[r + 1])
        if b > a:
            out[a:b] = torch.log_softmax(scores[a:b].double(), dim=0)
    return out


LENS = [0, 3, 1, 0, 1500, 7, 0, 40]  # empty rows, single entries, a row longer than the engines' chunks


@pytest.mark.parametrize("h", [1, 3])
def test_matches_torch(h):
    scores, row_ptr = make(LENS, h)
    torch.testing.assert_close(segment_log_softmax(scores, row_ptr), reference(scores, row_ptr))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reduced_precision(dtype):
    scores, row_ptr = make(LENS, 2, dtype)
    out = segment_log_softmax(scores, row_ptr)
    assert out.dtype == dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out.double(), reference(scores, row_ptr), rtol=tol, atol=tol)


def test_masked_rows():
    scores = torch.tensor([[-float("inf")], [-float("inf")], [0.0], [-float("inf")]], dtype=torch.float64)
    row_ptr = torch.tensor([0, 2, 4])
    out = segment_log_softmax(scores, row_ptr)
    assert out[:2].isneginf().all() and out[2].item() == 0.0 and out[3].isneginf().all()


def test_gradcheck_and_double_backward():
    scores, row_ptr = make([3, 0, 5, 1, 4], 2, seed=3)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: segment_log_softmax(s, row_ptr), (scores,))
    assert torch.autograd.gradgradcheck(lambda s: segment_log_softmax(s, row_ptr), (scores,))


def test_opcheck_and_compile():
    scores, row_ptr = make([3, 0, 5, 1, 4], 2, torch.float32, seed=1)
    torch.library.opcheck(P.segment_log_softmax, (scores, row_ptr))
    out = segment_log_softmax(scores, row_ptr)
    torch.library.opcheck(P.segment_log_softmax_backward, (torch.randn_like(scores), out, row_ptr))
    f = lambda s: segment_log_softmax(s, row_ptr).exp().sum()  # noqa: E731
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(scores), f(scores))


def test_errors():
    with pytest.raises(ValueError, match="row_ptr"):
        segment_log_softmax(torch.randn(4, 1), torch.tensor([0, 2, 3]))
    with pytest.raises(TypeError):
        segment_log_softmax(torch.ones(4, 1, dtype=torch.long), torch.tensor([0, 4]))


# --------------------------------------------------------------------------- torch_scatter-style segment_reduce


def _ref_extremum(src, row_ptr, reduce):
    """(out, arg) per row and channel; empty rows: (0, E), ties: the first edge."""
    E = src.shape[0]
    M = len(row_ptr) - 1
    out = torch.zeros(M, src.shape[1], dtype=src.dtype)
    arg = torch.full((M, src.shape[1]), E, dtype=torch.long)
    for r in range(M):
        a, b = int(row_ptr[r]), int(row_ptr[r + 1])
        if b > a:
            vals = src[a:b] if reduce == "max" else -src[a:b]
            i = torch.argmax(vals, dim=0)
            arg[r] = a + i
            out[r] = src[a + i, torch.arange(src.shape[1])]
    return out, arg


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_segment_reduce_return_arg(reduce):
    from pyengine.ops import segment_reduce

    scores, row_ptr = make([2, 0, 5, 1, 0, 4], 3, seed=6)
    out, arg = segment_reduce(scores, row_ptr, reduce, return_arg=True)
    ref_out, ref_arg = _ref_extremum(scores, row_ptr, reduce)
    torch.testing.assert_close(out, ref_out)
    assert torch.equal(arg, ref_arg)
    with pytest.raises(ValueError, match="return_arg"):
        segment_reduce(scores, row_ptr, "sum", return_arg=True)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_segment_reduce_batched_indptr(reduce):
    from pyengine.ops import segment_reduce

    g = torch.Generator().manual_seed(8)
    B, E = 3, 12
    src = torch.randn(B, E, 2, generator=g, dtype=torch.float64)
    indptr = torch.tensor([[0, 3, 3, 12], [0, 0, 5, 12], [0, 12, 12, 12]])
    out = segment_reduce(src, indptr, reduce)
    assert out.shape == (B, 3, 2)
    for b in range(B):
        torch.testing.assert_close(out[b], segment_reduce(src[b], indptr[b], reduce))
    if reduce in ("max", "min"):
        out2, arg = segment_reduce(src, indptr, reduce, return_arg=True)
        for b in range(B):
            assert torch.equal(arg[b], segment_reduce(src[b], indptr[b], reduce, return_arg=True)[1])
        assert int(arg[2, 1, 0]) == E  # empty row
    with pytest.raises(ValueError, match="start at 0"):
        segment_reduce(src, indptr - 1, reduce)


def test_segment_reduce_empty_row_ptr():
    from pyengine.ops import segment_reduce

    out = segment_reduce(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 4)
    out = segment_reduce(torch.zeros(2, 0, 4), torch.zeros(2, 1, dtype=torch.long), "max")
    assert out.shape == (2, 0, 4)
    with pytest.raises(ValueError, match="row_ptr"):  # edges but no rows: an error, not dropped edges
        segment_reduce(torch.zeros(3, 4), torch.zeros(0, dtype=torch.long))
