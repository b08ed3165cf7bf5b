"""The CUDA k-d tree's test cases, written once and run two ways against the CPU ops.

* ``tests/neighbors/test_neighbors_cuda.py`` runs them on a real GPU (``CudaRunner``: inputs
  copied to the device, ``@pytest.mark.cuda``);
* ``tests/neighbors/test_kdtree_emulated.py`` runs them on the ``thrust_host`` emulator
  (``EmulatedRunner``: the same ``.cu`` compiled as host code, tensors stay on the CPU and the
  module's ops are routed to ``torch.ops.pyengine_emu``).

Every case computes the same public ``pyengine.ops`` call on the CPU (the reference, which
tests/neighbors/test_neighbors.py checks against scipy) and through the runner, and compares
them: the same pairs / neighbors, except float near-ties within ``REL_TOL`` of a radius or of
a k-th distance, and identical results where every distance is exact (integer grids,
duplicates) or where both devices compute the same keys (the issue-14 cases: identical points,
overflowing squares, 1e-30 spacing).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from pyengine import ops
from pyengine.ops import neighbors as neighbors_mod

from test_neighbors import (
    BATCH_LAYOUTS,
    REL_TOL,
    as_input,
    batch_vector,
    check_csr,
    check_knn,
    check_radius,
    clustered_cloud,
    csr_rows,
    exact_ball,
    grid_case,
    radius_for,
    uniform_cloud,
)

CPU = torch.device("cpu")
TESTS = pathlib.Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- runners


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
        return type(x)(_to(v, device) for v in x)
    return x


class CudaRunner:
    """The CUDA kernels on a GPU: tensor arguments are copied to the device first."""

    device = torch.device("cuda")

    def call(self, fn, *args, **kw):
        return fn(*(_to(a, self.device) for a in args), **{k: _to(v, self.device) for k, v in kw.items()})

    # A snippet that defines ``call(fn, *args, **kw)`` in a fresh interpreter (for the time guards).
    def prelude(self) -> str:
        return textwrap.dedent("""
            import torch
            from pyengine import ops
            def call(fn, *a, **kw):
                mv = lambda x: x.cuda() if isinstance(x, torch.Tensor) else x
                return fn(*map(mv, a), **{k: mv(v) for k, v in kw.items()})
        """)


class EmulatedRunner:
    """The CUDA sources compiled as host code (``torch.ops.pyengine_emu``): tensors stay on the
    CPU, and ``pyengine.ops``'s neighbor functions call the emulated kernels during ``call``."""

    device = CPU

    def __init__(self, emu):
        self.emu = emu

    def call(self, fn, *args, **kw):
        real = neighbors_mod._ops
        neighbors_mod._ops = self.emu
        try:
            return fn(*args, **kw)
        finally:
            neighbors_mod._ops = real

    def prelude(self) -> str:
        return textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(TESTS)!r})
            import cuda_emulation
            import torch
            from pyengine import ops
            from pyengine.ops import neighbors as _nm
            _emu = cuda_emulation.thrust_host_ops()
            def call(fn, *a, **kw):
                real, _nm._ops = _nm._ops, _emu
                try:
                    return fn(*a, **kw)
                finally:
                    _nm._ops = real
        """)


def radius_both(run, points, queries, r, **kw):
    """(CPU result, runner result) of ``ops.radius_search``."""
    return ops.radius_search(points, queries, r, **kw), run.call(ops.radius_search, points, queries, r, **kw)


def knn_both(run, points, queries, k, **kw):
    return ops.knn(points, queries, k, **kw), run.call(ops.knn, points, queries, k, **kw)


# --------------------------------------------------------------------------- parity checks


def to_cpu(out):
    return tuple(t.cpu() for t in out)


def assert_on_device(out, device):
    for t in out:
        assert t.device.type == device.type, f"result on {t.device}, inputs on {device}"


def assert_identical(cpu, dev):
    """Bit-identical results (indices and distances / row pointers)."""
    dev = to_cpu(dev)
    for c, g in zip(cpu, dev):
        assert c.dtype == g.dtype and c.shape == g.shape, (c.dtype, g.dtype, c.shape, g.shape)
        assert torch.equal(c, g), f"CPU and CUDA differ: {c} vs {g}"


def pair_dists(out, P, Q):
    rp, c = out[0].numpy(), out[1].numpy()
    rows = np.repeat(np.arange(len(rp) - 1), np.diff(rp))
    return rows, c, np.linalg.norm(P[c] - Q[rows], axis=1)


def assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=None, device=CPU):
    """Same pairs on both devices, except pairs within the tie band of the radius or, with
    max_neighbors, of the row's farthest kept distance (a near-tie at the k-th neighbor).
    (``device``: where ``gpu`` must be.)"""
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


def assert_knn_parity(cpu, gpu, P, Q, k, dtype, device=CPU):
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


# --------------------------------------------------------------------------- radius cases


def radius_uniform(run, N, M, d, dtype):
    rng = np.random.default_rng(N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    queries, Q = (points.clone(), P) if M == N else as_input(rng.uniform(-0.1, 1.1, (M, d)), dtype)
    r = 0.45 if N < 100 else radius_for(N, d)
    cpu, gpu = radius_both(run, points, queries, r)
    if N <= 20000:
        check_radius(to_cpu(gpu), P, Q, r, dtype)  # against scipy directly, too
    assert_radius_parity(cpu, gpu, P, Q, r, dtype, device=run.device)


def radius_clustered_per_query(run, n, d, k, dtype):
    """Blobs of scales 1e-3 .. 10, a per-query radius of 3x the blob scale (rows of very different
    lengths), capped at k; then one fixed radius (tight blobs all inside)."""
    rng = np.random.default_rng(20 + d)
    pts, scale = clustered_cloud(n, d, rng)
    points, P = as_input(pts, dtype)
    queries, Q = as_input(pts[::3], dtype)
    rq = torch.from_numpy(3.0 * scale[::3]).to(dtype)
    cpu, gpu = radius_both(run, points, queries, rq, max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, rq.double().numpy(), dtype, max_neighbors=k, device=run.device)
    cpu, gpu = radius_both(run, points, queries, 0.05, max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, 0.05, dtype, max_neighbors=k, device=run.device)


def radius_long_rows(run, n, m, k, dtype):
    """A radius covering the whole cloud: rows of n neighbors (longer than any per-thread buffer)."""
    rng = np.random.default_rng(21)
    points, P = as_input(uniform_cloud(n, 3, rng), dtype)
    queries, Q = as_input(rng.random((m, 3)), dtype)
    cpu, gpu = radius_both(run, points, queries, 2.0, max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, 2.0, dtype, max_neighbors=k, device=run.device)
    if k is None:
        assert torch.equal(gpu[1].cpu(), torch.arange(n).repeat(m))
    else:
        check_radius(to_cpu(gpu), P, Q, 2.0, dtype, max_neighbors=k)


def radius_exact_grid(run, d, half, r, k, dtype):
    """Integer grid, every third point duplicated: exact distances, so boundary points (inside),
    exact ties (lower index first) and duplicates must come out identical to the CPU's."""
    P, Q = grid_case(d, half, seed=d * 100 + half)
    points, queries = torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype)
    cpu, gpu = radius_both(run, points, queries, r, max_neighbors=k)
    assert_identical(cpu, gpu)
    assert csr_rows(to_cpu(gpu)) == exact_ball(P, Q, r, k)


