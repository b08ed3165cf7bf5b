"""torch.compile(fullgraph=True) against eager for the public ops of issue 18: radius_search,
knn and the KDTree methods, gno_integral and csr_attention, the segment ops, and the pyg graph
builders with batch_size given."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from pyengine import pyg
from pyengine import ops


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def same(fn, *args):
    eager = fn(*args)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")(*args)
    for a, b in zip(torch.utils._pytree.tree_leaves(compiled), torch.utils._pytree.tree_leaves(eager)):
        torch.testing.assert_close(a, b)
    return eager


def cloud(n, d=3, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


def test_radius_search_and_knn():
    pts, qs = cloud(300), cloud(70, seed=1)
    same(lambda p, q: ops.radius_search(p, q, 0.2, max_neighbors=12), pts, qs)
    same(lambda p, q: ops.radius_search(p, q, torch.full((70,), 0.15)), pts, qs)
    same(lambda p, q: ops.knn(p, q, 5), pts, qs)


def test_kdtree_methods_batched():
    pts, qs = cloud(300, d=2), cloud(70, d=2, seed=1)
    bp = torch.arange(3).repeat_interleave(torch.tensor([100, 150, 50]))
    bq = torch.arange(3).repeat_interleave(torch.tensor([30, 0, 40]))

    def f(p, q):
        tree = ops.KDTree(p, bp, num_batches=3)
        rows = tree.radius(q, 0.2, batch=bq)
        multi = tree.radius_multi(q, [0.1, 0.25], max_neighbors=8, batch=bq)
        return rows, multi, tree.knn(q, 4, batch=bq)

    same(f, pts, qs)


def test_gno_integral_and_attention():
    g = torch.Generator().manual_seed(2)
    y, x = cloud(80), cloud(30, seed=3)
    row_ptr, col = ops.radius_search(y, x, 0.35)
    f_y = torch.randn(80, 4, generator=g)
    w = [torch.randn(16, 6, generator=g), torch.randn(4, 16, generator=g)]
    b = [torch.randn(16, generator=g), torch.randn(4, generator=g)]
    same(lambda fy: ops.gno_integral(y, x, row_ptr, col, fy, None, w, b), f_y)
    q, k, v = (torch.randn(n, 2, 8, generator=g) for n in (30, 80, 80))
    same(lambda q, k, v: ops.csr_attention(q, k, v, row_ptr, col), q, k, v)


def test_segment_ops():
    g = torch.Generator().manual_seed(4)
    row_ptr = torch.tensor([0, 3, 3, 10, 11])
    src = torch.randn(11, 3, generator=g)
    same(lambda s: [ops.segment_reduce(s, row_ptr, r) for r in ("sum", "mean", "max", "min")], src)
    same(lambda s: ops.segment_reduce(s, row_ptr, "max", return_arg=True), src)
    same(lambda s: ops.segment_reduce(s.long(), row_ptr, "sum"), 100 * src)
    same(lambda s: ops.segment_reduce(s.reshape(1, 11, 3), row_ptr.reshape(1, 5), "min"), src)
    same(lambda s: (ops.segment_softmax(s, row_ptr), ops.segment_log_softmax(s, row_ptr)), src)
    index = torch.randint(0, 5, (11,), generator=g)
    same(lambda s: ops.index_softmax(s, index, 5, log=True), src)
    col = torch.randint(0, 7, (11,), generator=g)
    xs = torch.randn(7, 3, generator=g)
    same(lambda x: ops.spmm(row_ptr, col, None, x), xs)
    same(lambda a, b: ops.sddmm(row_ptr, col, a, b), torch.randn(4, 3, generator=g), xs)


@pytest.mark.parametrize("d", [3, 16])
def test_pyg_graph_builders_with_batch_size(d):
    x = cloud(200, d=d)
    batch = torch.arange(4).repeat_interleave(torch.tensor([90, 5, 0, 105]))  # one cloud smaller than k
    same(lambda x: pyg.knn_graph(x, 8, batch, batch_size=4), x)
    same(lambda x: pyg.knn(x, x[:50], 6, batch, batch[:50], batch_size=4), x)
    r = 0.3 if d == 3 else 1.2
    same(lambda x: pyg.radius_graph(x, r, batch, max_num_neighbors=10, batch_size=4), x)
    same(lambda x: pyg.radius(x, x[:50], r, batch, batch[:50], batch_size=4), x)
