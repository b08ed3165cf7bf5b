"""CPU tests of the neighbor search ops: radius_search, radius_search_multi, knn, KDTree.

Every result is compared with ``scipy.spatial.cKDTree`` run in float64 on the same
coordinates (the float32 inputs rounded first, so both sides see the same points), never
with pyengine itself; only the cross-API tests (multi vs single radius, KDTree vs the
functions, threads, strides) compare pyengine with pyengine, and those must agree exactly.

Tie model. pyengine computes distances in the input dtype, the reference in float64, so a
pair whose exact distance is within a relative ``REL_TOL[dtype]`` of the radius may fall
either way; every other pair must be classified as the reference does. The same band
applies to "nearest" comparisons (max_neighbors, knn): a kept neighbor may be farther than
a dropped one by at most the band. Exact tie rules (``<=`` radius, ties -> lower index,
duplicates) are checked on integer grids, where every distance is exact in both dtypes.
"""

from __future__ import annotations

import itertools
import math
import pathlib

import numpy as np
import pytest
import torch

from pyengine import ops

cKDTree = pytest.importorskip("scipy.spatial").cKDTree

DTYPES = [torch.float32, torch.float64]
DIMS = [2, 3]
# Relative band around the radius (and around a k-th distance) where float rounding may
# decide either way: ~70 float32 ulps, ~9000 float64 ulps.
REL_TOL = {torch.float32: 4e-6, torch.float64: 1e-12}
CAR_DIR = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "shapenet_car_mini"


def dtype_id(x):
    return str(x).replace("torch.", "")


# --------------------------------------------------------------------------- inputs


def as_input(x64: np.ndarray, dtype) -> tuple[torch.Tensor, np.ndarray]:
    """(tensor of dtype, its exact float64 numpy copy): the reference sees the rounded points."""
    t = torch.from_numpy(np.ascontiguousarray(x64, dtype=np.float64)).to(dtype)
    return t, t.double().numpy()


def radius_for(n: int, d: int, k: float = 32.0, volume: float = 1.0) -> float:
    """Radius that holds ~k of n points spread uniformly over `volume` (unit cube/square)."""
    if d == 3:
        return (3.0 * k * volume / (4.0 * math.pi * n)) ** (1.0 / 3.0)
    return math.sqrt(k * volume / (math.pi * n))