def translated_cloud(run, n, m_knn, dtype):
    """A cloud of extent 1 at distance ~100 from the origin (distances from differences, not norms)."""
    rng = np.random.default_rng(22)
    points, P = as_input(uniform_cloud(n, 3, rng) + np.array([100.0, -100.0, 50.0]), dtype)
    r = radius_for(n, 3)
    cpu, gpu = radius_both(run, points, points, r)
    assert_radius_parity(cpu, gpu, P, P, r, dtype, device=run.device)
    cpu, gpu = knn_both(run, points, points[:m_knn], 8)
    assert_knn_parity(cpu, gpu, P, P[:m_knn], 8, dtype, device=run.device)


def radius_multi(run, n, m, k, dtype):
    rng = np.random.default_rng(27)
    points, P = as_input(uniform_cloud(n, 3, rng), dtype)
    queries, Q = as_input(rng.random((m, 3)), dtype)
    r = radius_for(n, 3)
    radii = [2 * r, 0.0, r / 2, r]
    outs = run.call(ops.radius_search_multi, points, queries, radii, max_neighbors=k)
    assert len(outs) == len(radii)
    for rad, out in zip(radii, outs):
        one = run.call(ops.radius_search, points, queries, rad, max_neighbors=k)
        assert torch.equal(out[0], one[0]) and torch.equal(out[1], one[1]), f"radius {rad}: multi != single"
        assert_radius_parity(ops.radius_search(points, queries, rad, max_neighbors=k), out, P, Q, rad, dtype,
                             max_neighbors=k, device=run.device)


