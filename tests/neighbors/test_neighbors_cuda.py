"""CUDA tests of the neighbor search ops: parity with the CPU path, edge cases, device errors.

Every test is marked ``cuda`` (skipped without a CUDA device or without pyengine's CUDA
kernels, see conftest.py). The parity cases live in kdtree_device_cases.py, shared with the
emulated tests (tests/neighbors/test_kdtree_emulated.py, which run the same CUDA sources as host
code), here at the larger sizes a GPU affords: inputs are generated on the CPU and copied to
the GPU, and every result is compared with the CPU op on the same inputs, which
tests/neighbors/test_neighbors.py checks against scipy's cKDTree.

The CUDA code computes the CPU's distance keys (double, no FMA), so the two devices agree
exactly where the inputs are exact (integer grids, duplicates, the issue-14 cases); elsewhere
they must return the same pairs / neighbors *as sets*, except pairs whose distance lies within
the tie band ``REL_TOL[dtype]`` of the radius (or, with max_neighbors / knn, of another
candidate's distance).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kdtree_device_cases as cases
from kdtree_device_cases import assert_knn_parity, assert_radius_parity, knn_both, radius_both
from pyengine import ops

from test_neighbors import (  # shared generators and the float64 checks
    BATCH_LAYOUTS,
    DIMS,
    DTYPES,
    as_input,
    batch_vector,
    car_meshes,
    clustered_cloud,
    dtype_id,
)

pytestmark = pytest.mark.cuda

DEV = torch.device("cuda")
RUN = cases.CudaRunner()


# --------------------------------------------------------------------------- radius parity

SIZES = [(1, 1), (7, 40), (1000, 1000), (20000, 5000), (200_000, 200_000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M", SIZES, ids=[f"N{n}_M{m}" for n, m in SIZES])
def test_radius_uniform_parity(N, M, d, dtype):
    cases.radius_uniform(RUN, N, M, d, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k", [None, 1, 16, 100])
def test_radius_clustered_per_query_parity(k, d, dtype):
    cases.radius_clustered_per_query(RUN, 30000, d, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 1, 32, 1000])
def test_radius_long_rows_parity(k, dtype):
    cases.radius_long_rows(RUN, 5000, 64, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half,r", [(2, 6, 5.0), (2, 6, 0.0), (3, 3, 2.0), (3, 3, 0.0)])
@pytest.mark.parametrize("k", [None, 1, 4, 13])
def test_radius_exact_grid_identical(d, half, r, k, dtype):
    cases.radius_exact_grid(RUN, d, half, r, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half", [(2, 6), (3, 3)])
@pytest.mark.parametrize("k", [1, 6, 27])
def test_knn_exact_grid_identical(d, half, k, dtype):
    cases.knn_exact_grid(RUN, d, half, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_translated_cloud_parity(dtype):
    cases.translated_cloud(RUN, 20000, 2000, dtype)


# --------------------------------------------------------------------------- batches, real surfaces


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("layout", list(BATCH_LAYOUTS))
@pytest.mark.parametrize("k", [None, 6])
def test_radius_batches_parity(layout, d, k, dtype):
    cases.radius_batches(RUN, layout, d, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_many_batches_parity(dtype):
    cases.many_batches(RUN, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_car_surfaces_parity(dtype):
    meshes = car_meshes()
    points, P = as_input(np.concatenate(meshes), dtype)
    bp = batch_vector([len(m) for m in meshes])
    r = 0.23  # ~32 neighbors on these cars (median 33rd-neighbor distance)
    cpu, gpu = radius_both(RUN, points, points, r, batch_points=bp, batch_queries=bp)
    assert_radius_parity(cpu, gpu, P, P, r, dtype, device=DEV)
    cpu, gpu = radius_both(RUN, points, points, r, max_neighbors=10, batch_points=bp, batch_queries=bp)
    assert_radius_parity(cpu, gpu, P, P, r, dtype, max_neighbors=10, device=DEV)
    cpu, gpu = knn_both(RUN, points, points, 16, batch_points=bp, batch_queries=bp)
    assert_knn_parity(cpu, gpu, P, P, 16, dtype, device=DEV)


# --------------------------------------------------------------------------- knn parity


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M,k", [(1, 5, 1), (7, 30, 7), (1000, 1000, 16), (20000, 5000, 1), (20000, 5000, 64),
                                   (200_000, 50_000, 16), (300, 50, 300)])
def test_knn_parity(N, M, k, d, dtype):
    cases.knn_uniform(RUN, N, M, k, d, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_clustered_batches_parity(dtype):
    cases.knn_clustered_batches(RUN, [7000, 3, 13000, 0, 55, 4000], [1000, 0, 500, 0, 3000, 20], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_all_duplicates(dtype):
    cases.knn_three_locations(RUN, dtype)


# --------------------------------------------------------------------------- multi, KDTree, empty


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 7])
def test_radius_multi_parity(k, dtype):
    cases.radius_multi(RUN, 20000, 3000, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("batches", [False, True], ids=["nobatch", "batched"])
def test_kdtree_reuse_parity(batches, dtype):
    cases.kdtree_reuse(RUN, batches, dtype, n=5000, trials=3)


@pytest.mark.parametrize("N,M", [(0, 0), (0, 5), (5, 0)])
def test_empty_cuda(N, M):
    cases.empty(RUN, N, M)


# --------------------------------------------------------------------------- issue 14 (hardening)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,n_dup,leaf", [(2, 4999, 1), (3, 50_000, 4), (3, 1023, 16), (2, 777, 5)])
def test_knn_identical_points_identical(d, n_dup, leaf, dtype):
    cases.knn_identical_points(RUN, n_dup, d, leaf, dtype)


def test_identical_points_linear_time():
    # 1M identical points: a per-point descent is 1e12 distance tests per call (hours).
    cases.identical_points_linear_time(RUN, 1_000_000, timeout=240)


def test_float32_radius_square_overflows():
    cases.float32_radius_square_overflows(RUN)


@pytest.mark.parametrize("dtype,scale", cases.FAR_CASES, ids=[f"{dtype_id(d)}-{s:g}" for d, s in cases.FAR_CASES])
def test_far_points_finite(dtype, scale):
    cases.far_points_finite(RUN, dtype, scale)


@pytest.mark.parametrize("dtype,scale", cases.FAR_CLOUDS, ids=[f"{dtype_id(d)}-{s:g}" for d, s in cases.FAR_CLOUDS])
def test_far_cloud_parity(dtype, scale):
    cases.far_cloud_parity(RUN, dtype, scale, n=30000, m=5000)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_tiny_spacing(dtype):
    cases.tiny_spacing(RUN, dtype)


@pytest.mark.parametrize("how", cases.CORRUPTIONS)
def test_corrupt_tree_structure_refused(how):
    cases.corrupt_tree_refused(RUN, how)


def test_empty_child_trees():
    cases.empty_child_trees(RUN)


# --------------------------------------------------------------------------- errors on CUDA


def test_errors_cuda():
    p, q = torch.rand(20, 3, device=DEV), torch.rand(6, 3, device=DEV)
    bad_p = p.clone()
    bad_p[3, 1] = float("nan")
    with pytest.raises(ValueError, match="(?i)points"):
        ops.radius_search(bad_p, q, 0.1)
    bad_q = q.clone()
    bad_q[0, 0] = float("inf")
    with pytest.raises(ValueError, match="(?i)queries"):
        ops.knn(p, bad_q, 2)
    with pytest.raises(ValueError, match="(?i)radius"):
        ops.radius_search(p, q, torch.full((6,), -1.0, device=DEV))
    with pytest.raises(ValueError, match=r"(?i)\bk\b"):
        ops.knn(p, q, 21)
    bp, bq = batch_vector([8, 12]).to(DEV), batch_vector([3, 3]).to(DEV)
    with pytest.raises(ValueError, match="(?i)sorted"):
        ops.radius_search(p, q, 0.1, batch_points=bp.flip(0), batch_queries=bq)
    with pytest.raises(ValueError, match=r"(?i)\bk\b"):
        ops.knn(p, q, 9, batch_points=bp, batch_queries=bq)


@pytest.mark.parametrize("which", ["queries", "batch", "radius"])
def test_device_mismatch(which):
    """Mixed CPU/CUDA inputs are refused with an error naming the device (house style: ValueError/TypeError)."""
    p, q = torch.rand(20, 3, device=DEV), torch.rand(6, 3, device=DEV)
    with pytest.raises((ValueError, TypeError), match="(?i)device|cuda|cpu"):
        if which == "queries":
            ops.radius_search(p, q.cpu(), 0.1)
        elif which == "batch":
            ops.radius_search(p, q, 0.1, batch_points=torch.zeros(20, dtype=torch.long),
                              batch_queries=torch.zeros(6, dtype=torch.long, device=DEV))
        else:
            ops.radius_search(p, q, torch.full((6,), 0.1))


# --------------------------------------------------------------------------- the tree itself, partitions


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("leaf_size", [1, 5, 16])
def test_build_layout_parity(leaf_size, d, dtype):
    """The node layout depends only on the batch sizes and leaf_size, so the CUDA build must give
    the CPU's nodes and roots exactly; perm must be a permutation with every leaf inside its tight box."""
    psz = [0, 1, 777, 0, 5000, 33]
    rng = np.random.default_rng(29 + d + leaf_size)
    points, _ = as_input(clustered_cloud(sum(psz), d, rng)[0], dtype)
    bp = batch_vector(psz)
    tc = ops.KDTree(points, batch=bp, leaf_size=leaf_size)
    tg = ops.KDTree(points.to(DEV), batch=bp.to(DEV), leaf_size=leaf_size)
    assert torch.equal(tc.nodes, tg.nodes.cpu()) and torch.equal(tc.roots, tg.roots.cpu())
    perm, bounds, nodes = tg.perm.cpu(), tg.bounds.cpu(), tg.nodes.cpu()
    assert torch.equal(perm.sort().values, torch.arange(sum(psz)))
    for root in tg.roots.cpu().tolist():  # each batch's points stay in its own range
        if root >= 0:
            lo, hi = nodes[root, :2].tolist()
            assert torch.equal(perm[lo:hi].sort().values, torch.arange(lo, hi))
    for node in range(0, len(nodes), max(1, len(nodes) // 300)):
        lo, hi = nodes[node, :2].tolist()
        p = points[perm[lo:hi]]
        if hi > lo:
            assert torch.equal(bounds[node, 0], p.min(0).values) and torch.equal(bounds[node, 1], p.max(0).values)


@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_partition_cuda(dtype, clustered):
    cases.partition(RUN, dtype, clustered)