def uniform_cloud(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((n, d))


# Gaussian blobs whose scales span five decades: a kd-tree's splits must adapt to each.
BLOB_SCALES = np.array([1e-3, 1e-2, 1e-1, 1.0, 10.0])


def clustered_cloud(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(points (n, d), blob scale of every point); unequal blob sizes, points in random order."""
    centers = rng.uniform(-30.0, 30.0, (len(BLOB_SCALES), d))
    weights = np.array([0.35, 0.25, 0.2, 0.15, 0.05])
    blob = rng.choice(len(BLOB_SCALES), size=n, p=weights)
    pts = centers[blob] + rng.standard_normal((n, d)) * BLOB_SCALES[blob, None]
    return pts, BLOB_SCALES[blob]


def batch_vector(sizes) -> torch.Tensor:
    """Sorted torch-geometric batch vector: `sizes[b]` entries equal to b."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.as_tensor(sizes, dtype=torch.long))


def load_ply_vertices(path: pathlib.Path) -> np.ndarray:
    """Vertices (V, 3) float64 of a binary little-endian PLY whose vertices are x, y, z (float or double)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        pytest.skip(f"{path}: not a binary little-endian PLY")
    nv, props, in_vertex = 0, [], False
    for line in header:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            nv, in_vertex = int(parts[2]), True
        elif parts[:1] == ["element"]:
            in_vertex = False
        elif parts[:1] == ["property"] and in_vertex:
            props.append((parts[2], {"double": "<f8", "float": "<f4", "float64": "<f8", "float32": "<f4"}[parts[1]]))
    if [p[0] for p in props[:3]] != ["x", "y", "z"]:
        pytest.skip(f"{path}: unexpected vertex layout {props}")
    v = np.frombuffer(data, dtype=np.dtype(props), count=nv, offset=end)
    return np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)


def car_meshes() -> list[np.ndarray]:
    if not CAR_DIR.is_dir():
        pytest.skip(f"shared data {CAR_DIR} not present")
    meshes = [load_ply_vertices(p) for p in sorted(CAR_DIR.glob("*/tri_mesh.ply"))]
    if not meshes:
        pytest.skip(f"no */tri_mesh.ply under {CAR_DIR}")
    return meshes


# --------------------------------------------------------------------------- references (cKDTree, float64)


def _batch_bounds(bp: np.ndarray | None, bq: np.ndarray | None, n: int, m: int):
    """[(point start, point end, query start, query end)] per batch id (sorted batch vectors)."""
    if bp is None:
        return [(0, n, 0, m)]
    nb = int(max(bp.max(initial=-1), bq.max(initial=-1))) + 1
    ps, qs = np.searchsorted(bp, np.arange(nb + 1)), np.searchsorted(bq, np.arange(nb + 1))
    return [(ps[b], ps[b + 1], qs[b], qs[b + 1]) for b in range(nb)]


def ref_radius(P, Q, r, bp=None, bq=None):
    """Exact CSR (row_ptr, col) numpy of the balls, from cKDTree.query_ball_point(return_sorted=True)."""
    m = len(Q)
    r = np.broadcast_to(np.asarray(r, dtype=np.float64), (m,))
    lens, cols = np.zeros(m, dtype=np.int64), []
    for p0, p1, q0, q1 in _batch_bounds(bp, bq, len(P), m):
        if p1 == p0 or q1 == q0:
            continue
        res = cKDTree(P[p0:p1]).query_ball_point(Q[q0:q1], r[q0:q1], return_sorted=True)
        lens[q0:q1] = [len(x) for x in res]
        cols.append(np.fromiter(itertools.chain.from_iterable(res), np.int64, count=int(lens[q0:q1].sum())) + p0)
    row_ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return row_ptr, (np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64))


def ref_knn(P, Q, k, bp=None, bq=None):
    """(dist (M, k), idx (M, k)) float64 / int64 from cKDTree.query, per batch."""
    m = len(Q)
    dist, idx = np.zeros((m, k)), np.zeros((m, k), dtype=np.int64)
    for p0, p1, q0, q1 in _batch_bounds(bp, bq, len(P), m):
        if q1 == q0:
            continue
        d, i = cKDTree(P[p0:p1]).query(Q[q0:q1], k=k)
        dist[q0:q1], idx[q0:q1] = np.reshape(d, (-1, k)), np.reshape(i, (-1, k)) + p0
    return dist, idx


# --------------------------------------------------------------------------- checks


def _np(t):
    return None if t is None else t.numpy()


def check_csr(out, m: int, n: int):
    """Structure of a radius result; returns (row_ptr, col, row of every pair) numpy."""
    assert isinstance(out, tuple) and len(out) == 2, type(out)
    row_ptr, col = out
    assert row_ptr.dtype == torch.int64 and col.dtype == torch.int64, (row_ptr.dtype, col.dtype)
    assert row_ptr.device.type == "cpu" and col.device.type == "cpu"
    assert row_ptr.shape == (m + 1,), (row_ptr.shape, m)
    assert col.dim() == 1
    rp, c = row_ptr.numpy(), col.numpy()
    assert rp[0] == 0 and np.all(np.diff(rp) >= 0) and rp[-1] == len(c), rp
    assert len(c) == 0 or (c.min() >= 0 and c.max() < n)
    rows = np.repeat(np.arange(m), np.diff(rp))
    same = rows[1:] == rows[:-1]
    bad = np.flatnonzero(same & (c[1:] <= c[:-1]))
    assert bad.size == 0, f"row {rows[bad[0]]} not strictly ascending: {c[rp[rows[bad[0]]]:rp[rows[bad[0]] + 1]]}"
    return rp, c, rows


def check_radius(out, P, Q, r, dtype, *, bp=None, bq=None, max_neighbors=None, min_mean_degree=0.0):
    """Check a radius_search result against cKDTree in float64 (tie band REL_TOL[dtype]).

    Without max_neighbors: the pairs equal the reference's except pairs within the band.
    With max_neighbors=k: at most k per row, all within the radius (band), at least
    min(k, #surely-inside) per row, every surely-inside pair kept when a row has < k, and
    no dropped surely-inside neighbor nearer than a kept one (beyond the band).
    Returns the number of result pairs.
    """
    m, n = len(Q), len(P)
    rp, c, rows = check_csr(out, m, n)
    r = np.broadcast_to(np.asarray(r, dtype=np.float64), (m,))
    tol = REL_TOL[dtype]
    if bp is not None:
        bad = np.flatnonzero(bp[c] != bq[rows])
        assert bad.size == 0, f"pair (query {rows[bad[0]]}, point {c[bad[0]]}) crosses batches"
    d = np.linalg.norm(P[c] - Q[rows], axis=1)
    bad = np.flatnonzero(d > r[rows] * (1 + tol))
    assert bad.size == 0, (f"{bad.size} pairs outside the radius, e.g. query {rows[bad[0]]} point {c[bad[0]]}: "
                           f"dist {d[bad[0]]!r} > radius {r[rows[bad[0]]]!r}")
    ref_rp, ref_c = ref_radius(P, Q, r, bp, bq)
    ref_rows = np.repeat(np.arange(m), np.diff(ref_rp))
    ref_d = np.linalg.norm(P[ref_c] - Q[ref_rows], axis=1)
    missing = ~np.isin(ref_rows * max(n, 1) + ref_c, rows * max(n, 1) + c)
    certain = ref_d < r[ref_rows] * (1 - tol)
    lens = np.diff(rp)
    if max_neighbors is None:
        bad = np.flatnonzero(missing & certain)
        assert bad.size == 0, (f"{bad.size} neighbors missing, e.g. query {ref_rows[bad[0]]} point {ref_c[bad[0]]}: "
                               f"dist {ref_d[bad[0]]!r} < radius {r[ref_rows[bad[0]]]!r}")
    else:
        k = max_neighbors
        assert lens.max(initial=0) <= k, f"a row has {lens.max()} > max_neighbors={k} entries"
        n_certain = np.bincount(ref_rows[certain], minlength=m)
        bad = np.flatnonzero(lens < np.minimum(k, n_certain))
        assert bad.size == 0, f"query {bad[0]}: {lens[bad[0]]} kept of {n_certain[bad[0]]} in radius, max_neighbors={k}"
        dropped = missing & certain
        bad = np.flatnonzero(dropped & (lens[ref_rows] < k))
        assert bad.size == 0, f"query {ref_rows[bad[0]]} keeps < {k} but drops in-radius point {ref_c[bad[0]]}"
        kept_max = np.full(m, -np.inf)
        np.maximum.at(kept_max, rows, d)
        drop_min = np.full(m, np.inf)
        np.minimum.at(drop_min, ref_rows[dropped], ref_d[dropped])
        bad = np.flatnonzero(kept_max > drop_min * (1 + 2 * tol))
        assert bad.size == 0, (f"query {bad[0]}: kept a neighbor at {kept_max[bad[0]]!r} but dropped one at "
                               f"{drop_min[bad[0]]!r} (max_neighbors={k} must keep the nearest)")
    if m:
        assert len(c) >= min_mean_degree * m, f"test too weak: mean degree {len(c) / m:.1f} < {min_mean_degree}"
    return len(c)


def check_knn(out, P, Q, k, dtype, *, bp=None, bq=None):
    """Check knn (dist, idx) against cKDTree.query in float64, ties within REL_TOL[dtype] aside."""
    m, n = len(Q), len(P)
    assert isinstance(out, tuple) and len(out) == 2, type(out)
    dist, idx = out
    assert dist.shape == (m, k) and idx.shape == (m, k), (dist.shape, idx.shape, (m, k))
    assert idx.dtype == torch.int64 and dist.dtype == dtype, (idx.dtype, dist.dtype)
    if m == 0:
        return
    D, Idx = dist.double().numpy(), idx.numpy()
    assert Idx.min() >= 0 and Idx.max() < n
    if bp is not None:
        bad = np.argwhere(bp[Idx] != bq[:, None])
        assert bad.size == 0, f"query {bad[0][0]}: neighbor {Idx[tuple(bad[0])]} from another batch"
    srt = np.sort(Idx, axis=1)
    bad = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    assert bad.size == 0, f"query {bad[0]}: repeated neighbor in {Idx[bad[0]]}"
    tol = REL_TOL[dtype]
    d_true = np.linalg.norm(P[Idx] - Q[:, None, :], axis=2)
    bad = np.argwhere(np.abs(D - d_true) > 2 * tol * d_true + 1e-300)
    assert bad.size == 0, f"query {bad[0][0]}: reported distance {D[tuple(bad[0])]!r} != true {d_true[tuple(bad[0])]!r}"
    bad = np.argwhere(D[:, 1:] < D[:, :-1])
    assert bad.size == 0, f"query {bad[0][0]}: distances not ascending {D[bad[0][0]]}"
    ref_d, _ = ref_knn(P, Q, k, bp, bq)
    bad = np.argwhere(np.abs(d_true - ref_d) > 2 * tol * ref_d + 1e-300)
    assert bad.size == 0, (f"query {bad[0][0]}: neighbor {bad[0][1]} at {d_true[tuple(bad[0])]!r}, cKDTree's at "
                           f"{ref_d[tuple(bad[0])]!r} (idx {Idx[bad[0][0]]})")
    # exact ties (same true and reported distance): lower index first
    tie = (D[:, 1:] == D[:, :-1]) & (d_true[:, 1:] == d_true[:, :-1])
    bad = np.argwhere(tie & (Idx[:, 1:] < Idx[:, :-1]))
    assert bad.size == 0, f"query {bad[0][0]}: tied neighbors not in index order {Idx[bad[0][0]]}"


# --------------------------------------------------------------------------- radius_search: uniform, sizes

# (N, M); M == N means the queries are the points themselves (self-search)
SIZES = [(1, 1), (1, 9), (7, 7), (7, 40), (1000, 1000), (1000, 333), (20000, 20000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M", SIZES, ids=[f"N{n}_M{m}" for n, m in SIZES])
def test_radius_uniform(N, M, d, dtype):
    rng = np.random.default_rng(N * 10 + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    if M == N:
        queries, Q = points.clone(), P
    else:
        queries, Q = as_input(rng.uniform(-0.1, 1.1, (M, d)), dtype)
    r = 0.45 if N < 100 else radius_for(N, d)
    out = ops.radius_search(points, queries, r)
    check_radius(out, P, Q, r, dtype, min_mean_degree=8 if N >= 1000 else 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
def test_radius_clustered(d, dtype):
    """Blobs of scales 1e-3 .. 10: one fixed radius, and a per-query radius of 3x the query's blob scale."""
    rng = np.random.default_rng(1)
    pts, pscale = clustered_cloud(4000, d, rng)
    qpts, qscale = clustered_cloud(1000, d, np.random.default_rng(1))  # same centers, other positions
    qpts = qpts + rng.standard_normal(qpts.shape) * qscale[:, None] * 0.1
    points, P = as_input(pts, dtype)
    queries, Q = as_input(np.concatenate([qpts, pts[::8]]), dtype)
    qscale = np.concatenate([qscale, pscale[::8]])
    # fixed radius: the tight blobs are fully inside, the wide one is sparse
    check_radius(ops.radius_search(points, queries, 0.05), P, Q, 0.05, dtype, min_mean_degree=20)
    rq = torch.from_numpy(3.0 * qscale).to(dtype)
    check_radius(ops.radius_search(points, queries, rq), P, Q, rq.double().numpy(), dtype, min_mean_degree=20)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_per_query_tensor(dtype):
    """Per-query radii from 0 to 3x the typical radius, zeros included; queries half on points."""
    rng = np.random.default_rng(2)
    points, P = as_input(uniform_cloud(3000, 3, rng), dtype)
    queries, Q = as_input(np.concatenate([P[:500], rng.random((500, 3))]), dtype)
    r0 = radius_for(3000, 3)
    rq = rng.uniform(0, 3 * r0, 1000)
    rq[::7] = 0.0  # a zero radius finds exactly the coincident points
    rq = torch.from_numpy(rq).to(dtype)
    out = ops.radius_search(points, queries, rq)
    check_radius(out, P, Q, rq.double().numpy(), dtype)
    rp, col = out
    for i in range(0, 500, 7):  # queries 0..499 sit on points 0..499, radius 0 -> exactly themselves
        assert col[rp[i]:rp[i + 1]].tolist() == [i], (i, col[rp[i]:rp[i + 1]])
    # a per-query tensor of equal radii equals the float radius
    same = ops.radius_search(points, queries, torch.full((1000,), r0, dtype=dtype))
    ref = ops.radius_search(points, queries, float(torch.tensor(r0, dtype=dtype)))
    assert torch.equal(same[0], ref[0]) and torch.equal(same[1], ref[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_translated_cloud(dtype):
    """A cloud of extent 1 at distance 100 from the origin: distances must be computed from differences
    (|p|^2 - 2 p.q + |q|^2 loses all float32 precision here)."""
    rng = np.random.default_rng(3)
    pts = uniform_cloud(4000, 3, rng) + np.array([100.0, -100.0, 50.0])
    points, P = as_input(pts, dtype)
    r = radius_for(4000, 3)
    check_radius(ops.radius_search(points, points, r), P, P, r, dtype, min_mean_degree=16)
    check_knn(ops.knn(points, points[:500], 8), P, P[:500], 8, dtype)


# --------------------------------------------------------------------------- max_neighbors


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k", [1, 5, 32, 10_000])
def test_radius_max_neighbors(k, d, dtype):
    rng = np.random.default_rng(4)
    points, P = as_input(uniform_cloud(3000, d, rng), dtype)
    queries, Q = as_input(np.concatenate([P[:300], rng.random((300, d))]), dtype)
    r = radius_for(3000, d, k=48)
    out = ops.radius_search(points, queries, r, max_neighbors=k)
    check_radius(out, P, Q, r, dtype, max_neighbors=k, min_mean_degree=min(k, 20))
    if k == 10_000:  # more than any row holds: same as no limit
        full = ops.radius_search(points, queries, r)
        assert torch.equal(out[0], full[0]) and torch.equal(out[1], full[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_max_neighbors_clustered_per_query(dtype):
    rng = np.random.default_rng(5)
    pts, scale = clustered_cloud(5000, 3, rng)
    points, P = as_input(pts, dtype)
    rq = torch.from_numpy(2.0 * scale[::5]).to(dtype)
    out = ops.radius_search(points, points[::5], rq, max_neighbors=12)
    check_radius(out, P, P[::5], rq.double().numpy(), dtype, max_neighbors=12, min_mean_degree=10)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_max_neighbors_equals_knn_with_large_radius(dtype):
    """With a radius covering every point, max_neighbors=k keeps the k nearest: knn's indices, sorted."""
    rng = np.random.default_rng(6)
    points, _ = as_input(uniform_cloud(1000, 3, rng), dtype)
    queries, _ = as_input(rng.random((50, 3)), dtype)
    rp, col = ops.radius_search(points, queries, 10.0, max_neighbors=16)
    assert torch.equal(rp, torch.arange(51) * 16)
    _, idx = ops.knn(points, queries, 16)
    assert torch.equal(col.view(50, 16), idx.sort(dim=1).values)
    rp, col = ops.radius_search(points, queries, 10.0)  # everything
    assert torch.equal(col, torch.arange(1000).repeat(50)), "large radius must return every point in order"


# --------------------------------------------------------------------------- exact: integer grids


def grid_case(d: int, half: int, seed: int):
    """Integer points in [-half, half]^d, shuffled, every third duplicated (exact ties everywhere);
    integer queries on, between-lattice (x.5) and outside the grid. Returns (P, Q) float64 arrays."""
    rng = np.random.default_rng(seed)
    axis = np.arange(-half, half + 1, dtype=np.float64)
    grid = np.stack(np.meshgrid(*([axis] * d), indexing="ij"), -1).reshape(-1, d)
    P = np.concatenate([grid, grid[::3]])[rng.permutation(len(grid) + len(grid[::3]))]
    Q = np.concatenate([
        grid[rng.choice(len(grid), 20, replace=False)],
        rng.integers(-half, half, (10, d)) + 0.5,
        np.full((1, d), half + 3.0),
    ])
    return P, Q


def exact_ball(P, Q, r, k=None):
    """Exact rows of the radius search on integer/half-integer data: d^2 <= r^2, k nearest by (d^2, index)."""
    d2 = ((Q[:, None, :] - P[None, :, :]) ** 2).sum(-1)
    rows = []
    for i in range(len(Q)):
        inside = np.flatnonzero(d2[i] <= r * r)
        if k is not None:
            inside = np.sort(inside[np.lexsort((inside, d2[i, inside]))][:k])
        rows.append(inside.tolist())
    return rows


def csr_rows(out):
    rp, col = out
    return [col[rp[i]:rp[i + 1]].tolist() for i in range(rp.numel() - 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half,r", [(2, 6, 5.0), (2, 6, 0.0), (3, 3, 2.0), (3, 3, 1.0), (3, 3, 0.0)])
@pytest.mark.parametrize("k", [None, 1, 4, 13])
def test_radius_exact_grid(d, half, r, k, dtype):
    """Boundary points (|p - q| == radius exactly, e.g. a 3-4-5 triangle) are inside; ties -> lower index."""
    P, Q = grid_case(d, half, seed=d * 100 + half)
    out = ops.radius_search(torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype), r, max_neighbors=k)
    check_csr(out, len(Q), len(P))
    expect = exact_ball(P, Q, r, k)
    got = csr_rows(out)
    for i, (g, e) in enumerate(zip(got, expect)):
        assert g == e, f"query {i} at {Q[i]}, radius {r}, max_neighbors {k}:\n got {g}\nwant {e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half,radii", [(2, 6, [5.0, 0.0, 2.0, 5.0, 3.0]), (3, 3, [1.0, 2.0, 1.5])])
@pytest.mark.parametrize("k", [1, 4, 13, 100])
def test_radius_multi_exact_grid(d, half, radii, k, dtype):
    """Several radii with a cap, on exact ties: every radius keeps its own k nearest within it
    (|p - q| <= radius, ties to the lower index), as one capped single-radius search would."""
    P, Q = grid_case(d, half, seed=d * 100 + half + 1)
    outs = ops.radius_search_multi(torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype), radii,
                                   max_neighbors=k)
    for r, out in zip(radii, outs):
        check_csr(out, len(Q), len(P))
        for i, (g, e) in enumerate(zip(csr_rows(out), exact_ball(P, Q, r, k))):
            assert g == e, f"query {i} at {Q[i]}, radius {r} of {radii}, max_neighbors {k}:\n got {g}\nwant {e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d,half", [(2, 6), (3, 3)])
@pytest.mark.parametrize("k", [1, 6, 27])
def test_knn_exact_grid(d, half, k, dtype):
    P, Q = grid_case(d, half, seed=d * 100 + half)
    dist, idx = ops.knn(torch.from_numpy(P).to(dtype), torch.from_numpy(Q).to(dtype), k)
    d2 = ((Q[:, None, :] - P[None, :, :]) ** 2).sum(-1)
    for i in range(len(Q)):
        want = np.lexsort((np.arange(len(P)), d2[i]))[:k]
        assert idx[i].tolist() == want.tolist(), f"query {i} at {Q[i]}: got {idx[i].tolist()} want {want.tolist()}"
        torch.testing.assert_close(dist[i], torch.from_numpy(np.sqrt(d2[i, want])).to(dtype), rtol=1e-6, atol=0)


# --------------------------------------------------------------------------- batches


# (point batch sizes, query batch sizes); query batches beyond the points' last batch have no points
BATCH_LAYOUTS = {
    "empty_middle": ([700, 0, 1300, 55, 400], [100, 60, 0, 300, 20]),
    "empty_first_last_queries_only": ([0, 500, 900], [10, 0, 40, 25]),
    "one_batch": ([999], [333]),
    "tiny": ([1, 2, 0, 3], [4, 0, 2, 1]),
}


def batched(layout, d, dtype, seed, clustered=False):
    psz, qsz = BATCH_LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    n, m = sum(psz), sum(qsz)
    pts = clustered_cloud(n, d, rng)[0] / 30 if clustered else uniform_cloud(n, d, rng)
    points, P = as_input(pts, dtype)
    # queries: half on points of their own batch where it has points, else random
    queries, Q = as_input(rng.random((m, d)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    return points, P, queries, Q, bp, bq


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("layout", list(BATCH_LAYOUTS))
@pytest.mark.parametrize("k", [None, 6])
def test_radius_batches(layout, d, k, dtype):
    points, P, queries, Q, bp, bq = batched(layout, d, dtype, seed=7)
    r = 0.3 if layout == "tiny" else radius_for(500, d, k=24)
    out = ops.radius_search(points, queries, r, max_neighbors=k, batch_points=bp, batch_queries=bq)
    check_radius(out, P, Q, r, dtype, bp=bp.numpy(), bq=bq.numpy(), max_neighbors=k,
                 min_mean_degree=0 if layout == "tiny" else 2)
    # a batch's rows are those of a search over that batch alone
    rp, col = out
    psz, qsz = BATCH_LAYOUTS[layout]
    p0 = np.concatenate([[0], np.cumsum(psz)])
    q0 = np.concatenate([[0], np.cumsum(qsz)])
    for b in range(len(qsz)):
        if b >= len(psz) or psz[b] == 0:
            assert torch.all(rp[q0[b]:q0[b + 1] + 1] == rp[q0[b]]), f"batch {b} has no points but got neighbors"
            continue
        if qsz[b] == 0:
            continue
        one = ops.radius_search(points[p0[b]:p0[b + 1]], queries[q0[b]:q0[b + 1]], r, max_neighbors=k)
        got_rp = rp[q0[b]:q0[b + 1] + 1] - rp[q0[b]]
        got_col = col[rp[q0[b]]:rp[q0[b + 1]]] - p0[b]
        assert torch.equal(got_rp, one[0]) and torch.equal(got_col, one[1]), f"batch {b} differs from a lone search"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_radius_batches_per_query_clustered(dtype):
    points, P, queries, Q, bp, bq = batched("empty_middle", 3, dtype, seed=8, clustered=True)
    rq = torch.from_numpy(np.random.default_rng(8).uniform(0.0, 0.2, len(Q))).to(dtype)
    out = ops.radius_search(points, queries, rq, batch_points=bp, batch_queries=bq)
    check_radius(out, P, Q, rq.double().numpy(), dtype, bp=bp.numpy(), bq=bq.numpy())


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
def test_knn_batches(d, dtype):
    # batch 1 has 3 points but no queries, so k=16 > 3 is fine; batch 3 has no points and no queries
    psz, qsz = [700, 3, 1300, 0, 55, 400], [100, 0, 50, 0, 300, 20]
    rng = np.random.default_rng(9)
    points, P = as_input(uniform_cloud(sum(psz), d, rng), dtype)
    queries, Q = as_input(rng.random((sum(qsz), d)), dtype)
    bp, bq = batch_vector(psz), batch_vector(qsz)
    for k in (1, 16, 55):  # k = 55: batch 4, which has queries, has exactly 55 points
        out = ops.knn(points, queries, k, batch_points=bp, batch_queries=bq)
        check_knn(out, P, Q, k, dtype, bp=bp.numpy(), bq=bq.numpy())


# --------------------------------------------------------------------------- real surfaces


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_car_surfaces(dtype):
    """ShapeNet car surface vertices (thin features, uneven density); the four cars as four batches."""
    meshes = car_meshes()
    pts = np.concatenate(meshes)
    points, P = as_input(pts, dtype)
    r = float(np.median(cKDTree(meshes[0]).query(meshes[0], 33)[0][:, -1]))  # ~32 neighbors
    # one car, self-search
    n0 = len(meshes[0])
    check_radius(ops.radius_search(points[:n0], points[:n0], r), P[:n0], P[:n0], r, dtype, min_mean_degree=16)
    check_knn(ops.knn(points[:n0], points[:n0], 16), P[:n0], P[:n0], 16, dtype)
    # all cars as batches, queries every 3rd vertex (the cars overlap in space: batches must separate them)
    bp = batch_vector([len(m) for m in meshes])
    sel = torch.arange(0, len(P), 3)
    bq, queries, Q = bp[sel], points[sel], P[sel.numpy()]
    out = ops.radius_search(points, queries, r, batch_points=bp, batch_queries=bq)
    check_radius(out, P, Q, r, dtype, bp=bp.numpy(), bq=bq.numpy(), min_mean_degree=16)
    out = ops.radius_search(points, queries, r, max_neighbors=10, batch_points=bp, batch_queries=bq)
    check_radius(out, P, Q, r, dtype, bp=bp.numpy(), bq=bq.numpy(), max_neighbors=10, min_mean_degree=9)
    check_knn(ops.knn(points, queries, 16, batch_points=bp, batch_queries=bq), P, Q, 16, dtype,
              bp=bp.numpy(), bq=bq.numpy())


# --------------------------------------------------------------------------- knn


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M,k", [(1, 5, 1), (7, 7, 7), (7, 30, 3), (1000, 400, 1), (1000, 1000, 16),
                                   (20000, 5000, 16), (300, 50, 300)])
def test_knn_uniform(N, M, k, d, dtype):
    rng = np.random.default_rng(N + d)
    points, P = as_input(uniform_cloud(N, d, rng), dtype)
    if M == N:
        queries, Q = points.clone(), P
    else:
        queries, Q = as_input(rng.uniform(-0.2, 1.2, (M, d)), dtype)
    check_knn(ops.knn(points, queries, k), P, Q, k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
def test_knn_clustered(d, dtype):
    rng = np.random.default_rng(10)
    pts, _ = clustered_cloud(6000, d, rng)
    points, P = as_input(pts, dtype)
    queries, Q = as_input(np.concatenate([pts[::10], rng.uniform(-40, 40, (200, d))]), dtype)
    check_knn(ops.knn(points, queries, 24), P, Q, 24, dtype)


# --------------------------------------------------------------------------- radius_search_multi


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("k", [None, 7])
@pytest.mark.parametrize("batches", [False, True], ids=["nobatch", "batched"])
def test_radius_multi_equals_single(batches, k, dtype):
    if batches:
        points, P, queries, Q, bp, bq = batched("empty_middle", 3, dtype, seed=11)
        kw = dict(batch_points=bp, batch_queries=bq)
    else:
        rng = np.random.default_rng(11)
        points, P = as_input(uniform_cloud(4000, 3, rng), dtype)
        queries, Q = as_input(np.concatenate([P[:300], rng.random((300, 3))]), dtype)
        kw = {}
    r = radius_for(len(P) // 4 if batches else len(P), 3)
    radii = [2 * r, 0.0, r / 2, r, r, 3 * r]  # unsorted, a zero, a repeat
    outs = ops.radius_search_multi(points, queries, radii, max_neighbors=k, **kw)
    assert isinstance(outs, list) and len(outs) == len(radii)
    for rad, out in zip(radii, outs):
        one = ops.radius_search(points, queries, rad, max_neighbors=k, **kw)
        assert torch.equal(out[0], one[0]) and torch.equal(out[1], one[1]), f"radius {rad} differs from single call"
    check_radius(outs[-1], P, Q, 3 * r, dtype, max_neighbors=k, bp=_np(kw.get("batch_points")),
                 bq=_np(kw.get("batch_queries")))
    check_radius(outs[0], P, Q, 2 * r, dtype, max_neighbors=k, bp=_np(kw.get("batch_points")),
                 bq=_np(kw.get("batch_queries")))


# --------------------------------------------------------------------------- KDTree


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("leaf_size", [1, 7, 64])
@pytest.mark.parametrize("batches", [False, True], ids=["nobatch", "batched"])
def test_kdtree_reuse(batches, leaf_size, dtype):
    """One tree, several query sets / radii / k: identical to the functions every time."""
    rng = np.random.default_rng(12)
    if batches:
        points, P, _, _, bp, _ = batched("empty_middle", 3, dtype, seed=12)
    else:
        points, P = as_input(clustered_cloud(3000, 3, rng)[0] / 30, dtype)
        bp = None
    tree = ops.KDTree(points, batch=bp, leaf_size=leaf_size)
    r = 0.08
    for trial in range(3):
        m = 200 + 100 * trial
        if batches:
            sizes = list(np.random.default_rng(trial).multinomial(m, [0.3, 0.1, 0.0, 0.4, 0.2]))
            sizes[2] = 0  # no queries in batch 2
            sizes[1] = max(sizes[1], 1)  # and some in batch 1, which has no points
            bq = batch_vector(sizes)
            m = int(bq.numel())
        else:
            bq = None
        queries, Q = as_input(rng.random((m, 3)) * (1.0 if batches else 2.0) - (0.0 if batches else 1.0), dtype)
        fkw = dict(batch_points=bp, batch_queries=bq) if batches else {}
        for k in (None, 5):
            got = tree.radius(queries, r * (trial + 1), max_neighbors=k, batch=bq)
            want = ops.radius_search(points, queries, r * (trial + 1), max_neighbors=k, **fkw)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (trial, k)
        check_radius(got, P, Q, r * (trial + 1), dtype, max_neighbors=5, bp=_np(bp), bq=_np(bq))
        rq = torch.from_numpy(rng.uniform(0, 0.15, m)).to(dtype)
        got = tree.radius(queries, rq, batch=bq)
        want = ops.radius_search(points, queries, rq, **fkw)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if trial == 0:
            check_radius(got, P, Q, rq.double().numpy(), dtype, bp=_np(bp), bq=_np(bq))
        multi = tree.radius_multi(queries, [0.02, 0.1, 0.05], batch=bq)
        want = ops.radius_search_multi(points, queries, [0.02, 0.1, 0.05], **fkw)
        assert len(multi) == 3
        for a, b in zip(multi, want):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        if not batches or trial == 0:
            kq = queries if not batches else queries[bq != 1]  # batch 1 has no points: no knn there
            kbq = None if not batches else bq[bq != 1]
            k = 9
            got = tree.knn(kq, k, batch=kbq)
            want = ops.knn(points, kq, k, **({} if not batches else dict(batch_points=bp, batch_queries=kbq)))
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
            check_knn(got, P, kq.double().numpy(), k, dtype, bp=_np(bp), bq=_np(kbq))


def test_kdtree_leaf_sizes_agree():
    rng = np.random.default_rng(13)
    points = torch.from_numpy(clustered_cloud(2000, 2, rng)[0])
    queries = points[::4] + 0.01
    ref = None
    for leaf_size in (1, 2, 16, 100, 5000):
        tree = ops.KDTree(points, leaf_size=leaf_size)
        out = tree.radius(queries, 0.3) + tree.knn(queries, 12)
        if ref is None:
            ref = out
        for a, b in zip(out, ref):
            assert torch.equal(a, b), f"leaf_size={leaf_size}"


# --------------------------------------------------------------------------- empty inputs


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("N,M", [(0, 0), (0, 5), (5, 0), (0, 1)])
def test_empty(N, M, d, dtype):
    points = torch.rand(N, d, dtype=dtype)
    queries = torch.rand(M, d, dtype=dtype)
    zero_csr = (torch.zeros(M + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long))

    def assert_empty(out):
        check_csr(out, M, N)
        assert torch.equal(out[0], zero_csr[0]) and out[1].numel() == 0

    assert_empty(ops.radius_search(points, queries, 0.5))
    assert_empty(ops.radius_search(points, queries, 0.5, max_neighbors=3))
    assert_empty(ops.radius_search(points, queries, torch.full((M,), 0.5, dtype=dtype)))
    for out in ops.radius_search_multi(points, queries, [0.1, 0.5]):
        assert_empty(out)
    bp, bq = torch.zeros(N, dtype=torch.long), torch.zeros(M, dtype=torch.long)
    assert_empty(ops.radius_search(points, queries, 0.5, batch_points=bp, batch_queries=bq))
    tree = ops.KDTree(points)
    assert_empty(tree.radius(queries, 0.5))
    if N >= 2:
        dist, idx = ops.knn(points, queries, 2)
        assert dist.shape == (0, 2) and idx.shape == (0, 2) and idx.dtype == torch.long and dist.dtype == dtype
        dist, idx = tree.knn(queries, 2)
        assert dist.shape == (0, 2) and idx.shape == (0, 2)


@pytest.mark.parametrize("N,M,k", [(0, 0, 1), (0, 5, 1), (3, 0, 4), (3, 2, 4)])
def test_knn_k_greater_than_n(N, M, k):
    """k > N is a ValueError (spec), also when there are no queries (M = 0)."""
    points, queries = torch.rand(N, 3), torch.rand(M, 3)
    with pytest.raises(ValueError, match=r"(?i)\bk\b"):
        ops.knn(points, queries, k)
    with pytest.raises(ValueError, match=r"(?i)\bk\b"):
        ops.KDTree(points).knn(queries, k)


def test_empty_batches_everywhere():
    """Points only in batch 2, queries only in batches 0 and 1: every row empty."""
    points, queries = torch.rand(10, 3), torch.rand(6, 3)
    bp, bq = torch.full((10,), 2), torch.tensor([0, 0, 0, 1, 1, 1])
    rp, col = ops.radius_search(points, queries, 10.0, batch_points=bp, batch_queries=bq)
    assert torch.equal(rp, torch.zeros(7, dtype=torch.long)) and col.numel() == 0


# --------------------------------------------------------------------------- determinism, strides


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(14)
    points = torch.from_numpy(clustered_cloud(20000, 3, rng)[0]).float()
    queries = points[::3]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.radius_search(points, queries, 0.05, max_neighbors=20) + ops.knn(points, queries, 8)
    finally:
        torch.set_num_threads(threads)
    many = ops.radius_search(points, queries, 0.05, max_neighbors=20) + ops.knn(points, queries, 8)
    for a, b in zip(one, many):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_non_contiguous_inputs(dtype):
    rng = np.random.default_rng(15)
    wide = torch.from_numpy(rng.random((2000, 6))).to(dtype)
    points = wide[:, ::2]  # stride 2 in the last dimension
    queries = torch.from_numpy(rng.random((3, 500))).to(dtype).t()  # transposed
    rq = torch.from_numpy(rng.uniform(0, 0.15, 1000)).to(dtype)[::2]
    pc, qc = points.contiguous(), queries.contiguous()
    pairs = [
        (ops.radius_search(points, queries, rq), ops.radius_search(pc, qc, rq.contiguous())),
        (ops.radius_search(points, queries, 0.1, max_neighbors=4), ops.radius_search(pc, qc, 0.1, max_neighbors=4)),
        (ops.knn(points, queries, 5), ops.knn(pc, qc, 5)),
        (ops.KDTree(points).radius(queries, 0.1), ops.KDTree(pc).radius(qc, 0.1)),
    ]
    for got, want in pairs:
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_inputs_not_modified():
    points, queries = torch.rand(500, 3), torch.rand(100, 3)
    bp, bq = batch_vector([200, 300]), batch_vector([50, 50])
    rq = torch.rand(100) * 0.2
    copies = [t.clone() for t in (points, queries, bp, bq, rq)]
    ops.radius_search(points, queries, rq, max_neighbors=3, batch_points=bp, batch_queries=bq)
    ops.knn(points, queries, 4, batch_points=bp, batch_queries=bq)
    ops.KDTree(points, batch=bp).radius(queries, 0.1, batch=bq)
    for a, b in zip((points, queries, bp, bq, rq), copies):
        assert torch.equal(a, b)


def test_knn_distances_not_silently_non_differentiable():
    """The spec says nothing of gradients; but if knn's distances come back requiring grad, their
    gradient must be right (d|q - p| / dq = (q - p) / |q - p|), not silently zero."""
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(30, 3, dtype=torch.float64, generator=gen).requires_grad_()
    q = torch.rand(5, 3, dtype=torch.float64, generator=gen).requires_grad_()
    for fn in (lambda p, q: ops.knn(p, q, 4)[0], lambda p, q: ops.KDTree(p).knn(q, 4)[0]):
        dist = fn(p, q)
        if dist.requires_grad:
            assert torch.autograd.gradcheck(fn, (p, q)), "knn distances require grad but their gradient is wrong"


# --------------------------------------------------------------------------- errors

_GEN = torch.Generator().manual_seed(0)  # module-level data, created before the seeding fixture runs
_P, _Q = torch.rand(20, 3, generator=_GEN), torch.rand(6, 3, generator=_GEN)
_BP, _BQ = batch_vector([8, 12]), batch_vector([3, 3])


def _with(t, index, value):
    t = t.clone()
    t[index] = value
    return t


_NAN_P, _INF_Q = _with(_P, (4, 1), float("nan")), _with(_Q, (2, 0), float("inf"))
_UNSORTED_BP = _with(_BP, 0, 1)  # [1, 0, 0, ...]

# (id, call, exception type, regex searched in the message, case-insensitive)
ERRORS = [
    ("nan points", lambda: ops.radius_search(_NAN_P, _Q, 0.1), ValueError, "points"),
    ("inf points", lambda: ops.radius_search(_with(_P, 0, float("-inf")), _Q, 0.1), ValueError, "points"),
    ("inf queries", lambda: ops.radius_search(_P, _INF_Q, 0.1), ValueError, "queries"),
    ("nan queries", lambda: ops.radius_search(_P, _with(_Q, 5, float("nan")), 0.1), ValueError, "queries"),
    ("nan points knn", lambda: ops.knn(_NAN_P, _Q, 2), ValueError, "points"),
    ("inf queries knn", lambda: ops.knn(_P, _INF_Q, 2), ValueError, "queries"),
    ("nan points multi", lambda: ops.radius_search_multi(_NAN_P, _Q, [0.1]), ValueError, "points"),
    ("nan points kdtree", lambda: ops.KDTree(_NAN_P), ValueError, "points"),
    ("inf queries kdtree", lambda: ops.KDTree(_P).radius(_INF_Q, 0.1), ValueError, "queries"),
    ("inf queries kdtree knn", lambda: ops.KDTree(_P).knn(_INF_Q, 3), ValueError, "queries"),
    ("dim mismatch", lambda: ops.radius_search(_P, _Q[:, :2], 0.1), ValueError, "points|queries"),
    ("dim mismatch knn", lambda: ops.knn(_P[:, :2], _Q, 2), ValueError, "points|queries"),
    ("dim mismatch kdtree", lambda: ops.KDTree(_P).radius(_Q[:, :2], 0.1), ValueError, "points|queries"),
    ("d=4", lambda: ops.radius_search(torch.rand(5, 4), torch.rand(2, 4), 0.1), ValueError, "points|queries"),
    ("d=1", lambda: ops.knn(torch.rand(5, 1), torch.rand(2, 1), 1), ValueError, "points|queries"),
    ("1-D points", lambda: ops.radius_search(torch.rand(5), torch.rand(2), 0.1), ValueError, "points"),
    ("d=4 kdtree", lambda: ops.KDTree(torch.rand(5, 4)), ValueError, "points"),
    ("negative radius", lambda: ops.radius_search(_P, _Q, -0.1), ValueError, "radius"),
    ("negative radius tensor", lambda: ops.radius_search(_P, _Q, _with(torch.full((6,), 0.1), 3, -1e-3)),
     ValueError, "radius"),
    ("radius tensor wrong length", lambda: ops.radius_search(_P, _Q, torch.full((7,), 0.1)), ValueError, "radius"),
    ("negative radius multi", lambda: ops.radius_search_multi(_P, _Q, [0.1, -0.2]), ValueError, "radii"),
    ("negative radius kdtree", lambda: ops.KDTree(_P).radius(_Q, -1.0), ValueError, "radius"),
    ("k > N", lambda: ops.knn(_P, _Q, 21), ValueError, r"\bk\b"),
    ("k > N kdtree", lambda: ops.KDTree(_P).knn(_Q, 21), ValueError, r"\bk\b"),
    ("k > batch size", lambda: ops.knn(_P, _Q, 9, batch_points=_BP, batch_queries=_BQ), ValueError, r"\bk\b"),
    ("k > empty batch", lambda: ops.knn(_P, _Q, 1, batch_points=batch_vector([20, 0]), batch_queries=_BQ),
     ValueError, r"\bk\b"),
    ("k > batch size kdtree", lambda: ops.KDTree(_P, batch=_BP).knn(_Q, 9, batch=_BQ), ValueError, r"\bk\b"),
    ("unsorted batch_points", lambda: ops.radius_search(_P, _Q, 0.1, batch_points=_UNSORTED_BP, batch_queries=_BQ),
     ValueError, "sorted"),
    ("unsorted batch_queries", lambda: ops.radius_search(_P, _Q, 0.1, batch_points=_BP,
                                                         batch_queries=torch.tensor([0, 1, 1, 0, 1, 1])),
     ValueError, "sorted"),
    ("unsorted batch knn", lambda: ops.knn(_P, _Q, 1, batch_points=_UNSORTED_BP, batch_queries=_BQ),
     ValueError, "sorted"),
    ("unsorted batch kdtree", lambda: ops.KDTree(_P, batch=_UNSORTED_BP), ValueError, "sorted"),
    ("unsorted query batch kdtree", lambda: ops.KDTree(_P, batch=_BP).radius(_Q, 0.1, batch=_BQ.flip(0)),
     ValueError, "sorted"),
    ("only batch_points", lambda: ops.radius_search(_P, _Q, 0.1, batch_points=_BP), ValueError, "batch"),
    ("only batch_queries", lambda: ops.radius_search(_P, _Q, 0.1, batch_queries=_BQ), ValueError, "batch"),
    ("only batch_points knn", lambda: ops.knn(_P, _Q, 1, batch_points=_BP), ValueError, "batch"),
    ("only batch_queries multi", lambda: ops.radius_search_multi(_P, _Q, [0.1], batch_queries=_BQ),
     ValueError, "batch"),
    ("kdtree batched, queries not", lambda: ops.KDTree(_P, batch=_BP).radius(_Q, 0.1), ValueError, "batch"),
    ("kdtree not batched, queries are", lambda: ops.KDTree(_P).knn(_Q, 1, batch=_BQ), ValueError, "batch"),
    ("batch_points wrong length", lambda: ops.radius_search(_P, _Q, 0.1, batch_points=_BP[:-1], batch_queries=_BQ),
     ValueError, "batch_points"),
    ("batch_queries wrong length", lambda: ops.knn(_P, _Q, 1, batch_points=_BP, batch_queries=_BQ[1:]),
     ValueError, "batch_queries"),
    ("int points", lambda: ops.radius_search(_P.long(), _Q, 0.1), TypeError, "points"),
    ("int32 points knn", lambda: ops.knn(_P.int(), _Q, 1), TypeError, "points"),
    ("int queries", lambda: ops.radius_search(_P, _Q.int(), 0.1), TypeError, "queries"),
    ("int points kdtree", lambda: ops.KDTree(_P.long()), TypeError, "points"),
    ("int points multi", lambda: ops.radius_search_multi(_P.long(), _Q, [0.1]), TypeError, "points"),
]


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=f"(?i){pattern}"):
        call()