# --------------------------------------------------------------------------- batched clouds


def radius_batches(run, layout, d, k, dtype):
    psz, qsz = BATCH_LAYOUTS[layout]
    rng = np.random.default_rng(23)
    points, P = as_input(uniform_cloud(sum(psz), d, rng), dtype)
    queries, Q = as_input(rng.random((sum(qsz), d)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    r = 0.3 if layout == "tiny" else radius_for(500, d, k=24)
    cpu, gpu = radius_both(run, points, queries, r, max_neighbors=k, batch_points=bp, batch_queries=bq)
    check_radius(to_cpu(gpu), P, Q, r, dtype, bp=bp.numpy(), bq=bq.numpy(), max_neighbors=k)
    assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=k, device=run.device)


def many_batches(run, dtype):
    """1000 small batches of random sizes (many empty): one block/warp per batch must not be assumed."""
    rng = np.random.default_rng(24)
    psz = rng.integers(0, 60, 1000)
    psz[rng.random(1000) < 0.2] = 0
    qsz = rng.integers(0, 20, 1000)
    points, P = as_input(uniform_cloud(int(psz.sum()), 3, rng), dtype)
    queries, Q = as_input(rng.random((int(qsz.sum()), 3)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    for k in (16, None):
        cpu, gpu = radius_both(run, points, queries, 0.4, max_neighbors=k, batch_points=bp, batch_queries=bq)
        assert_radius_parity(cpu, gpu, P, Q, 0.4, dtype, max_neighbors=k, device=run.device)
    cpu, gpu = knn_both(run, points, queries[:0], 1, batch_points=bp, batch_queries=bq[:0])
    assert gpu[0].shape == (0, 1) and gpu[1].shape == (0, 1)


def knn_clustered_batches(run, psz, qsz, dtype):
    rng = np.random.default_rng(26)
    points, P = as_input(clustered_cloud(sum(psz), 3, rng)[0], dtype)
    queries, Q = as_input(P[rng.choice(len(P), sum(qsz))] + rng.standard_normal((sum(qsz), 3)) * 1e-3, dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    for k in (1, 16, 55):
        cpu, gpu = knn_both(run, points, queries, k, batch_points=bp, batch_queries=bq)
        if len(P) <= 20000:
            check_knn(to_cpu(gpu), P, Q, k, dtype, bp=bp.numpy(), bq=bq.numpy())
        assert_knn_parity(cpu, gpu, P, Q, k, dtype, device=run.device)


# --------------------------------------------------------------------------- knn


def knn_uniform(run, N, M, k, d, dtype):
    rng = np.random.default_rng(25 + N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    queries, Q = (points.clone(), P) if M == N else as_input(rng.uniform(-0.2, 1.2, (M, d)), dtype)
    cpu, gpu = knn_both(run, points, queries, k)
    if N <= 20000:
        check_knn(to_cpu(gpu), P, Q, k, dtype)
    assert_knn_parity(cpu, gpu, P, Q, k, dtype, device=run.device)


def knn_exact_grid(run, d, half, k, dtype):
    P, Q = grid_case(d, half, seed=d * 100 + half)
    points, queries = torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype)
    assert_identical(*knn_both(run, points, queries, k))


def knn_three_locations(run, dtype):
    """Every point at one of three locations: ties everywhere, resolved by index on both devices;
    the distances are computed the same way (in double), so the results are identical."""
    base = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=dtype)
    points = base[torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(5))]
    queries = torch.rand(40, 3, dtype=dtype, generator=torch.Generator().manual_seed(6))
    for k in (9, 40):  # a per-thread heap, and k > 32: the heap in the output rows (float32: a double scratch)
        assert_identical(*knn_both(run, points, queries, k))
    assert_identical(*radius_both(run, points, queries, 1.2, max_neighbors=5))
    assert_identical(*radius_both(run, points, queries, 1.2, max_neighbors=77))


# --------------------------------------------------------------------------- issue 14: identical points


def knn_identical_points(run, n_dup, d, leaf, dtype):
    """n_dup copies of one point among 300 others on an integer grid (exact distances): the k
    nearest of a query at the copies are the k lowest-index copies, at distance 0; the CUDA walk
    takes the copies leaf by leaf in index order, as the CPU's, so the answers are identical."""
    g = torch.Generator().manual_seed(3)
    others = torch.randint(-20, 20, (300, d), generator=g).to(dtype)
    dup = torch.full((n_dup, d), 3.0, dtype=dtype)
    points = torch.cat([others[:150], dup, others[150:]])
    queries = torch.cat([torch.full((4, d), 3.0, dtype=dtype), others[:40], torch.full((3, d), 40.0, dtype=dtype)])
    tree_c = ops.KDTree(points, leaf_size=leaf)
    tree_g = run.call(ops.KDTree, points, leaf_size=leaf)
    for k in (1, 7, 32, 33, 64):
        cpu, gpu = tree_c.knn(queries, k), run.call(tree_g.knn, queries, k)
        assert_identical(cpu, gpu)
        assert torch.equal(gpu[1][:4].cpu(), torch.arange(150, 150 + k).expand(4, k))
    for cap in (1, 10, 33):
        assert_identical(tree_c.radius(queries, 2.5, max_neighbors=cap),
                         run.call(tree_g.radius, queries, 2.5, max_neighbors=cap))
        assert_identical(tree_c.radius_multi(queries, [0.0, 2.5], max_neighbors=cap)[0],
                         run.call(tree_g.radius_multi, queries, [0.0, 2.5], max_neighbors=cap)[0])


def identical_points_linear_time(run, n, timeout):
    """n identical points, every point a query: kNN (k = 8, and k = 40 past the per-thread heap)
    and capped radius search. A per-point descent costs n^2 distance tests (hours at 1M on a GPU,
    minutes at 100k emulated); the duplicate-aware walk is linear. Run in a child process with a
    timeout far above what the linear walk needs, so a regression fails instead of hanging."""
    code = run.prelude() + textwrap.dedent(f"""
        p = torch.full(({n}, 3), 0.25)
        d, i = call(ops.knn, p, p, 8)
        assert (d == 0).all() and (i.cpu() == torch.arange(8)).all()
        d, i = call(ops.knn, p, p[:2000], 40)
        assert (d == 0).all() and (i.cpu() == torch.arange(40)).all()
        rp, col = call(ops.radius_search, p, p, 0.1, max_neighbors=8)
        assert (rp.diff() == 8).all() and (col.view(-1, 8).cpu() == torch.arange(8)).all()
        q = torch.full(({n}, 3), 1.0)
        d, i = call(ops.knn, p, q, 4)
        assert (i.cpu() == torch.arange(4)).all()
        print("ok")
    """)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


# --------------------------------------------------------------------------- issue 14: overflow-safe distances


def float32_radius_square_overflows(run):
    """(2e19)^2 overflows float32: compared in double, only the points within 2e19 are found."""
    points = torch.tensor([[0.0, 0.0, 0.0], [1e30, 0.0, 0.0], [-3e19, 0.0, 0.0], [1.9e19, 0.0, 0.0]])
    q = torch.zeros(1, 3)
    for kw in ({}, {"max_neighbors": 10}, {"max_neighbors": 1}):
        cpu, gpu = radius_both(run, points, q, 2e19, **kw)
        assert_identical(cpu, gpu)
    assert run.call(ops.radius_search, points, q, 2e19)[1].tolist() == [0, 3]
    (rp, col), = run.call(ops.radius_search_multi, points, q, [2e19])
    assert col.tolist() == [0, 3]
    with pytest.raises(ValueError, match="radius"):
        run.call(ops.radius_search, points, q, 1e39)


# (dtype, scale): float32 squares overflow from ~1.8e19, float64 ones from ~1.3e154 (the CPU then
# uses long double, the CUDA code its scaled distances).
FAR_CASES = [(torch.float32, 1e19), (torch.float32, 1e38), (torch.float64, 1e160), (torch.float64, 1e300)]
# Clouds at a scale: their nearest distances stay below the dtype's max.
FAR_CLOUDS = [(torch.float32, 1e20), (torch.float32, 1e37), (torch.float64, 1e160), (torch.float64, 1e300)]


def far_points_finite(run, dtype, scale):
    points = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, -0.75]], dtype=dtype) * scale
    q = torch.tensor([[0.25, 0.0]], dtype=dtype) * scale
    cpu, gpu = knn_both(run, points, q, 3)
    assert torch.isfinite(gpu[0]).all(), gpu[0]
    assert gpu[1].tolist() == [[0, 1, 2]]
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=2 * torch.finfo(dtype).eps, atol=0)
    if dtype == torch.float32:  # the same double arithmetic on both devices
        assert_identical(cpu, gpu)
    for kw in ({}, {"max_neighbors": 1}):
        cpu, gpu = radius_both(run, points, q, 0.3 * scale, **kw)
        assert_identical(cpu, gpu)
    assert run.call(ops.radius_search, points, q, 0.3 * scale)[1].tolist() == [0, 1]


