"""The GPU k-d tree (csrc/neighbors/kdtree_cuda.cu), emulated on the CPU, against the CPU ops.

The CUDA build and queries are Thrust algorithms over ``__host__ __device__`` functors, so the
``thrust_host`` back end of tests/cuda_emulation.py compiles the very same ``.cu`` with Thrust's
host (C++) device system; its ``TORCH_LIBRARY_IMPL(pyengine, CUDA)`` block becomes the CPU
kernels of ``torch.ops.pyengine_emu.kdtree_*``. The parity cases live in kdtree_device_cases.py,
shared with the real-GPU tests (tests/neighbors/test_neighbors_cuda.py): each runs
``pyengine.ops``'s public functions once as shipped (the CPU kernels, which
tests/neighbors/test_neighbors.py checks against scipy) and once with the module's ops routed
to the emulated CUDA kernels, and compares: same pairs / neighbors except float near-ties at a
radius or k-th distance, identical results on exact integer grids, on duplicates and on the
issue-14 cases (identical points, squares that overflow or underflow, corrupt trees).

Every test runs in both element orders of the Thrust element-wise loops (``emu``'s forward
and reverse ``PYE_SIMT_ORDER``): a functor reading what another GPU thread writes shows as a
difference between the two. What the emulation does not check: CUB's radix sort and scan
(Thrust's host merge sort and scan run instead), device memory, streams and rounding on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kdtree_device_cases as cases
from pyengine import ops

from test_neighbors import BATCH_LAYOUTS, DIMS, DTYPES, as_input, clustered_cloud, dtype_id

EMULATION_BACKEND = "thrust_host"  # the emu fixture builds and returns this back end
pytestmark = pytest.mark.emulated
P_OPS = torch.ops.pyengine


@pytest.fixture
def run(emu):
    """The emulated CUDA kernels (``torch.ops.pyengine_emu``) as a runner of kdtree_device_cases."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key("pyengine_emu::kdtree_knn", "CPU")
    return cases.EmulatedRunner(emu)


# --------------------------------------------------------------------------- the tree itself


def test_element_order_follows_lane_order(emu):
    """The stand-in CUDA policy runs thrust::for_each (every element-wise "kernel" of the k-d
    tree) in the emu fixture's order, so the two runs of each test differ in that order."""
    import os

    order = emu.thrust_selftest_order(37)
    forward = torch.arange(37)
    assert torch.equal(order, forward.flip(0) if os.environ["PYE_SIMT_ORDER"] == "reverse" else forward)
    assert emu.thrust_selftest_order(0).numel() == 0



@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("leaf_size", [1, 5, 16])
def test_build_layout_parity(emu, leaf_size, d, dtype):
    """The node layout depends only on the batch sizes and leaf_size: the CUDA build must give the
    CPU's nodes and roots exactly, perm a permutation keeping every batch in its range, and every
    node's bounds the tight box of its points."""
    psz = [0, 1, 777, 0, 3000, 33]
    rng = np.random.default_rng(29 + d + leaf_size)
    points, _ = as_input(clustered_cloud(sum(psz), d, rng)[0], dtype)
    points[::7] = points[3]  # duplicates: equal split coordinates at many medians
    bp = torch.tensor([0, *np.cumsum(psz)], dtype=torch.long)
    perm_c, nodes_c, bounds_c, roots_c = P_OPS.kdtree_build(points, bp, leaf_size)
    perm, nodes, bounds, roots = emu.kdtree_build(points, bp, leaf_size)
    assert torch.equal(nodes, nodes_c) and torch.equal(roots, roots_c)
    assert bounds.dtype == dtype and bounds.shape == bounds_c.shape
    assert torch.equal(perm.sort().values, torch.arange(sum(psz)))
    for b, root in enumerate(roots.tolist()):
        if root >= 0:
            lo, hi = nodes[root, :2].tolist()
            assert (lo, hi) == (bp[b].item(), bp[b + 1].item())
            assert torch.equal(perm[lo:hi].sort().values, torch.arange(lo, hi))
    # every leaf's bounds are the tight box of its points (leaves partition the points) ...
    leaf = (nodes[:, 2] < 0).nonzero().squeeze(1)
    leaf = leaf[nodes[leaf, 0].argsort()]
    sizes = nodes[leaf, 1] - nodes[leaf, 0]
    assert int(sizes.sum()) == sum(psz) and (sizes > 0).all() and (sizes <= leaf_size).all()
    tree_order = points[perm]
    assert torch.equal(bounds[leaf, 0], torch.segment_reduce(tree_order, "min", lengths=sizes))
    assert torch.equal(bounds[leaf, 1], torch.segment_reduce(tree_order, "max", lengths=sizes))
    # ... every inner node's the union of its children's, so the tight box of its points too ...
    inner = (nodes[:, 2] >= 0).nonzero().squeeze(1)
    lo_child, hi_child = nodes[inner, 2], nodes[inner, 3]
    assert torch.equal(bounds[inner, 0], torch.minimum(bounds[lo_child, 0], bounds[hi_child, 0]))
    assert torch.equal(bounds[inner, 1], torch.maximum(bounds[lo_child, 1], bounds[hi_child, 1]))
    # ... and split on its widest side (the first on ties): lower child's points <= upper child's
    side = (bounds[inner, 1] - bounds[inner, 0]).argmax(1, keepdim=True)
    below = bounds[lo_child, 1].gather(1, side).squeeze(1)
    above = bounds[hi_child, 0].gather(1, side).squeeze(1)
    # float32 keys are exact; float64 keys keep the top 32 (or more) of a double's 64 order bits
    slack = 0.0 if dtype == torch.float32 else 2.0**-19 * torch.maximum(below.abs(), above.abs())
    assert (below <= above + slack).all()


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_build_tiny_and_empty(emu, n):
    points = torch.rand(n, 3, dtype=torch.float64)
    bp = torch.tensor([0, n, n])  # a second, empty batch
    got, ref = emu.kdtree_build(points, bp, 1), P_OPS.kdtree_build(points, bp, 1)
    assert torch.equal(got[1], ref[1]) and torch.equal(got[3], ref[3]) and torch.equal(got[2], ref[2])
    assert torch.equal(got[0].sort().values, torch.arange(n))


