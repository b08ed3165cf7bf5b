"""The GPU k-d tree (csrc/neighbors/kdtree_cuda.cu), emulated on the CPU, against the CPU ops.

The CUDA build and queries are Thrust algorithms over ``__host__ __device__`` functors, so the
``thrust_host`` back end of tests/cuda_emulation.py compiles the very same ``.cu`` with Thrust's
host (C++) device system; its ``TORCH_LIBRARY_IMPL(pyengine, CUDA)`` block becomes the CPU
kernels of ``torch.ops.pyengine_emu.kdtree_*``. Every test runs ``pyengine.ops``'s public
functions twice on the same inputs: once as shipped (the CPU kernels, which
tests/neighbors/test_neighbors.py checks against scipy) and once with the module's ops routed
to the emulated CUDA kernels, and compares with the parity checks of the real-GPU tests
(tests/neighbors/test_neighbors_cuda.py): same pairs / neighbors except float near-ties at a
radius or k-th distance, identical results on exact integer grids, identical tree layouts.

Every test runs in both element orders of the Thrust element-wise loops (``emu``'s forward
and reverse ``PYE_SIMT_ORDER``): a functor reading what another GPU thread writes shows as a
difference between the two. What the emulation does not check: CUB's radix sort and scan
(Thrust's host merge sort and scan run instead), device memory, streams and rounding on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyengine import ops
from pyengine.ops import neighbors as neighbors_mod

from test_neighbors import (
    BATCH_LAYOUTS,
    DIMS,
    DTYPES,
    as_input,
    batch_vector,
    check_knn,
    check_radius,
    clustered_cloud,
    dtype_id,
    exact_ball,
    csr_rows,
    grid_case,
    radius_for,
    uniform_cloud,
)
from test_neighbors_cuda import assert_knn_parity, assert_radius_parity

EMULATION_BACKEND = "thrust_host"  # the emu fixture builds and returns this back end
pytestmark = pytest.mark.emulated
P_OPS = torch.ops.pyengine
CPU = torch.device("cpu")


@pytest.fixture
def on_gpu(emu):
    """``on_gpu(fn, *args, **kw)``: a pyengine.ops neighbor call with its k-d tree ops routed to
    the emulated CUDA kernels (``torch.ops.pyengine_emu``)."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key("pyengine_emu::kdtree_knn", "CPU")

    def run(fn, *args, **kw):
        real = neighbors_mod._ops
        neighbors_mod._ops = emu
        try:
            return fn(*args, **kw)
        finally:
            neighbors_mod._ops = real

    return run


def radius_both(on_gpu, points, queries, r, **kw):
    return ops.radius_search(points, queries, r, **kw), on_gpu(ops.radius_search, points, queries, r, **kw)


def knn_both(on_gpu, points, queries, k, **kw):
    return ops.knn(points, queries, k, **kw), on_gpu(ops.knn, points, queries, k, **kw)


def radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=None):
    assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=max_neighbors, device=CPU)


def knn_parity(cpu, gpu, P, Q, k, dtype):
    assert_knn_parity(cpu, gpu, P, Q, k, dtype, device=CPU)


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
def test_radius_uniform_parity(on_gpu, N, M, d, dtype):
    rng = np.random.default_rng(N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    queries, Q = (points.clone(), P) if M == N else as_input(rng.uniform(-0.1, 1.1, (M, d)), dtype)
    r = 0.45 if N < 100 else radius_for(N, d)
    cpu, gpu = radius_both(on_gpu, points, queries, r)
    check_radius(gpu, P, Q, r, dtype)  # against scipy directly, too
    radius_parity(cpu, gpu, P, Q, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 1, 16, 100])
def test_radius_clustered_per_query_capped_parity(on_gpu, k, dtype):
    """Blobs of scales 1e-3 .. 10, a per-query radius of 3x the blob scale (rows of very different
    lengths), capped at k; then one fixed radius."""
    rng = np.random.default_rng(20)
    pts, scale = clustered_cloud(8000, 3, rng)
    points, P = as_input(pts, dtype)
    queries, Q = as_input(pts[::3], dtype)
    rq = torch.from_numpy(3.0 * scale[::3]).to(dtype)
    cpu, gpu = radius_both(on_gpu, points, queries, rq, max_neighbors=k)
    radius_parity(cpu, gpu, P, Q, rq.double().numpy(), dtype, max_neighbors=k)
    cpu, gpu = radius_both(on_gpu, points, queries, 0.05, max_neighbors=k)
    radius_parity(cpu, gpu, P, Q, 0.05, dtype, max_neighbors=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 1, 32, 1000])