def far_cloud_parity(run, dtype, scale, n=3000, m=500):
    """A random cloud (and a clustered one, with per-query radii) at a huge scale: the same
    neighbors as the CPU (float32: identical; float64 beyond 1e150: within the tie band, the
    CPU comparing long double squares and the CUDA code scaled doubles)."""
    rng = np.random.default_rng(41)
    x = np.concatenate([uniform_cloud(n // 2, 3, rng) * 2 - 1, clustered_cloud(n - n // 2, 3, rng)[0] / 30])
    points, P = as_input(x * scale, dtype)
    queries, Q = as_input((rng.random((m, 3)) * 2 - 1) * scale, dtype)
    r = 0.2 * scale
    for k in (None, 5, 40):
        cpu, gpu = radius_both(run, points, queries, r, max_neighbors=k)
        if dtype == torch.float32:
            assert_identical(cpu, gpu)
        else:
            assert_radius_parity(cpu, gpu, P / scale, Q / scale, 0.2, dtype, max_neighbors=k, device=run.device)
    for k in (1, 16, 40):
        cpu, gpu = knn_both(run, points, queries, k)
        assert torch.isfinite(gpu[0]).all()
        if dtype == torch.float32:
            assert_identical(cpu, gpu)
        else:
            assert_knn_parity((cpu[0] / scale, cpu[1]), (gpu[0] / scale, gpu[1]), P / scale, Q / scale, k, dtype,
                              device=run.device)
    outs = run.call(ops.radius_search_multi, points, queries, [0.1 * scale, r])
    for rad, out in zip([0.1 * scale, r], outs):
        cpu = ops.radius_search(points, queries, rad)
        if dtype == torch.float32:
            assert_identical(cpu, out)
        else:
            assert_radius_parity(cpu, out, P / scale, Q / scale, rad / scale, dtype, device=run.device)


def tiny_spacing(run, dtype):
    """Points 1e-30 apart (float32 squares underflow; compared in double they are ranked), and
    float64 points 1e-300 apart beside a point at 1e200 (the CPU's long double case: the squares
    underflow and overflow a double; the CUDA code's scaled distances rank them)."""
    points = torch.tensor([[3e-30, 0.0], [1e-30, 0.0], [2e-30, 0.0], [0.0, 5e-30]], dtype=dtype)
    cpu, gpu = knn_both(run, points, torch.zeros(1, 2, dtype=dtype), 4)
    assert gpu[1].tolist() == [[1, 2, 0, 3]]
    assert_identical(cpu, gpu)
    rng = np.random.default_rng(43)
    x = rng.random((400, 2)) * 1e-28
    points, queries = torch.from_numpy(x).to(dtype), torch.from_numpy(x[:50] + 1e-30).to(dtype)
    assert_identical(*knn_both(run, points, queries, 6))
    assert_identical(*radius_both(run, points, queries, 1e-29, max_neighbors=4))
    if dtype == torch.float64:
        points = torch.tensor([[3e-300, 0.0], [1e-300, 0.0], [2e-300, 0.0], [1e200, 1e200], [0.0, -1.5e-300]],
                              dtype=dtype)
        q = torch.zeros(1, 2, dtype=dtype)
        cpu, gpu = knn_both(run, points, q, 5)
        assert gpu[1].tolist() == [[1, 4, 2, 0, 3]] and cpu[1].tolist() == gpu[1].tolist()
        torch.testing.assert_close(gpu[0], cpu[0], rtol=4e-16, atol=0)
        assert run.call(ops.radius_search, points, q, 2.5e-300)[1].tolist() == [1, 2, 4]


# --------------------------------------------------------------------------- issue 14: tree structure


def _corrupt_tree(tree, how):
    nodes = tree.nodes.clone()
    inner = [i for i in range(nodes.shape[0]) if nodes[i, 2] >= 0]
    if how == "same children":
        nodes[0, 3] = nodes[0, 2]
    elif how == "shared subtree":  # two different inner nodes point at the same child
        nodes[inner[2], 2] = nodes[inner[1], 2]
    elif how == "overlapping ranges":
        leaf = next(i for i in range(nodes.shape[0]) if nodes[i, 2] < 0)
        nodes[leaf, 1] += 1
    elif how == "orphan":  # a root that skips the first inner node: its subtree is never reached
        tree.roots = tree.roots.new_tensor([inner[1]])
    elif how == "cycle":  # an inner node's upper child back to the root
        nodes[inner[-1], 3] = 0
    elif how == "swapped children":  # the upper half first: not a split of the range in order
        nodes[0, 2], nodes[0, 3] = nodes[0, 3].clone(), nodes[0, 2].clone()
    else:
        raise ValueError(how)
    tree.nodes = nodes
    return tree


CORRUPTIONS = ["same children", "shared subtree", "overlapping ranges", "orphan", "cycle", "swapped children"]


def corrupt_tree_refused(run, how):
    """A tree with a node reached twice, never, or children not splitting the range is refused
    by the CUDA queries as by the CPU's (ValueError naming the tree), never answered."""
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(7))
    tree_c = _corrupt_tree(ops.KDTree(points, leaf_size=4), how)
    tree_g = _corrupt_tree(run.call(ops.KDTree, points, leaf_size=4), how)  # the same layout, so the same corruption
    for name, args, kw in (("knn", (3,), {}), ("knn", (40,), {}), ("radius", (0.2,), {}),
                           ("radius", (0.2,), {"max_neighbors": 3}), ("radius_multi", ([0.1, 0.2],), {})):
        with pytest.raises(ValueError, match="tree"):
            getattr(tree_c, name)(points[:5], *args, **kw)
        with pytest.raises(ValueError, match="tree"):
            run.call(getattr(tree_g, name), points[:5], *args, **kw)


def empty_child_trees(run):
    """Hand-made trees with empty child ranges (kdtree_build never makes them): a valid one is
    answered as on the CPU, and an unreachable cycle of empty-range nodes is refused (the
    CUDA code checks these trees with the CPU's walk, on a host copy)."""
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    perm = torch.arange(4)
    # root [0, 4): left [0, 0) (empty leaf), right [0, 4) split into [0, 2) and [2, 4)
    nodes = torch.tensor([[0, 4, 1, 2], [0, 0, -1, -1], [0, 4, 3, 4], [0, 2, -1, -1], [2, 4, -1, -1]])
    box = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    bounds = torch.stack([box, torch.zeros(2, 2, dtype=torch.float64), box,
                          torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64),
                          torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)])
    roots = torch.tensor([0])
    q = torch.tensor([[0.9, 0.2], [0.1, 0.8]], dtype=torch.float64)
    qp = torch.tensor([0, 2])
    P = torch.ops.pyengine
    E = run.emu if hasattr(run, "emu") else P

    def both(op, *args):
        ref = getattr(P, op)(points, perm, nodes_, bounds_, roots_, q, qp, *args)
        got = run.call(getattr(E, op), points, perm, nodes_, bounds_, roots_, q, qp, *args)
        return ref, got

    nodes_, bounds_, roots_ = nodes, bounds, roots
    cpu, gpu = both("kdtree_knn", 3)
    assert_identical(cpu, gpu)
    r = torch.full((2,), 0.95, dtype=torch.float64)
    cpu, gpu = both("kdtree_radius", r, -1)
    assert_identical(cpu, gpu)
    # Four more nodes: a cycle 5 -> 6 -> 5 through children of the same range (their siblings
    # empty), reached from nowhere. Every node has one parent and every split is in order, so
    # only a walk from the roots tells.
    nodes_ = torch.cat([nodes, torch.tensor([[0, 2, 7, 6], [0, 2, 8, 5], [0, 0, -1, -1], [0, 0, -1, -1]])])
    bounds_ = torch.cat([bounds, bounds[3:4].expand(4, 2, 2)])
    for op, args in (("kdtree_knn", (3,)), ("kdtree_radius", (r, -1))):
        with pytest.raises(ValueError, match="tree"):
            getattr(P, op)(points, perm, nodes_, bounds_, roots_, q, qp, *args)
        with pytest.raises(ValueError, match="tree"):
            run.call(getattr(E, op), points, perm, nodes_, bounds_, roots_, q, qp, *args)