# --------------------------------------------------------------------------- radius


SIZES = [(1, 1), (7, 40), (1000, 1000), (20000, 5000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M", SIZES, ids=[f"N{n}_M{m}" for n, m in SIZES])
def test_radius_uniform_parity(run, N, M, d, dtype):
    cases.radius_uniform(run, N, M, d, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 1, 16, 100])
def test_radius_clustered_per_query_capped_parity(run, k, dtype):
    cases.radius_clustered_per_query(run, 8000, 3, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 1, 32, 1000])
def test_radius_long_rows_parity(run, k, dtype):
    cases.radius_long_rows(run, 3000, 40, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half,r", [(2, 6, 5.0), (2, 6, 0.0), (3, 3, 2.0), (3, 3, 0.0)])
@pytest.mark.parametrize("k", [None, 1, 4, 13])
def test_radius_exact_grid_duplicates_identical(run, d, half, r, k, dtype):
    cases.radius_exact_grid(run, d, half, r, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_translated_cloud_parity(run, dtype):
    cases.translated_cloud(run, 6000, 1500, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 7])
def test_radius_multi_parity(run, k, dtype):
    cases.radius_multi(run, 6000, 1000, k, dtype)


# --------------------------------------------------------------------------- batched clouds


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("layout", list(BATCH_LAYOUTS))
@pytest.mark.parametrize("k", [None, 6])
def test_radius_batches_parity(run, layout, d, k, dtype):
    cases.radius_batches(run, layout, d, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_many_batches_parity(run, dtype):
    cases.many_batches(run, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_clustered_batches_parity(run, dtype):
    cases.knn_clustered_batches(run, [3000, 3, 5000, 0, 55, 1500], [600, 0, 400, 0, 900, 20], dtype)


# --------------------------------------------------------------------------- knn


KNN_CASES = [(1, 5, 1), (7, 30, 7), (1000, 1000, 16), (20000, 3000, 1), (8000, 2000, 64), (300, 50, 300)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M,k", KNN_CASES, ids=[f"N{n}_M{m}_k{k}" for n, m, k in KNN_CASES])
def test_knn_parity(run, N, M, k, d, dtype):
    cases.knn_uniform(run, N, M, k, d, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half", [(2, 6), (3, 3)])
@pytest.mark.parametrize("k", [1, 6, 27])
def test_knn_exact_grid_duplicates_identical(run, d, half, k, dtype):
    cases.knn_exact_grid(run, d, half, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_all_duplicates(run, dtype):
    """Every point at one of three locations: identical to the CPU (distances computed in double
    on both since issue 14, ties by index)."""
    cases.knn_three_locations(run, dtype)


# --------------------------------------------------------------------------- issue 14 (hardening)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,n_dup,leaf", [(2, 4999, 1), (3, 5000, 4), (3, 1023, 16), (2, 777, 5)])
def test_knn_identical_points_identical(run, d, n_dup, leaf, dtype):
    cases.knn_identical_points(run, n_dup, d, leaf, dtype)


def test_identical_points_linear_time(run):
    # 100k emulated: the linear walk takes a few seconds (most of it loading the emulator in the
    # child), the per-point descent 5e9 distance tests per call.
    cases.identical_points_linear_time(run, 100_000, timeout=120)


def test_float32_radius_square_overflows(run):
    cases.float32_radius_square_overflows(run)


@pytest.mark.parametrize("dtype,scale", cases.FAR_CASES, ids=[f"{dtype_id(d)}-{s:g}" for d, s in cases.FAR_CASES])
def test_far_points_finite(run, dtype, scale):
    cases.far_points_finite(run, dtype, scale)


@pytest.mark.parametrize("dtype,scale", cases.FAR_CLOUDS, ids=[f"{dtype_id(d)}-{s:g}" for d, s in cases.FAR_CLOUDS])
def test_far_cloud_parity(run, dtype, scale):
    cases.far_cloud_parity(run, dtype, scale, n=2999, m=333)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_tiny_spacing(run, dtype):
    cases.tiny_spacing(run, dtype)


@pytest.mark.parametrize("how", cases.CORRUPTIONS)
def test_corrupt_tree_structure_refused(run, how):
    cases.corrupt_tree_refused(run, how)


def test_empty_child_trees(run):
    cases.empty_child_trees(run)


# --------------------------------------------------------------------------- KDTree, partition, empty, errors


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("batches", [False, True], ids=["nobatch", "batched"])
def test_kdtree_reuse_parity(run, batches, dtype):
    cases.kdtree_reuse(run, batches, dtype, n=3000, trials=2)


@pytest.mark.parametrize("clustered", [False, True])
def test_partition_parity(run, clustered):
    cases.partition(run, torch.float32, clustered)


@pytest.mark.parametrize("N,M", [(0, 0), (0, 5), (5, 0)])
def test_empty(run, N, M):
    cases.empty(run, N, M)


def test_errors(run, emu):
    """The CUDA code's own checks (NaN/Inf points and queries, negative radii, k) raise ValueError."""
    p, q = torch.rand(20, 3), torch.rand(6, 3)
    bad_p = p.clone()
    bad_p[3, 1] = float("nan")
    with pytest.raises(ValueError, match="(?i)points"):
        emu.kdtree_build(bad_p, torch.tensor([0, 20]), 8)
    tree = run.call(ops.KDTree, p)
    bad_q = q.clone()
    bad_q[0, 0] = float("inf")
    qp = torch.tensor([0, 6])
    with pytest.raises(ValueError, match="(?i)queries"):
        emu.kdtree_knn(*tree._tree(), bad_q, qp, 2)
    with pytest.raises(ValueError, match="(?i)radius"):
        emu.kdtree_radius(*tree._tree(), q, qp, torch.full((6,), -1.0), -1)
    with pytest.raises(ValueError, match="(?i)radius"):
        emu.kdtree_radius(*tree._tree(), q, qp, torch.full((6,), float("nan")), -1)


def test_corrupt_tree_errors(run, emu):
    """The CUDA queries' own checks of a tree they did not build: a child cycle, perm out of range,
    nodes out of range, and k larger than a batch raise ValueError instead of hanging or reading
    out of bounds."""
    p, q = torch.rand(200, 3, dtype=torch.float64), torch.rand(30, 3, dtype=torch.float64)
    points, perm, nodes, bounds, roots = run.call(ops.KDTree, p, leaf_size=4)._tree()
    qp, r = torch.tensor([0, 30]), torch.full((30,), 0.3, dtype=torch.float64)
    cyclic = nodes.clone()
    inner = int((nodes[:, 2] >= 0).nonzero()[-1])
    cyclic[inner, 3] = 0  # an inner node's upper child back to the root
    for fn, args in ((emu.kdtree_radius, (r, -1)), (emu.kdtree_knn, (5,))):
        with pytest.raises(ValueError, match="(?i)tree"):
            fn(points, perm, cyclic, bounds, roots, q, qp, *args)
    bad_perm = perm.clone()
    bad_perm[7] = 200
    with pytest.raises(ValueError, match="(?i)perm"):
        emu.kdtree_knn(points, bad_perm, nodes, bounds, roots, q, qp, 3)
    bad_nodes = nodes.clone()
    bad_nodes[1, 1] = 201
    with pytest.raises(ValueError, match="(?i)nodes"):
        emu.kdtree_radius(points, perm, bad_nodes, bounds, roots, q, qp, r, -1)
    bp = torch.tensor([0, 3, 200])  # the first batch has 3 points
    tree = emu.kdtree_build(p, bp, 4)
    with pytest.raises(ValueError, match=r"(?i)\bk\b"):
        emu.kdtree_knn(p, *tree, q, torch.tensor([0, 10, 30]), 4)
