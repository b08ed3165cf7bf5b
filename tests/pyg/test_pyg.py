"""pyengine.pyg against float64 brute-force references with torch_cluster's semantics
(pyg_reference.py) and against torch_geometric where it has the function (softmax)."""

from __future__ import annotations

import math

import pytest
import torch

from pyengine import pyg
from pyg_reference import edges_by_row, pair_dist, ref_fps, ref_knn, ref_radius


def batched_cloud(sizes, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    x = torch.rand(n, d, generator=g, dtype=torch.float64).to(dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, batch


def assert_rows(got, ref_pairs, x, y, exact, cosine=False):
    """got: per-query neighbour lists; ref_pairs: per-query [(dist, j)] (nearest first)."""
    D = pair_dist(x, y, cosine)
    assert len(got) == len(ref_pairs)
    for i, (g, r) in enumerate(zip(got, ref_pairs)):
        assert len(g) == len(r), f"query {i}: {len(g)} neighbours, expected {len(r)}"
        if exact:
            assert sorted(g) == sorted(j for _, j in r), f"query {i}"
        else:  # float32 near-ties may swap: the distances must agree
            gd = sorted(float(D[i, j]) for j in g)
            rd = [d for d, _ in r]
            assert gd == pytest.approx(rd, rel=1e-5, abs=1e-6), f"query {i}"


SIZES = [7, 0, 1, 33, 5, 64]  # an empty cloud, a single point, clouds smaller than k


@pytest.mark.parametrize("d", [1, 2, 3, 5, 16])
def test_knn_matches_reference(d):
    x, bx = batched_cloud(SIZES, d)
    y, by = batched_cloud([4, 3, 2, 9, 0, 11], d, seed=1)
    k = 6
    ei = pyg.knn(x, y, k, bx, by)
    assert ei.dtype == torch.long and ei.shape[0] == 2
    assert bool((ei[0][1:] >= ei[0][:-1]).all()), "grouped by query"
    assert_rows(edges_by_row(ei, y.shape[0]), ref_knn(x, y, k, bx, by), x, y, exact=True)


@pytest.mark.parametrize("d", [3, 12])
def test_knn_float32_and_cosine(d):
    x, bx = batched_cloud([40, 3, 57], d, dtype=torch.float32)
    ei = pyg.knn(x, x, 5, bx, bx)
    assert_rows(edges_by_row(ei, x.shape[0]), ref_knn(x, x, 5, bx, bx), x, x, exact=False)
    xc = x - 0.5
    ei = pyg.knn(xc, xc, 5, bx, bx, cosine=True)
    assert_rows(edges_by_row(ei, x.shape[0]), ref_knn(xc, xc, 5, bx, bx, cosine=True), xc, xc, exact=False,
                cosine=True)


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
@pytest.mark.parametrize("d", [2, 3, 8])
def test_knn_graph(loop, flow, d):
    x, b = batched_cloud(SIZES, d)
    k = 5
    ei = pyg.knn_graph(x, k, b, loop=loop, flow=flow)
    center_row = 1 if flow == "source_to_target" else 0
    got = edges_by_row(ei, x.shape[0], row=center_row)
    ref = ref_knn(x, x, k, b, b, exclude_self=not loop)
    assert_rows(got, ref, x, x, exact=True)
    if not loop:
        assert not bool((ei[0] == ei[1]).any())
    sizes = torch.bincount(b, minlength=len(SIZES))[b]
    expect = torch.clamp(sizes - (0 if loop else 1), max=k)
    assert torch.equal(torch.tensor([len(r) for r in got]), expect)


def test_knn_graph_duplicates_exclude_self_before_truncation():
    base = torch.rand(5, 3, dtype=torch.float64)
    x = base.repeat(6, 1)[torch.randperm(30)]  # every point has 5 exact duplicates
    for k in (2, 5, 8):
        ei = pyg.knn_graph(x, k)
        got = edges_by_row(ei, 30, row=1)
        assert all(len(r) == k for r in got)
        assert not bool((ei[0] == ei[1]).any())
        assert_rows(got, ref_knn(x, x, k, exclude_self=True), x, x, exact=False)


@pytest.mark.parametrize("d", [1, 2, 3, 6])
@pytest.mark.parametrize("max_num", [None, 4])
def test_radius_matches_reference(d, max_num):
    x, bx = batched_cloud(SIZES, d)
    y, by = batched_cloud([4, 3, 2, 9, 0, 11], d, seed=2)
    r = 0.35 * math.sqrt(d)
    ei = pyg.radius(x, y, r, bx, by, max_num_neighbors=max_num)
    assert edges_by_row(ei, y.shape[0]) == ref_radius(x, y, r, bx, by, max_num)


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_radius_graph(loop, flow):
    x, b = batched_cloud(SIZES, 3)
    ei = pyg.radius_graph(x, 0.4, b, loop=loop, max_num_neighbors=6, flow=flow)
    got = edges_by_row(ei, x.shape[0], row=1 if flow == "source_to_target" else 0)
    assert [sorted(r) for r in got] == ref_radius(x, x, 0.4, b, b, 6, exclude_self=not loop)


def test_radius_graph_duplicates_exclude_self_before_truncation():
    base = torch.rand(4, 2, dtype=torch.float64)
    x = base.repeat(8, 1)  # 7 duplicates of every point
    ei = pyg.radius_graph(x, 1e-9, max_num_neighbors=3)
    got = edges_by_row(ei, 32, row=1)
    assert all(len(r) == 3 for r in got), [len(r) for r in got]
    assert not bool((ei[0] == ei[1]).any())
    assert [sorted(r) for r in got] == ref_radius(x, x, 1e-9, max_num=3, exclude_self=True)


def test_radius_inf_all_pairs_and_guard():
    x, b = batched_cloud([5, 0, 3, 6], 3)
    ei = pyg.radius_graph(x, math.inf, b, max_num_neighbors=None)
    sizes = torch.tensor([5, 0, 3, 6])
    assert ei.shape[1] == int((sizes * (sizes - 1)).sum())
    assert bool((b[ei[0]] == b[ei[1]]).all())
    y = torch.rand(9, 7, dtype=torch.float64)
    ei = pyg.radius(y, y, math.inf, max_num_neighbors=4)
    assert_rows(edges_by_row(ei, 9), ref_knn(y, y, 4), y, y, exact=True)
    with pytest.raises(ValueError, match="max_pairs"):
        pyg.radius_graph(x, math.inf, b, max_num_neighbors=None, max_pairs=10)


def test_one_sided_batch_and_batch_size():
    x, bx = batched_cloud([6, 4, 8], 3)
    y = torch.rand(5, 3, dtype=torch.float64)
    ei = pyg.knn(x, y, 3, batch_x=bx)  # y: one cloud, id 0
    assert_rows(edges_by_row(ei, 5), ref_knn(x, y, 3, bx, torch.zeros(5, dtype=torch.long)), x, y, exact=True)
    ei2 = pyg.knn(y, x, 2, batch_y=bx)  # points in cloud 0 only: queries of clouds 1, 2 get nothing
    assert set(ei2[0].tolist()) == set(range(6))
    zero = torch.zeros(x.shape[0], dtype=torch.long)
    assert torch.equal(pyg.knn_graph(x, 3, zero), pyg.knn_graph(x, 3))
    assert torch.equal(pyg.knn_graph(x, 3, bx, batch_size=5), pyg.knn_graph(x, 3, bx))
    with pytest.raises(ValueError, match="batch_size"):
        pyg.knn_graph(x, 3, bx, batch_size=2)


def test_empty_inputs():
    e = torch.empty(0, 3)
    x = torch.rand(4, 3)
    for out in (pyg.knn(e, x, 2), pyg.knn(x, e, 2), pyg.radius(e, x, 0.5), pyg.radius_graph(e, 0.5),
                pyg.knn_graph(e, 3), pyg.knn_graph(x[:1], 3)):
        assert out.shape == (2, 0) and out.dtype == torch.long
    assert pyg.fps(e).numel() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_search_in_float32_exactly(dtype):
    x, b = batched_cloud([30, 25], 3, dtype=dtype)
    assert torch.equal(pyg.knn_graph(x, 4, b), pyg.knn_graph(x.float(), 4, b))
    assert torch.equal(pyg.radius_graph(x, 0.3, b), pyg.radius_graph(x.float(), 0.3, b))
    xf, bf = batched_cloud([30, 25], 20, dtype=dtype)
    assert torch.equal(pyg.knn_graph(xf, 4, bf), pyg.knn_graph(xf.float(), 4, bf))
    assert torch.equal(pyg.fps(x, b, 0.5, random_start=False), pyg.fps(x.float(), b, 0.5, random_start=False))


@pytest.mark.parametrize("d", [2, 3, 7])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 1.0])
def test_fps_matches_reference(d, ratio):
    x, b = batched_cloud([17, 0, 1, 40, 9], d)
    ptr = torch.tensor([0, 17, 17, 18, 58, 67])
    sizes = ptr[1:] - ptr[:-1]
    counts = torch.ceil(sizes.float() * ratio).long()
    out = pyg.fps(x, b, ratio, random_start=False)
    assert torch.equal(out, ref_fps(x, ptr, counts, torch.zeros(5, dtype=torch.long)))
    assert torch.equal(pyg.fps(x, ptr=ptr, ratio=ratio, random_start=False), out)
    rnd = pyg.fps(x, b, ratio, random_start=True)
    firsts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), counts[:-1]]), 0)
    start = torch.where(counts > 0, rnd[firsts.clamp(max=rnd.numel() - 1)] - ptr[:-1], torch.zeros_like(counts))
    assert bool((start >= 0).all()) and bool((start < sizes.clamp(min=1)).all())
    assert torch.equal(rnd, ref_fps(x, ptr, counts, start))


