"""CUDA tests of the neighbor search ops: parity with the CPU path, edge cases, device errors.

Every test is marked ``cuda`` (skipped without a CUDA device or without pyengine's CUDA
kernels, see conftest.py). Inputs are generated on the CPU and copied to the GPU; every
result is compared with the CPU op on the same inputs, which tests/neighbors/test_neighbors.py checks
against scipy's cKDTree.

The GPU may round distances differently (FMA contraction, another summation order), so the
two devices must return the same pairs / neighbors *as sets*, except pairs whose distance
lies within the tie band ``REL_TOL[dtype]`` of the radius (or, with max_neighbors / knn, of
another candidate's distance). On integer grids every distance is exact on both devices and
the results must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyengine import ops

from test_neighbors import (  # shared generators and the float64 checks
    BATCH_LAYOUTS,
    DIMS,
    DTYPES,
    REL_TOL,
    as_input,
    batch_vector,
    car_meshes,
    check_csr,
    check_knn,
    check_radius,
    clustered_cloud,
    dtype_id,
    grid_case,
    radius_for,
    uniform_cloud,
)

pytestmark = pytest.mark.cuda

DEV = torch.device("cuda")


def cuda(*ts):
    return tuple(None if t is None else t.to(DEV) for t in ts)


def to_cpu(out):
    return tuple(t.cpu() for t in out)


def assert_on_device(out, device=DEV):
    for t in out:
        assert t.device.type == device.type, f"result on {t.device}, inputs on {device}"


# --------------------------------------------------------------------------- parity checks


def pair_dists(out, P, Q):
    rp, c = out[0].numpy(), out[1].numpy()
    rows = np.repeat(np.arange(len(rp) - 1), np.diff(rp))
    return rows, c, np.linalg.norm(P[c] - Q[rows], axis=1)


def assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=None, device=DEV):
    """Same pairs on both devices, except pairs within the tie band of the radius or, with
    max_neighbors, of the row's farthest kept distance (a near-tie at the k-th neighbor).
    (``device``: where ``gpu`` must be; the CPU for the emulated CUDA code.)"""
    assert_on_device(gpu, device)
    gpu = to_cpu(gpu)
    m, n = len(Q), len(P)
    check_csr(gpu, m, n)
    if torch.equal(cpu[0], gpu[0]) and torch.equal(cpu[1], gpu[1]):
        return
    r = np.broadcast_to(np.asarray(r, dtype=np.float64), (m,))
    tol = REL_TOL[dtype]
    rows_c, col_c, d_c = pair_dists(cpu, P, Q)
    rows_g, col_g, d_g = pair_dists(gpu, P, Q)
    key_c, key_g = rows_c * n + col_c, rows_g * n + col_g
    only_c, only_g = ~np.isin(key_c, key_g), ~np.isin(key_g, key_c)
    rows = np.concatenate([rows_c[only_c], rows_g[only_g]])
    d = np.concatenate([d_c[only_c], d_g[only_g]])
    cols = np.concatenate([col_c[only_c], col_g[only_g]])
    ok = np.abs(d - r[rows]) <= tol * r[rows]
    if max_neighbors is not None:
        kth = np.full(m, -np.inf)
        np.maximum.at(kth, rows_c, d_c)
        full = (np.diff(cpu[0].numpy()) == max_neighbors) & (np.diff(gpu[0].numpy()) == max_neighbors)
        ok |= full[rows] & (np.abs(d - kth[rows]) <= 2 * tol * kth[rows])
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, (f"{bad.size} pairs differ between CPU and CUDA beyond float ties, e.g. query {rows[bad[0]]} "
                           f"point {cols[bad[0]]} at distance {d[bad[0]]!r} (radius {r[rows[bad[0]]]!r}, "
                           f"{'CPU only' if bad[0] < only_c.sum() else 'CUDA only'})")


def assert_knn_parity(cpu, gpu, P, Q, k, dtype, device=DEV):
    """Same neighbors in the same order, except swaps of near-tied neighbors (within the band)."""
    assert_on_device(gpu, device)
    gpu = to_cpu(gpu)
    assert gpu[0].shape == (len(Q), k) and gpu[1].shape == (len(Q), k)
    assert gpu[0].dtype == cpu[0].dtype and gpu[1].dtype == torch.int64
    if len(Q) == 0:
        return
    tol = REL_TOL[dtype]
    torch.testing.assert_close(gpu[0].double(), cpu[0].double(), rtol=4 * tol, atol=1e-30)
    ic, ig = cpu[1].numpy(), gpu[1].numpy()
    diff = np.argwhere(ic != ig)
    if diff.size == 0:
        return
    dc = np.linalg.norm(P[ic] - Q[:, None, :], axis=2)
    dg = np.linalg.norm(P[ig] - Q[:, None, :], axis=2)
    far = np.abs(dc - dg) > 2 * tol * np.maximum(dc, dg)
    bad = np.argwhere(far & (ic != ig))
    assert bad.size == 0, (f"query {bad[0][0]}: neighbor {bad[0][1]} is {ic[tuple(bad[0])]} on CPU, "
                           f"{ig[tuple(bad[0])]} on CUDA (distances {dc[tuple(bad[0])]!r} vs {dg[tuple(bad[0])]!r})")


def radius_both(points, queries, r, **kw):
    """(CPU result, CUDA result) of radius_search; batch vectors and radius tensors copied too."""
    cpu = ops.radius_search(points, queries, r, **kw)
    gkw = {key: (v.to(DEV) if isinstance(v, torch.Tensor) else v) for key, v in kw.items()}
    gr = r.to(DEV) if isinstance(r, torch.Tensor) else r
    gpu = ops.radius_search(points.to(DEV), queries.to(DEV), gr, **gkw)
    return cpu, gpu


def knn_both(points, queries, k, **kw):
    cpu = ops.knn(points, queries, k, **kw)
    gkw = {key: (v.to(DEV) if isinstance(v, torch.Tensor) else v) for key, v in kw.items()}
    return cpu, ops.knn(points.to(DEV), queries.to(DEV), k, **gkw)


# --------------------------------------------------------------------------- radius parity

SIZES = [(1, 1), (7, 40), (1000, 1000), (20000, 5000), (200_000, 200_000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M", SIZES, ids=[f"N{n}_M{m}" for n, m in SIZES])
def test_radius_uniform_parity(N, M, d, dtype):
    rng = np.random.default_rng(N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    queries, Q = (points.clone(), P) if M == N else as_input(rng.uniform(-0.1, 1.1, (M, d)), dtype)
    r = 0.45 if N < 100 else radius_for(N, d)
    cpu, gpu = radius_both(points, queries, r)
    if N <= 20000:
        check_radius(cpu, P, Q, r, dtype)  # the CPU side itself is right (scipy)
    assert_radius_parity(cpu, gpu, P, Q, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k", [None, 1, 16, 100])
def test_radius_clustered_per_query_parity(k, d, dtype):
    """Blobs of scales 1e-3 .. 10 with a per-query radius of 3x the blob scale: rows of very different lengths."""
    rng = np.random.default_rng(20 + d)
    pts, scale = clustered_cloud(30000, d, rng)
    points, P = as_input(pts, dtype)
    queries, Q = as_input(pts[::3], dtype)
    rq = torch.from_numpy(3.0 * scale[::3]).to(dtype)
    cpu, gpu = radius_both(points, queries, rq, max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, rq.double().numpy(), dtype, max_neighbors=k)
    cpu, gpu = radius_both(points, queries, 0.05, max_neighbors=k)  # fixed radius: tight blobs all inside
    assert_radius_parity(cpu, gpu, P, Q, 0.05, dtype, max_neighbors=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 1, 32, 1000])
def test_radius_long_rows_parity(k, dtype):
    """A radius covering the whole cloud: rows of 5000 neighbors (longer than any per-thread buffer)."""
    rng = np.random.default_rng(21)
    points, P = as_input(uniform_cloud(5000, 3, rng), dtype)
    queries, Q = as_input(rng.random((64, 3)), dtype)
    cpu, gpu = radius_both(points, queries, 2.0, max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, 2.0, dtype, max_neighbors=k)
    if k is None:
        assert torch.equal(gpu[1].cpu(), torch.arange(5000).repeat(64))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half,r", [(2, 6, 5.0), (2, 6, 0.0), (3, 3, 2.0), (3, 3, 0.0)])
@pytest.mark.parametrize("k", [None, 1, 4, 13])
def test_radius_exact_grid_identical(d, half, r, k, dtype):
    """Exact distances (integer grid with duplicates): boundary and tie handling must be identical."""
    P, Q = grid_case(d, half, seed=d * 100 + half)
    points, queries = torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype)
    cpu, gpu = radius_both(points, queries, r, max_neighbors=k)
    assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu())


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half", [(2, 6), (3, 3)])
@pytest.mark.parametrize("k", [1, 6, 27])
def test_knn_exact_grid_identical(d, half, k, dtype):
    P, Q = grid_case(d, half, seed=d * 100 + half)
    points, queries = torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype)
    cpu, gpu = knn_both(points, queries, k)
    assert torch.equal(cpu[1], gpu[1].cpu())
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_translated_cloud_parity(dtype):
    rng = np.random.default_rng(22)
    points, P = as_input(uniform_cloud(20000, 3, rng) + np.array([100.0, -100.0, 50.0]), dtype)
    r = radius_for(20000, 3)
    cpu, gpu = radius_both(points, points, r)
    assert_radius_parity(cpu, gpu, P, P, r, dtype)
    cpu, gpu = knn_both(points, points[:2000], 8)
    assert_knn_parity(cpu, gpu, P, P[:2000], 8, dtype)


# --------------------------------------------------------------------------- batches, real surfaces


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("layout", list(BATCH_LAYOUTS))
@pytest.mark.parametrize("k", [None, 6])
def test_radius_batches_parity(layout, d, k, dtype):
    psz, qsz = BATCH_LAYOUTS[layout]
    rng = np.random.default_rng(23)
    points, P = as_input(uniform_cloud(sum(psz), d, rng), dtype)
    queries, Q = as_input(rng.random((sum(qsz), d)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    r = 0.3 if layout == "tiny" else radius_for(500, d, k=24)
    cpu, gpu = radius_both(points, queries, r, max_neighbors=k, batch_points=bp, batch_queries=bq)
    check_radius(cpu, P, Q, r, dtype, bp=bp.numpy(), bq=bq.numpy(), max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=k)
    bad = np.flatnonzero(bp.numpy()[gpu[1].cpu().numpy()]
                         != bq.numpy()[np.repeat(np.arange(len(Q)), np.diff(gpu[0].cpu().numpy()))])
    assert bad.size == 0, "CUDA pairs cross batches"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_many_batches_parity(dtype):
    """1000 small batches of random sizes (many empty): one block/warp per batch must not be assumed."""
    rng = np.random.default_rng(24)
    psz = rng.integers(0, 60, 1000)
    psz[rng.random(1000) < 0.2] = 0
    qsz = rng.integers(0, 20, 1000)
    points, P = as_input(uniform_cloud(int(psz.sum()), 3, rng), dtype)
    queries, Q = as_input(rng.random((int(qsz.sum()), 3)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    cpu, gpu = radius_both(points, queries, 0.4, max_neighbors=16, batch_points=bp, batch_queries=bq)
    assert_radius_parity(cpu, gpu, P, Q, 0.4, dtype, max_neighbors=16)
    cpu, gpu = radius_both(points, queries, 0.4, batch_points=bp, batch_queries=bq)
    assert_radius_parity(cpu, gpu, P, Q, 0.4, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_car_surfaces_parity(dtype):
    meshes = car_meshes()
    points, P = as_input(np.concatenate(meshes), dtype)
    bp = batch_vector([len(m) for m in meshes])
    r = 0.23  # ~32 neighbors on these cars (median 33rd-neighbor distance)
    cpu, gpu = radius_both(points, points, r, batch_points=bp, batch_queries=bp)
    assert_radius_parity(cpu, gpu, P, P, r, dtype)
    cpu, gpu = radius_both(points, points, r, max_neighbors=10, batch_points=bp, batch_queries=bp)
    assert_radius_parity(cpu, gpu, P, P, r, dtype, max_neighbors=10)
    cpu, gpu = knn_both(points, points, 16, batch_points=bp, batch_queries=bp)
    assert_knn_parity(cpu, gpu, P, P, 16, dtype)


# --------------------------------------------------------------------------- knn parity


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M,k", [(1, 5, 1), (7, 30, 7), (1000, 1000, 16), (20000, 5000, 1), (20000, 5000, 64),
                                   (200_000, 50_000, 16), (300, 50, 300)])
def test_knn_parity(N, M, k, d, dtype):
    rng = np.random.default_rng(25 + N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    queries, Q = (points.clone(), P) if M == N else as_input(rng.uniform(-0.2, 1.2, (M, d)), dtype)
    cpu, gpu = knn_both(points, queries, k)
    if N <= 20000:
        check_knn(cpu, P, Q, k, dtype)
    assert_knn_parity(cpu, gpu, P, Q, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_knn_clustered_batches_parity(dtype):
    psz, qsz = [7000, 3, 13000, 0, 55, 4000], [1000, 0, 500, 0, 3000, 20]
    rng = np.random.default_rng(26)
    points, P = as_input(clustered_cloud(sum(psz), 3, rng)[0], dtype)
    queries, Q = as_input(P[rng.choice(len(P), sum(qsz))] + rng.standard_normal((sum(qsz), 3)) * 1e-3, dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    for k in (1, 16, 55):
        cpu, gpu = knn_both(points, queries, k, batch_points=bp, batch_queries=bq)
        assert_knn_parity(cpu, gpu, P, Q, k, dtype)


# --------------------------------------------------------------------------- multi, KDTree, empty


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 7])
def test_radius_multi_parity(k, dtype):
    rng = np.random.default_rng(27)
    points, P = as_input(uniform_cloud(20000, 3, rng), dtype)
    queries, Q = as_input(rng.random((3000, 3)), dtype)
    r = radius_for(20000, 3)
    radii = [2 * r, 0.0, r / 2, r]
    gp, gq = cuda(points, queries)
    outs = ops.radius_search_multi(gp, gq, radii, max_neighbors=k)
    assert len(outs) == len(radii)
    for rad, out in zip(radii, outs):
        one = ops.radius_search(gp, gq, rad, max_neighbors=k)
        assert torch.equal(out[0], one[0]) and torch.equal(out[1], one[1]), f"radius {rad}: multi != single on CUDA"
        assert_radius_parity(ops.radius_search(points, queries, rad, max_neighbors=k), out, P, Q, rad, dtype,
                             max_neighbors=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("batches", [False, True], ids=["nobatch", "batched"])
def test_kdtree_reuse_parity(batches, dtype):
    rng = np.random.default_rng(28)
    psz, qsz = BATCH_LAYOUTS["empty_middle"]
    n = sum(psz) if batches else 5000
    points, P = as_input(clustered_cloud(n, 3, rng)[0] / 30, dtype)
    bp = batch_vector(psz) if batches else None
    tree_c = ops.KDTree(points, batch=bp)
    tree_g = ops.KDTree(points.to(DEV), batch=None if bp is None else bp.to(DEV))
    for trial in range(3):
        m = sum(qsz) if batches else 700 + trial
        bq = batch_vector(qsz) if batches else None
        queries, Q = as_input(rng.random((m, 3)) * 2 - 1, dtype)
        gq, gbq = cuda(queries, bq)
        r = 0.05 * (trial + 1)
        for k in (None, 5):
            cpu = tree_c.radius(queries, r, max_neighbors=k, batch=bq)
            gpu = tree_g.radius(gq, r, max_neighbors=k, batch=gbq)
            assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=k)
            want = ops.radius_search(points.to(DEV), gq, r, max_neighbors=k,
                                     **({} if bp is None else dict(batch_points=bp.to(DEV), batch_queries=gbq)))
            assert torch.equal(gpu[0], want[0]) and torch.equal(gpu[1], want[1]), "CUDA KDTree != CUDA function"
        multi = tree_g.radius_multi(gq, [0.02, 0.1], batch=gbq)
        for rad, out in zip([0.02, 0.1], multi):
            assert_radius_parity(tree_c.radius(queries, rad, batch=bq), out, P, Q, rad, dtype)
        if not batches:
            assert_knn_parity(tree_c.knn(queries, 9), tree_g.knn(gq, 9), P, Q, 9, dtype)


@pytest.mark.parametrize("N,M", [(0, 0), (0, 5), (5, 0)])
def test_empty_cuda(N, M):
    points, queries = torch.rand(N, 3, device=DEV), torch.rand(M, 3, device=DEV)
    rp, col = ops.radius_search(points, queries, 0.5)
    assert rp.device == points.device and col.device == points.device
    assert torch.equal(rp.cpu(), torch.zeros(M + 1, dtype=torch.long)) and col.numel() == 0
    bp, bq = torch.zeros(N, dtype=torch.long, device=DEV), torch.zeros(M, dtype=torch.long, device=DEV)
    rp, col = ops.radius_search(points, queries, 0.5, max_neighbors=2, batch_points=bp, batch_queries=bq)
    assert torch.equal(rp.cpu(), torch.zeros(M + 1, dtype=torch.long)) and col.numel() == 0
    for rp, col in ops.radius_search_multi(points, queries, [0.1, 0.5]):
        assert torch.equal(rp.cpu(), torch.zeros(M + 1, dtype=torch.long)) and col.numel() == 0
    if N >= 2:
        dist, idx = ops.knn(points, queries, 2)
        assert dist.shape == (0, 2) and idx.shape == (0, 2) and idx.device == points.device


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
    """kd_partition on CUDA: the CPU's leaf sizes, every point in one leaf, tight boxes, halos by brute force.
    (Leaves may differ from the CPU's as sets where coordinates tie at a median.)"""
    from test_partition import _brute_halo, _cloud

    points = _cloud(3000, 3, seed=31, clustered=clustered).to(dtype)
    pc = ops.kd_partition(points, n_parts=13)
    pg = ops.kd_partition(points.to(DEV), n_parts=13, halo_radius=0.05)
    assert pg.perm.device.type == "cuda" and pg.halo_idx.device.type == "cuda"
    assert torch.equal(pc.leaf_ptr, pg.leaf_ptr.cpu())
    part = type(pg)(*(t.cpu() for t in (pg.perm, pg.leaf_ptr, pg.boxes, pg.halo_ptr, pg.halo_idx)), pg.halo_radius)
    assert sorted(part.perm.tolist()) == list(range(len(points)))
    for i in range(part.num_leaves):
        pts = points[part.leaf(i)]
        assert torch.equal(part.boxes[i, 0], pts.min(0).values) and torch.equal(part.boxes[i, 1], pts.max(0).values)
    expected = _brute_halo(points, part, 0.05)
    for i in range(part.num_leaves):
        assert part.halo(i).tolist() == expected[i], f"leaf {i}"
