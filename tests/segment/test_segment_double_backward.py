"""Second derivatives of the segment ops (gradgradcheck in float64).

Physics-informed losses and gradient penalties differentiate through the
backward pass, so each backward op has its own autograd formula.
"""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from pyengine import ops


def _csr(lengths):
    row_ptr = torch.zeros(len(lengths) + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
    return row_ptr


ROW_PTR = _csr([2, 0, 3, 4, 1, 0])
E = int(ROW_PTR[-1])


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_segment_reduce_double_backward(reduce):
    torch.manual_seed(1)
    # distinct values: max/min have a unique winner, so second derivatives exist
    src = (torch.randperm(E * 3).double().reshape(E, 3) / 7).requires_grad_()
    assert gradgradcheck(lambda s: ops.segment_reduce(s, ROW_PTR, reduce), (src,))


def test_segment_softmax_double_backward():
    torch.manual_seed(2)
    scores = torch.randn(E, 2, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda s: ops.segment_softmax(s, ROW_PTR), (scores,))


@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
def test_spmm_double_backward(index_dtype):
    torch.manual_seed(3)
    col = torch.randint(0, 5, (E,), dtype=index_dtype)
    values = torch.randn(E, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda v, xx: ops.spmm(ROW_PTR, col, v, xx), (values, x))


def test_sddmm_gradients():
    torch.manual_seed(4)
    col = torch.randint(0, 5, (E,))
    a = torch.randn(len(ROW_PTR) - 1, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda aa, bb: ops.sddmm(ROW_PTR, col, aa, bb), (a, b))
    assert gradgradcheck(lambda aa, bb: ops.sddmm(ROW_PTR, col, aa, bb), (a, b))


def test_double_backward_with_no_edges():
    row_ptr = torch.zeros(4, dtype=torch.long)
    src = torch.zeros(0, 2, dtype=torch.float64, requires_grad=True)
    out = ops.segment_reduce(src, row_ptr, "max")
    (g,) = torch.autograd.grad(out.sum(), src, create_graph=True)
    assert g.shape == (0, 2)