# --------------------------------------------------------------------------- KDTree, partition, empty


def kdtree_reuse(run, batches, dtype, n=3000, trials=2):
    """One tree built by the CUDA code, queried several times (radius, capped, multi, knn): the
    CPU's layout, the CPU's answers, and the same answers as the one-shot functions."""
    rng = np.random.default_rng(28)
    psz, qsz = BATCH_LAYOUTS["empty_middle"]
    n = sum(psz) if batches else n
    points, P = as_input(clustered_cloud(n, 3, rng)[0] / 30, dtype)
    bp = batch_vector(psz) if batches else None
    tree_c = ops.KDTree(points, batch=bp)
    tree_g = run.call(ops.KDTree, points, batch=bp)
    assert torch.equal(tree_c.nodes, tree_g.nodes.cpu()) and torch.equal(tree_c.roots, tree_g.roots.cpu())
    for trial in range(trials):
        m = sum(qsz) if batches else 700 + trial
        bq = batch_vector(qsz) if batches else None
        queries, Q = as_input(rng.random((m, 3)) * 2 - 1, dtype)
        r = 0.05 * (trial + 1)
        for k in (None, 5):
            cpu = tree_c.radius(queries, r, max_neighbors=k, batch=bq)
            gpu = run.call(tree_g.radius, queries, r, max_neighbors=k, batch=bq)
            assert_radius_parity(cpu, gpu, P, Q, r, dtype, max_neighbors=k, device=run.device)
            bkw = {} if bp is None else dict(batch_points=bp, batch_queries=bq)
            want = run.call(ops.radius_search, points, queries, r, max_neighbors=k, **bkw)
            assert torch.equal(gpu[0], want[0]) and torch.equal(gpu[1], want[1]), "CUDA KDTree != CUDA function"
        multi = run.call(tree_g.radius_multi, queries, [0.02, 0.1], batch=bq)
        for rad, out in zip([0.02, 0.1], multi):
            assert_radius_parity(tree_c.radius(queries, rad, batch=bq), out, P, Q, rad, dtype, device=run.device)
        if not batches:
            assert_knn_parity(tree_c.knn(queries, 9), run.call(tree_g.knn, queries, 9), P, Q, 9, dtype,
                              device=run.device)


