"""index_softmax (softmax / log-softmax over an unsorted index, no sort) against a float64
per-group reference and the CSR segment_softmax on the sorted form; gradients twice,
opcheck, fullgraph compile, errors, and pyengine.pyg.softmax against PyG."""

from __future__ import annotations

import pytest
import torch

from pyengine import pyg
from pyengine.ops import index_softmax, segment_log_softmax, segment_softmax

P = torch.ops.pyengine


def reference(src, index, num_nodes, log):
    out = torch.empty_like(src, dtype=torch.float64)
    s64 = src.double()
    for n in range(num_nodes):
        sel = index == n
        if not bool(sel.any()):
            continue
        v = s64[sel]
        allneg = torch.isneginf(v).all(dim=0)
        r = torch.log_softmax(v, dim=0) if log else torch.softmax(v, dim=0)
        fill = float("-inf") if log else 0.0
        out[sel] = torch.where(allneg, torch.full_like(r, fill), r)
    return out


def make(E, N, H, dtype, seed, neg_inf_group=True):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, N, (E,), generator=g)
    src = (3 * torch.randn((E,) + H, generator=g, dtype=torch.float64)).to(dtype)
    if neg_inf_group and E:
        src[index == index[0]] = float("-inf")  # a fully masked group
        src[E // 2] = float("-inf")  # and one masked entry (elsewhere when E > 1)
    return src, index


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("E,N,H", [(0, 3, (2,)), (1, 1, ()), (777, 50, (3,)), (40000, 301, (2, 2)), (513, 2000, (1,))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_matches_reference(log, E, N, H, dtype):
    src, index = make(E, N, H, dtype, seed=E + N)
    out = index_softmax(src, index, N, log=log)
    assert out.shape == src.shape and out.dtype == dtype
    ref = reference(src, index, N, log)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    # the CSR path on the sorted form gives the same values
    perm = torch.argsort(index, stable=True)
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(index, minlength=N), 0)])
    csr = (segment_log_softmax if log else segment_softmax)(src[perm], row_ptr)
    torch.testing.assert_close(out[perm].double(), csr.double(), rtol=tol, atol=tol)


def test_int32_index_and_nan_group():
    src = torch.tensor([[1.0], [float("nan")], [2.0], [0.5]])
    index = torch.tensor([1, 0, 1, 0], dtype=torch.int32)
    out = index_softmax(src, index, 2)
    assert torch.isnan(out[[1, 3]]).all()
    torch.testing.assert_close(out[[0, 2]], torch.softmax(src[[0, 2]], 0))


@pytest.mark.parametrize("log", [False, True])
def test_gradients_twice(log):
    src, index = make(60, 7, (2,), torch.float64, seed=3, neg_inf_group=False)
    src.requires_grad_(True)
    f = lambda s: index_softmax(s, index, 9, log=log)  # noqa: E731  (two empty groups)
    assert torch.autograd.gradcheck(f, (src,))
    assert torch.autograd.gradgradcheck(f, (src,))


@pytest.mark.parametrize("log", [False, True])
def test_opcheck_and_fullgraph_compile(log):
    src, index = make(300, 20, (3,), torch.float32, seed=4)
    torch.library.opcheck(P.index_softmax, (src, index, 20, log))
    out = P.index_softmax(src, index, 20, log)
    torch.library.opcheck(P.index_softmax_backward, (torch.randn_like(src), out, index, 20, log))

    def f(s, i):
        return pyg.softmax(s, i, num_nodes=20) if not log else pyg.log_softmax(s, i, num_nodes=20)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(src, index), f(src, index))


def test_errors():
    src = torch.randn(5, 2)
    with pytest.raises(ValueError, match="index has entries >= num_nodes"):
        index_softmax(src, torch.tensor([0, 1, 2, 3, 4]), 4)
    with pytest.raises(ValueError, match="negative"):
        index_softmax(src, torch.tensor([0, 1, -2, 3, 3]), 4)
    with pytest.raises(TypeError, match="int64 or int32"):
        index_softmax(src, torch.zeros(5), 4)
    with pytest.raises(ValueError, match="one entry per edge"):
        index_softmax(src, torch.zeros(4, dtype=torch.long), 4)
    with pytest.raises(TypeError):
        index_softmax(torch.ones(5, 2, dtype=torch.long), torch.zeros(5, dtype=torch.long), 4)


def test_pyg_softmax_matches_pyg():
    tg = pytest.importorskip("torch_geometric.utils")
    g = torch.Generator().manual_seed(5)
    index = torch.randint(0, 300, (5000,), generator=g)
    src = torch.randn(5000, 4, generator=g)
    for dim_src, dim in ((src, 0), (src.t().contiguous(), 1)):
        torch.testing.assert_close(pyg.softmax(dim_src, index, dim=dim), tg.softmax(dim_src, index, dim=dim))
        torch.testing.assert_close(pyg.softmax(dim_src, index, num_nodes=301, dim=dim),
                                   tg.softmax(dim_src, index, num_nodes=301, dim=dim))