def test_fps_large_cloud_uses_team_path():
    x = torch.rand(20000, 3, dtype=torch.float64)
    out = pyg.fps(x, ratio=0.002, random_start=False)
    assert torch.equal(out, ref_fps(x, [0, 20000], [40], [0]))


def test_errors():
    x = torch.rand(10, 3)
    with pytest.raises(ValueError, match="flow"):
        pyg.knn_graph(x, 3, flow="sideways")
    with pytest.raises(ValueError, match="sorted"):
        pyg.knn_graph(x, 3, torch.tensor([1, 0] * 5))
    with pytest.raises(ValueError, match="k must"):
        pyg.knn(x, x, 0)
    with pytest.raises(ValueError, match="r must"):
        pyg.radius_graph(x, -1.0)
    with pytest.raises(ValueError, match="ratio"):
        pyg.fps(x, ratio=0.0)
    with pytest.raises(TypeError, match="floating"):
        pyg.knn_graph(x.long(), 3)
    with pytest.raises(ValueError, match="max_num_neighbors"):
        pyg.radius_graph(x, 0.5, max_num_neighbors=0)


# --------------------------------------------------------------------------- softmax vs PyG

pyg_utils = pytest.importorskip("torch_geometric.utils")


def test_softmax_matches_pyg_sorted_unsorted_ptr():
    g = torch.Generator().manual_seed(3)
    n_nodes = 13
    index = torch.sort(torch.randint(0, n_nodes, (200,), generator=g)).values
    src = torch.randn(200, 4, generator=g, dtype=torch.float64)
    ref = pyg_utils.softmax(src, index, num_nodes=n_nodes)
    torch.testing.assert_close(pyg.softmax(src, index, num_nodes=n_nodes), ref)
    ptr = torch.searchsorted(index, torch.arange(n_nodes + 1))
    torch.testing.assert_close(pyg.softmax(src, ptr=ptr), pyg_utils.softmax(src, ptr=ptr))
    perm = torch.randperm(200, generator=g)
    torch.testing.assert_close(pyg.softmax(src[perm], index[perm]), pyg_utils.softmax(src[perm], index[perm]))
    # along another dim
    src2 = torch.randn(3, 200, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pyg.softmax(src2, index[perm], dim=1), pyg_utils.softmax(src2, index[perm], dim=1))


def test_log_softmax_matches_log_of_pyg_softmax():
    g = torch.Generator().manual_seed(4)
    index = torch.randint(0, 9, (120,), generator=g)
    src = torch.randn(120, 3, generator=g, dtype=torch.float64) * 10
    ref = torch.log(pyg_utils.softmax(src, index))
    torch.testing.assert_close(pyg.log_softmax(src, index), ref)


def test_softmax_gradcheck_unsorted():
    g = torch.Generator().manual_seed(5)
    index = torch.randint(0, 6, (40,), generator=g)
    src = torch.randn(40, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: pyg.softmax(s, index), (src,))
    assert torch.autograd.gradcheck(lambda s: pyg.log_softmax(s, index), (src,))
    assert torch.autograd.gradgradcheck(lambda s: pyg.log_softmax(s, index), (src,))


def test_softmax_errors():
    with pytest.raises(ValueError, match="index has entries >= num_nodes"):
        pyg.softmax(torch.randn(4), torch.tensor([0, 1, 5, 2]), num_nodes=3)
    with pytest.raises(ValueError, match="index or ptr"):
        pyg.softmax(torch.randn(4))