def partition(run, dtype, clustered):
    """kd_partition on the CUDA tree: the CPU's leaf sizes, every point in one leaf, tight boxes,
    halos by brute force. (Leaves may differ from the CPU's as sets where coordinates tie at a median.)"""
    from test_partition import _brute_halo, _cloud

    points = _cloud(3000, 3, seed=31, clustered=clustered).to(dtype)
    pc = ops.kd_partition(points, n_parts=13)
    pg = run.call(ops.kd_partition, points, n_parts=13, halo_radius=0.05)
    assert pg.perm.device.type == run.device.type and pg.halo_idx.device.type == run.device.type
    assert torch.equal(pc.leaf_ptr, pg.leaf_ptr.cpu())
    part = type(pg)(*(t.cpu() for t in (pg.perm, pg.leaf_ptr, pg.boxes, pg.halo_ptr, pg.halo_idx)), pg.halo_radius)
    assert sorted(part.perm.tolist()) == list(range(len(points)))
    for i in range(part.num_leaves):
        pts = points[part.leaf(i)]
        assert torch.equal(part.boxes[i, 0], pts.min(0).values) and torch.equal(part.boxes[i, 1], pts.max(0).values)
    expected = _brute_halo(points, part, 0.05)
    for i in range(part.num_leaves):
        assert part.halo(i).tolist() == expected[i], f"leaf {i}"


def empty(run, N, M):
    points, queries = torch.rand(N, 3), torch.rand(M, 3)
    none = torch.zeros(M + 1, dtype=torch.long)
    rp, col = run.call(ops.radius_search, points, queries, 0.5)
    assert rp.device.type == run.device.type and col.device.type == run.device.type
    assert torch.equal(rp.cpu(), none) and col.numel() == 0
    bp, bq = torch.zeros(N, dtype=torch.long), torch.zeros(M, dtype=torch.long)
    rp, col = run.call(ops.radius_search, points, queries, 0.5, max_neighbors=2, batch_points=bp, batch_queries=bq)
    assert torch.equal(rp.cpu(), none) and col.numel() == 0
    for rp, col in run.call(ops.radius_search_multi, points, queries, [0.1, 0.5]):
        assert torch.equal(rp.cpu(), none) and col.numel() == 0
    if N >= 2:
        dist, idx = run.call(ops.knn, points, queries, 2)
        assert dist.shape == (0, 2) and idx.shape == (0, 2) and idx.device.type == run.device.type