def test_radius_long_rows_parity(on_gpu, k, dtype):
    """A radius covering the whole cloud: rows of 3000 neighbors (longer than any per-thread buffer)."""
    rng = np.random.default_rng(21)
    points, P = as_input(uniform_cloud(3000, 3, rng), dtype)
    queries, Q = as_input(rng.random((40, 3)), dtype)
    cpu, gpu = radius_both(on_gpu, points, queries, 2.0, max_neighbors=k)
    radius_parity(cpu, gpu, P, Q, 2.0, dtype, max_neighbors=k)
    if k is None:
        assert torch.equal(gpu[1], torch.arange(3000).repeat(40))
    else:
        check_radius(gpu, P, Q, 2.0, dtype, max_neighbors=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half,r", [(2, 6, 5.0), (2, 6, 0.0), (3, 3, 2.0), (3, 3, 0.0)])
@pytest.mark.parametrize("k", [None, 1, 4, 13])
def test_radius_exact_grid_duplicates_identical(on_gpu, d, half, r, k, dtype):
    """Integer grid, every third point duplicated: exact distances, so boundary points (inside),
    exact ties (lower index first) and duplicates must come out identical to the CPU's."""
    P, Q = grid_case(d, half, seed=d * 100 + half)
    points, queries = torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype)
    cpu, gpu = radius_both(on_gpu, points, queries, r, max_neighbors=k)
    assert torch.equal(cpu[0], gpu[0]) and torch.equal(cpu[1], gpu[1])
    assert csr_rows(gpu) == exact_ball(P, Q, r, k)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_translated_cloud_parity(on_gpu, dtype):
    """A cloud of extent 1 at distance ~100 from the origin (distances from differences, not norms)."""
    rng = np.random.default_rng(22)
    points, P = as_input(uniform_cloud(6000, 3, rng) + np.array([100.0, -100.0, 50.0]), dtype)
    r = radius_for(6000, 3)
    cpu, gpu = radius_both(on_gpu, points, points, r)
    radius_parity(cpu, gpu, P, P, r, dtype)
    cpu, gpu = knn_both(on_gpu, points, points[:1500], 8)
    knn_parity(cpu, gpu, P, P[:1500], 8, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 7])
def test_radius_multi_parity(on_gpu, k, dtype):
    rng = np.random.default_rng(27)
    points, P = as_input(uniform_cloud(6000, 3, rng), dtype)
    queries, Q = as_input(rng.random((1000, 3)), dtype)
    r = radius_for(6000, 3)
    radii = [2 * r, 0.0, r / 2, r]
    outs = on_gpu(ops.radius_search_multi, points, queries, radii, max_neighbors=k)
    assert len(outs) == len(radii)
    for rad, out in zip(radii, outs):
        one = on_gpu(ops.radius_search, points, queries, rad, max_neighbors=k)
        assert torch.equal(out[0], one[0]) and torch.equal(out[1], one[1]), f"radius {rad}: multi != single"
        radius_parity(ops.radius_search(points, queries, rad, max_neighbors=k), out, P, Q, rad, dtype,
                      max_neighbors=k)


# --------------------------------------------------------------------------- batched clouds


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("layout", list(BATCH_LAYOUTS))
@pytest.mark.parametrize("k", [None, 6])
def test_radius_batches_parity(on_gpu, layout, d, k, dtype):
    psz, qsz = BATCH_LAYOUTS[layout]
    rng = np.random.default_rng(23)
    points, P = as_input(uniform_cloud(sum(psz), d, rng), dtype)
    queries, Q = as_input(rng.random((sum(qsz), d)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    r = 0.3 if layout == "tiny" else radius_for(500, d, k=24)
    cpu, gpu = radius_both(on_gpu, points, queries, r, max_neighbors=k, batch_points=bp, batch_queries=bq)
    check_radius(gpu, P, Q, r, dtype, bp=bp.numpy(), bq=bq.numpy(), max_neighbors=k)
    radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_many_batches_parity(on_gpu, dtype):
    """1000 small batches of random sizes (many empty)."""
    rng = np.random.default_rng(24)
    psz = rng.integers(0, 60, 1000)
    psz[rng.random(1000) < 0.2] = 0
    qsz = rng.integers(0, 20, 1000)
    points, P = as_input(uniform_cloud(int(psz.sum()), 3, rng), dtype)
    queries, Q = as_input(rng.random((int(qsz.sum()), 3)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    for k in (16, None):
        cpu, gpu = radius_both(on_gpu, points, queries, 0.4, max_neighbors=k, batch_points=bp, batch_queries=bq)
        radius_parity(cpu, gpu, P, Q, 0.4, dtype, max_neighbors=k)
    cpu, gpu = knn_both(on_gpu, points, queries[:0], 1, batch_points=bp, batch_queries=bq[:0])
    assert gpu[0].shape == (0, 1) and gpu[1].shape == (0, 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_clustered_batches_parity(on_gpu, dtype):
    psz, qsz = [3000, 3, 5000, 0, 55, 1500], [600, 0, 400, 0, 900, 20]
    rng = np.random.default_rng(26)
    points, P = as_input(clustered_cloud(sum(psz), 3, rng)[0], dtype)
    queries, Q = as_input(P[rng.choice(len(P), sum(qsz))] + rng.standard_normal((sum(qsz), 3)) * 1e-3, dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    for k in (1, 16, 55):
        cpu, gpu = knn_both(on_gpu, points, queries, k, batch_points=bp, batch_queries=bq)
        check_knn(gpu, P, Q, k, dtype, bp=bp.numpy(), bq=bq.numpy())
        knn_parity(cpu, gpu, P, Q, k, dtype)


# --------------------------------------------------------------------------- knn


KNN_CASES = [(1, 5, 1), (7, 30, 7), (1000, 1000, 16), (20000, 3000, 1), (8000, 2000, 64), (300, 50, 300)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M,k", KNN_CASES, ids=[f"N{n}_M{m}_k{k}" for n, m, k in KNN_CASES])
def test_knn_parity(on_gpu, N, M, k, d, dtype):
    rng = np.random.default_rng(25 + N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    queries, Q = (points.clone(), P) if M == N else as_input(rng.uniform(-0.2, 1.2, (M, d)), dtype)
    cpu, gpu = knn_both(on_gpu, points, queries, k)
    check_knn(gpu, P, Q, k, dtype)
    knn_parity(cpu, gpu, P, Q, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half", [(2, 6), (3, 3)])
@pytest.mark.parametrize("k", [1, 6, 27])
def test_knn_exact_grid_duplicates_identical(on_gpu, d, half, k, dtype):
    P, Q = grid_case(d, half, seed=d * 100 + half)
    points, queries = torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype)
    cpu, gpu = knn_both(on_gpu, points, queries, k)
    assert torch.equal(cpu[1], gpu[1]) and torch.equal(cpu[0], gpu[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_all_duplicates(on_gpu, dtype):
    """Every point at one of three locations: ties everywhere, resolved by index on both."""
    base = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=dtype)
    points = base[torch.randint(0, 3, (500,))]
    queries = torch.rand(40, 3, dtype=dtype)
    cpu, gpu = knn_both(on_gpu, points, queries, 9)
    # The CPU compares float32 squared distances in double (issue 14); the CUDA walk still does
    # it in float32, so the two may differ in the last bit and order near-ties differently.
    # Duplicates sit at identical distances either way, so tied sets must agree exactly.
    for c, g in zip(cpu, gpu):
        if c.is_floating_point():
            torch.testing.assert_close(c, g, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(c, g) or dtype == torch.float32  # near-ties may swap (see above)
    cpu, gpu = radius_both(on_gpu, points, queries, 1.2, max_neighbors=5)
    assert torch.equal(cpu[0], gpu[0]) and torch.equal(cpu[1], gpu[1])


# --------------------------------------------------------------------------- KDTree, partition, empty, errors


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("batches", [False, True], ids=["nobatch", "batched"])
def test_kdtree_reuse_parity(on_gpu, batches, dtype):
    """One tree built by the CUDA code, queried several times (radius, capped, multi, knn)."""
    rng = np.random.default_rng(28)
    psz, qsz = BATCH_LAYOUTS["empty_middle"]
    n = sum(psz) if batches else 3000
    points, P = as_input(clustered_cloud(n, 3, rng)[0] / 30, dtype)
    bp = batch_vector(psz) if batches else None
    tree_c = ops.KDTree(points, batch=bp)
    tree_g = on_gpu(ops.KDTree, points, batch=bp)
    assert torch.equal(tree_c.nodes, tree_g.nodes) and torch.equal(tree_c.roots, tree_g.roots)
    for trial in range(2):
        m = sum(qsz) if batches else 700 + trial
        bq = batch_vector(qsz) if batches else None
        queries, Q = as_input(rng.random((m, 3)) * 2 - 1, dtype)
        r = 0.05 * (trial + 1)
        for k in (None, 5):
            cpu = tree_c.radius(queries, r, max_neighbors=k, batch=bq)
            gpu = on_gpu(tree_g.radius, queries, r, max_neighbors=k, batch=bq)
            radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=k)
        multi = on_gpu(tree_g.radius_multi, queries, [0.02, 0.1], batch=bq)
        for rad, out in zip([0.02, 0.1], multi):
            radius_parity(tree_c.radius(queries, rad, batch=bq), out, P, Q, rad, dtype)
        if not batches:
            knn_parity(tree_c.knn(queries, 9), on_gpu(tree_g.knn, queries, 9), P, Q, 9, dtype)


@pytest.mark.parametrize("clustered", [False, True])
def test_partition_parity(on_gpu, clustered):
    """kd_partition on the CUDA tree: the CPU's leaf sizes, tight boxes, halos by brute force."""
    from test_partition import _brute_halo, _cloud

    points = _cloud(3000, 3, seed=31, clustered=clustered)
    pc = ops.kd_partition(points, n_parts=13)
    pg = on_gpu(ops.kd_partition, points, n_parts=13, halo_radius=0.05)
    assert torch.equal(pc.leaf_ptr, pg.leaf_ptr)
    assert sorted(pg.perm.tolist()) == list(range(len(points)))
    for i in range(pg.num_leaves):
        pts = points[pg.leaf(i)]
        assert torch.equal(pg.boxes[i, 0], pts.min(0).values) and torch.equal(pg.boxes[i, 1], pts.max(0).values)
    expected = _brute_halo(points, pg, 0.05)
    for i in range(pg.num_leaves):
        assert pg.halo(i).tolist() == expected[i], f"leaf {i}"


@pytest.mark.parametrize("N,M", [(0, 0), (0, 5), (5, 0)])
def test_empty(on_gpu, N, M):
    points, queries = torch.rand(N, 3), torch.rand(M, 3)
    none = torch.zeros(M + 1, dtype=torch.long)
    rp, col = on_gpu(ops.radius_search, points, queries, 0.5)
    assert torch.equal(rp, none) and col.numel() == 0
    bp, bq = torch.zeros(N, dtype=torch.long), torch.zeros(M, dtype=torch.long)
    rp, col = on_gpu(ops.radius_search, points, queries, 0.5, max_neighbors=2, batch_points=bp, batch_queries=bq)
    assert torch.equal(rp, none) and col.numel() == 0
    for rp, col in on_gpu(ops.radius_search_multi, points, queries, [0.1, 0.5]):
        assert torch.equal(rp, none) and col.numel() == 0
    if N >= 2:
        dist, idx = on_gpu(ops.knn, points, queries, 2)
        assert dist.shape == (0, 2) and idx.shape == (0, 2)


def test_errors(on_gpu, emu):
    """The CUDA code's own checks (NaN/Inf points and queries, negative radii, k) raise ValueError."""
    p, q = torch.rand(20, 3), torch.rand(6, 3)
    bad_p = p.clone()
    bad_p[3, 1] = float("nan")
    with pytest.raises(ValueError, match="(?i)points"):
        emu.kdtree_build(bad_p, torch.tensor([0, 20]), 8)
    tree = on_gpu(ops.KDTree, p)
    bad_q = q.clone()
    bad_q[0, 0] = float("inf")
    qp = torch.tensor([0, 6])
    with pytest.raises(ValueError, match="(?i)queries"):
        emu.kdtree_knn(*tree._tree(), bad_q, qp, 2)
    with pytest.raises(ValueError, match="(?i)radius"):
        emu.kdtree_radius(*tree._tree(), q, qp, torch.full((6,), -1.0), -1)
    with pytest.raises(ValueError, match="(?i)radius"):
        emu.kdtree_radius(*tree._tree(), q, qp, torch.full((6,), float("nan")), -1)


def test_corrupt_tree_errors(on_gpu, emu):
    """The CUDA queries' own checks of a tree they did not build: a child cycle, perm out of range,
    nodes out of range, and k larger than a batch raise ValueError instead of hanging or reading
    out of bounds."""
    p, q = torch.rand(200, 3, dtype=torch.float64), torch.rand(30, 3, dtype=torch.float64)
    points, perm, nodes, bounds, roots = on_gpu(ops.KDTree, p, leaf_size=4)._tree()
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
