"""Benchmark pyengine's neighbor search (radius, multi-radius, kNN, KD-tree) against scipy / brute force.

For point clouds of N points (self-search: the queries are the points, M = N), in 3-D:

* ``uniform``:   uniform in the unit cube;
* ``clustered``: 8 Gaussian blobs with scales from 0.01 to 0.1 (log-uniform) and unequal
  weights in the unit cube, so point density varies by orders of magnitude;
* ``car``:       N points sampled uniformly (area-weighted) on the surface of a ShapeNet car
  mesh from ``../shared/data/shapenet_car_mini`` (skipped when absent);

with the radius chosen (untimed, by bisection on a sample of queries) for 32 neighbors on
average, it times, in the same run on the same inputs:

* ``build+radius``: ``radius_search(points, points, r)`` vs ``cKDTree(P)`` +
  ``query_ball_point(P, r, workers=T, return_sorted=True)``;
* ``radius (tree)``: the query alone on a prebuilt ``KDTree`` vs a prebuilt cKDTree;
* ``build``: ``KDTree(points)`` vs ``cKDTree(P)``;
* ``radius k<=16``: ``radius_search(..., max_neighbors=16)`` vs ``cKDTree(P)`` +
  ``query(P, 16, distance_upper_bound=r, workers=T)`` (the same "16 nearest within r");
* ``multi 3 radii``: ``radius_search_multi(points, points, [r/2, r/sqrt2, r])`` vs ``cKDTree(P)``
  + three ``query_ball_point`` calls;
* ``knn k=16``: ``knn(points, points, 16)`` vs ``cKDTree(P)`` + ``query(P, 16, workers=T)``.

scipy gets float64 numpy copies made outside the timed region and ``workers`` = pyengine's
thread count (``torch.get_num_threads()``, or ``--threads``); its ball query returns Python
lists, which it is not charged for converting to CSR, whereas pyengine's times include
building the CSR tensors. cKDTree's build is single-threaded whatever ``workers`` is.

On ``--device cuda`` the peer is a brute-force ``torch.cdist`` over query chunks (bounded to
``--chunk-mb`` MiB of distances), with ``nonzero`` for the radius and ``topk`` for kNN; when
N * M exceeds ``--brute-max-pairs`` the peer runs on the first queries only and its time is
scaled to M (marked "extrapolated" in the note). cdist runs in its difference-based mode
(``compute_mode="donot_use_mm_for_euclid_dist"``): the default matmul form is off by ~1e-3 in
float32 here, far beyond the float ties, so its radius sets would not be comparable.

Every pyengine result is checked against the peer's (pair sets equal up to float ties at the
radius; kNN distances equal to rounding) and the "match" column says so.

Examples::

    python -m bench.neighbors --device cpu --markdown
    python -m bench.neighbors --device cpu --large          # adds N = 1e6
    python -m bench.neighbors --quick
    python -m bench.neighbors --device cuda --markdown
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch

from ._timing import (  # noqa: E402
    Row,
    add_common_args,
    busy_cpus,
    choice_list,
    command_line,
    format_count,
    machine_description,
    measure,
    parse_common,
    parse_count,
    print_table,
)

from pyengine import ops  # noqa: E402

CLOUDS = ("uniform", "clustered", "car")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
REL_TOL = {torch.float32: 4e-6, torch.float64: 1e-12}  # tie band, as in tests/neighbors/test_neighbors.py
CAR_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shapenet_car_mini"
TARGET_NEIGHBORS = 32
K = 16


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- clouds


def load_ply(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, triangles (F, 3) int64) of a binary little-endian triangle PLY."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: not a binary little-endian PLY")
    elements, current = [], None
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"]:
            current = [parts[1], int(parts[2]), []]
            elements.append(current)
        elif parts[:1] == ["property"] and current is not None:
            current[2].append(parts[1:])
    types = {"double": "<f8", "float": "<f4", "float64": "<f8", "float32": "<f4", "uchar": "u1", "uint8": "u1",
             "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4"}
    offset, verts, faces = end, None, None
    for name, count, props in elements:
        if name == "vertex":
            dt = np.dtype([(p[1], types[p[0]]) for p in props])
            v = np.frombuffer(data, dtype=dt, count=count, offset=offset)
            verts = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
            offset += dt.itemsize * count
        elif name == "face":
            (_, cnt_t, idx_t, _), = props  # "list uchar uint vertex_indices"
            dt = np.dtype([("n", types[cnt_t]), ("v", types[idx_t], (3,))])
            f = np.frombuffer(data, dtype=dt, count=count, offset=offset)
            if not np.all(f["n"] == 3):
                raise ValueError(f"{path}: not a triangle mesh")
            faces = f["v"].astype(np.int64)
            offset += dt.itemsize * count
        else:
            raise ValueError(f"{path}: unexpected element {name}")
    return verts, faces


def sample_surface(verts: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    tri = verts[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[f]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def make_cloud(kind: str, n: int, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "uniform":
        return rng.random((n, 3))
    if kind == "clustered":
        blobs = 8
        centers = rng.uniform(0.15, 0.85, (blobs, 3))
        scales = np.exp(rng.uniform(math.log(0.01), math.log(0.1), blobs))
        weights = rng.uniform(0.2, 1.0, blobs)
        b = rng.choice(blobs, size=n, p=weights / weights.sum())
        return centers[b] + rng.standard_normal((n, 3)) * scales[b, None]
    if kind == "car":
        paths = sorted(CAR_DIR.glob("*/tri_mesh.ply"))
        if not paths:
            return None
        return sample_surface(*load_ply(paths[0]), n, rng)
    raise ValueError(kind)


def radius_for_mean(P: np.ndarray, tree, target: float, rng: np.random.Generator, workers: int) -> float:
    """Radius with `target` neighbors on average (self included), by bisection on <= 4000 sampled queries."""
    from scipy.spatial import cKDTree  # noqa: F401  (tree is a cKDTree)

    sample = P[rng.choice(len(P), size=min(len(P), 4000), replace=False)]
    lo = 0.0
    hi = float(np.median(tree.query(sample[:500], k=min(len(P), int(target) + 1), workers=workers)[0][:, -1]))
    while tree.query_ball_point(sample, hi, return_length=True, workers=workers).mean() < target:
        hi *= 1.5
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if tree.query_ball_point(sample, mid, return_length=True, workers=workers).mean() < target:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------------- result checks (untimed)


def nnz_str(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 10**6 else f"{n / 1e3:.1f}k" if n >= 10**3 else str(n)


def lists_to_csr(lists) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter((len(x) for x in lists), np.int64, count=len(lists))
    col = np.fromiter((j for x in lists for j in x), np.int64, count=int(lens.sum()))
    return np.concatenate([[0], np.cumsum(lens)]), col


def compare_csr(ours, peer, P, Q, r, dtype, k=None, sample_rows=2000, rng=None) -> tuple[bool, float, str]:
    """(match, max |row length difference|, note): pair sets equal except float ties (radius band,
    or with max_neighbors the k-th distance band). Rows with equal lengths are compared on a sample."""
    rp_o, col_o = (t.cpu().numpy() for t in ours)
    rp_p, col_p = peer
    m = len(rp_o) - 1
    tol = REL_TOL[dtype]
    lo, lp = np.diff(rp_o), np.diff(rp_p)
    rows = set(np.flatnonzero(lo != lp).tolist())
    rng = rng or np.random.default_rng(0)
    rows |= set(rng.choice(m, size=min(m, sample_rows), replace=False).tolist()) if m else set()
    bad = 0
    for i in rows:
        a, b = col_o[rp_o[i]:rp_o[i + 1]], col_p[rp_p[i]:rp_p[i + 1]]
        if len(a) == len(b) and np.array_equal(a, b):
            continue
        diff = np.setxor1d(a, b)
        d = np.linalg.norm(P[diff] - Q[i], axis=1)
        ok = np.abs(d - r) <= tol * r
        if k is not None and len(a) == k and len(b) == k:
            kth = np.linalg.norm(P[b] - Q[i], axis=1).max()
            ok |= np.abs(d - kth) <= 2 * tol * kth
        bad += int(not ok.all())
    note = f"nnz {nnz_str(int(rp_o[-1]))} ({rp_o[-1] / max(m, 1):.1f}/row)"
    if bad:
        note += f"; {bad} rows differ beyond ties"
    return bad == 0, float(np.abs(lo - lp).max(initial=0)), note


def knn_peer_dense(idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """cKDTree.query(k, distance_upper_bound) marks missing neighbors with idx == n: -> CSR sorted by index."""
    srt = np.sort(idx, axis=1)  # the missing (== n) ones go last
    keep = srt < n
    return np.concatenate([[0], np.cumsum(keep.sum(1))]), srt[keep]


# --------------------------------------------------------------------------- CUDA brute-force peer


# cdist's default for large inputs, |x|^2 + |y|^2 - 2 x.y by a matmul, is off by ~1e-3 in float32 for
# clouds of extent 1: far more than the float ties, so the peer uses the difference-based kernel.
EXACT = "donot_use_mm_for_euclid_dist"


class Brute:
    """torch.cdist brute force (difference-based) over query chunks (each chunk's distance block <= chunk_mb MiB)."""

    def __init__(self, P: torch.Tensor, chunk_mb: int):
        self.P = P
        self.rows = max(1, (chunk_mb << 20) // (max(1, P.shape[0]) * P.element_size()))

    def radius(self, Q, r):
        rows, cols = [], []
        for s in range(0, Q.shape[0], self.rows):
            nz = (torch.cdist(Q[s:s + self.rows], self.P, compute_mode=EXACT) <= r).nonzero()
            rows.append(nz[:, 0] + s)
            cols.append(nz[:, 1])
        row = torch.cat(rows)
        rp = torch.zeros(Q.shape[0] + 1, dtype=torch.long, device=Q.device)
        rp[1:] = torch.bincount(row, minlength=Q.shape[0]).cumsum(0)
        return rp, torch.cat(cols)

    def knn(self, Q, k):
        ds, ids = [], []
        for s in range(0, Q.shape[0], self.rows):
            dist = torch.cdist(Q[s:s + self.rows], self.P, compute_mode=EXACT)
            d, i = dist.topk(k, dim=1, largest=False, sorted=True)
            ds.append(d)
            ids.append(i)
        return torch.cat(ds), torch.cat(ids)


# --------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.dtype = DTYPES[args.dtype]
        self.workers = torch.get_num_threads()
        self.rows: list[Row] = []

    def time(self, fn) -> float:
        a = self.args
        return measure(fn, repeat=a.repeat, warmup=a.warmup, device=self.device, max_seconds=a.max_seconds)

    def add(self, case, op, ours_s, peer, peer_s, match, diff, note):
        self.rows.append(Row(case, op, ours_s, peer, peer_s, max_diff=diff, match=match, note=note))
        sp = "" if peer_s is None else f"{peer_s / ours_s:6.2f}x"
        status = "" if match is None else ("ok" if match else "MISMATCH")
        log(f"  [{case}] {op:14s} pyengine {ours_s * 1e3:9.2f} ms | {peer:24s} "
            f"{'' if peer_s is None else f'{peer_s * 1e3:9.2f} ms'} {sp} | {status} {note}")

    # ---------------------------------------------------------------- CPU: scipy
    def run_cpu(self, case, P64, r):
        from scipy.spatial import cKDTree

        w = self.workers
        points = torch.from_numpy(P64).to(self.dtype)
        P = points.double().numpy()  # what pyengine sees, in float64, for scipy and the checks
        n = len(P)
        tree_s = cKDTree(P)

        # build + radius
        ours = ops.radius_search(points, points, r)
        peer = lists_to_csr(tree_s.query_ball_point(P, r, workers=w, return_sorted=True))
        match, diff, note = compare_csr(ours, peer, P, P, r, self.dtype)
        del ours, peer
        t = self.time(lambda: ops.radius_search(points, points, r))
        tp = self.time(lambda: cKDTree(P).query_ball_point(P, r, workers=w, return_sorted=True))
        self.add(case, "build+radius", t, "cKDTree+query_ball_point", tp, match, diff, note)

        # query on a prebuilt tree
        tree = ops.KDTree(points)
        t = self.time(lambda: tree.radius(points, r))
        tp = self.time(lambda: tree_s.query_ball_point(P, r, workers=w, return_sorted=True))
        self.add(case, "radius (tree)", t, "query_ball_point", tp, match, diff, "prebuilt trees")

        # build alone
        t = self.time(lambda: ops.KDTree(points))
        tp = self.time(lambda: cKDTree(P))
        self.add(case, "build", t, "cKDTree()", tp, None, None, "cKDTree build is single-threaded")

        # max_neighbors = K: the K nearest within r
        ours = ops.radius_search(points, points, r, max_neighbors=K)
        d, i = tree_s.query(P, K, distance_upper_bound=r * (1 + 1e-15), workers=w)
        match, diff, note = compare_csr(ours, knn_peer_dense(i, n), P, P, r, self.dtype, k=K)
        del ours, d, i
        t = self.time(lambda: ops.radius_search(points, points, r, max_neighbors=K))
        tp = self.time(lambda: cKDTree(P).query(P, K, distance_upper_bound=r, workers=w))
        self.add(case, f"radius k<={K}", t, "cKDTree+query(ub=r)", tp, match, diff, note)

        # multi-radius
        radii = [r / 2, r / math.sqrt(2), r]
        outs = ops.radius_search_multi(points, points, radii)
        match, diff = True, 0.0
        for rad, out in zip(radii, outs):
            m_, d_, _ = compare_csr(out, lists_to_csr(tree_s.query_ball_point(P, rad, workers=w, return_sorted=True)),
                                    P, P, rad, self.dtype, sample_rows=500)
            match, diff = match and m_, max(diff, d_)
        del outs
        t = self.time(lambda: ops.radius_search_multi(points, points, radii))

        def peer_multi():
            tr = cKDTree(P)
            return [tr.query_ball_point(P, rad, workers=w, return_sorted=True) for rad in radii]

        tp = self.time(peer_multi)
        self.add(case, "multi 3 radii", t, "cKDTree+3 query_ball_point", tp, match, diff, "r/2, r/sqrt2, r")

        # knn
        dist, idx = ops.knn(points, points, K)
        dref, iref = tree_s.query(P, K, workers=w)
        ddiff = float(np.abs(dist.double().numpy() - dref).max())
        match = ddiff <= 4 * REL_TOL[self.dtype] * float(dref.max())
        note = f"idx differ {100 * float((idx.numpy() != iref).mean()):.3f}% (ties)"
        del dist, idx
        t = self.time(lambda: ops.knn(points, points, K))
        tp = self.time(lambda: cKDTree(P).query(P, K, workers=w))
        self.add(case, f"knn k={K}", t, "cKDTree+query", tp, match, ddiff, note)

    # ---------------------------------------------------------------- CUDA: brute force
    def run_cuda(self, case, P64, r):
        a = self.args
        points = torch.from_numpy(P64).to(self.dtype).to(self.device)
        P = points.double().cpu().numpy()
        n = len(P)
        brute = Brute(points, a.chunk_mb)
        m_peer = n if n * n <= a.brute_max_pairs else max(brute.rows, a.brute_max_pairs // n // brute.rows * brute.rows)
        m_peer = min(n, m_peer)
        qp = points[:m_peer]
        scale = n / m_peer
        extra = "" if m_peer == n else f"; peer extrapolated from {format_count(m_peer)} queries"

        ours = ops.radius_search(points, points, r)
        peer = brute.radius(qp, r)
        sub = (ours[0][:m_peer + 1], ours[1][:int(ours[0][m_peer])])
        match, diff, note = compare_csr(sub, tuple(t.cpu().numpy() for t in peer), P, P[:m_peer], r, self.dtype)
        note = f"nnz {nnz_str(int(ours[0][-1]))} ({int(ours[0][-1]) / n:.1f}/row)" + (
            "" if match else "; rows differ beyond ties")
        del ours, peer, sub
        t = self.time(lambda: ops.radius_search(points, points, r))
        tp = self.time(lambda: brute.radius(qp, r)) * scale
        self.add(case, "build+radius", t, "cdist brute force", tp, match, diff, note + extra)

        tree = ops.KDTree(points)
        t = self.time(lambda: tree.radius(points, r))
        self.add(case, "radius (tree)", t, "cdist brute force", tp, match, diff, "prebuilt tree" + extra)
        t = self.time(lambda: ops.KDTree(points))
        self.add(case, "build", t, "-", None, None, None, "")

        outs = ops.radius_search_multi(points, points, [r / 2, r / math.sqrt(2), r])
        del outs
        t = self.time(lambda: ops.radius_search_multi(points, points, [r / 2, r / math.sqrt(2), r]))
        tp3 = self.time(lambda: [brute.radius(qp, rad) for rad in (r / 2, r / math.sqrt(2), r)]) * scale
        self.add(case, "multi 3 radii", t, "3x cdist brute force", tp3, None, None, "r/2, r/sqrt2, r" + extra)

        dist, idx = ops.knn(points, points, K)
        dref, iref = brute.knn(qp, K)
        ddiff = float((dist[:m_peer].double() - dref.double()).abs().max())
        match = ddiff <= 1e-4 * float(dref.max()) + 1e-6
        note = f"idx differ {100 * float((idx[:m_peer] != iref).float().mean()):.3f}% (ties)"
        del dist, idx, dref, iref
        t = self.time(lambda: ops.knn(points, points, K))
        tp = self.time(lambda: brute.knn(qp, K)) * scale
        self.add(case, f"knn k={K}", t, "cdist+topk brute force", tp, match, ddiff, note + extra)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None,
                   help="comma list of N (default: cpu 10k,100k,200k (+1M with --large); cuda 10k,100k,1M)")
    p.add_argument("--large", action="store_true", help="CPU: add N = 1M")
    p.add_argument("--clouds", default=",".join(CLOUDS), help=f"comma list from {CLOUDS}")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU); scipy gets as many")
    p.add_argument("--repeat", type=int, default=None, help="timed calls per op (default 10 cuda, 5 cpu; 2 --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 1)")
    p.add_argument("--chunk-mb", type=int, default=1024, help="cuda peer: MiB of distances per cdist chunk")
    p.add_argument("--brute-max-pairs", type=parse_count, default=parse_count("2e10"),
                   help="cuda peer: above N*M pairs run it on the first queries and scale (default 2e10)")
    add_common_args(p)
    args = parse_common(p, argv)
    on_cuda = args.device == "cuda"
    if args.sizes is None:
        sizes = ["10k", "30k"] if args.quick else (["10k", "100k", "1M"] if on_cuda else ["10k", "100k", "200k"])
        if args.large and not on_cuda and not args.quick:
            sizes.append("1M")
        args.sizes = ",".join(sizes)
    args.sizes = [parse_count(s) for s in args.sizes.split(",") if s.strip()]
    if args.repeat is None:
        args.repeat = 2 if args.quick else (10 if on_cuda else 5)
    if args.warmup is None:
        args.warmup = 1
    if args.max_seconds is None and not on_cuda:
        args.max_seconds = 3.0
    args.clouds = choice_list(p, args.clouds, CLOUDS, "cloud")
    if any(n < 2 for n in args.sizes):
        p.error("--sizes must be >= 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    command = command_line(__file__)
    import scipy
    from scipy.spatial import cKDTree

    bench = Bench(args)
    header = [
        f"machine: {machine_description(dev)}",
        f"command: {command}",
        f"self-search (M = N) in 3-D, dtype {args.dtype}, radius for {TARGET_NEIGHBORS} neighbors on average, "
        f"k = {K}; repeat {args.repeat} (median), warmup {args.warmup}"
        + (f", <= {args.max_seconds:g} s timed per op" if args.max_seconds else ""),
        (f"peer: scipy {scipy.__version__} cKDTree, workers={bench.workers} (= pyengine threads), float64 inputs"
         if dev.type == "cpu"
         else f"peer: torch {torch.__version__} cdist brute force ({EXACT}), {args.chunk_mb} MiB chunks"),
    ]
    if dev.type == "cpu":
        busy = busy_cpus()
        if busy is not None:
            header.append(f"other load at start: {busy:.2f} of {os.cpu_count()} CPUs busy"
                          + ("  (WARNING: machine not idle, CPU timings unreliable)" if busy > 0.25 else ""))
    for line in header:
        log(line)

    t_run = time.perf_counter()
    for cloud in args.clouds:
        for n in args.sizes:
            rng = np.random.default_rng(args.seed)
            P64 = make_cloud(cloud, n, rng)
            if P64 is None:
                log(f"cloud {cloud}: {CAR_DIR} absent, skipped")
                break
            P64 = torch.from_numpy(P64).to(bench.dtype).double().numpy()
            r = radius_for_mean(P64, cKDTree(P64), TARGET_NEIGHBORS, rng, bench.workers)
            case = f"{cloud} N={format_count(n)}"
            header.append(f"case {case}: radius {r:.4g}")
            log(f"case {case}, radius {r:.4g} ...")
            if dev.type == "cpu":
                bench.run_cpu(case, P64, r)
            else:
                bench.run_cuda(case, P64, r)
    log(f"benchmark {time.perf_counter() - t_run:.1f} s")
    if dev.type == "cpu":
        busy = busy_cpus()
        if busy is not None:
            header.append(f"other load at end: {busy:.2f} of {os.cpu_count()} CPUs busy"
                          + ("  (WARNING: machine not idle, CPU timings unreliable)" if busy > 0.25 else ""))

    sys.stderr.flush()
    if args.markdown:
        for line in header:
            print(f"- {line}" if not line.startswith("command") else f"- command: `{command}`")
        print()
    else:
        print("\n".join(header))
        print()
    print_table(bench.rows, markdown=args.markdown, show_bandwidth=False)
    print()
    print("speedup = peer ms / pyengine ms (> 1: pyengine faster). max abs diff: radius rows, max |row length "
          "difference|; knn, max |distance difference|. match: pair sets / distances equal up to float ties.")
    mismatches = [r for r in bench.rows if r.match is False]
    if mismatches:
        bold = "**" if args.markdown else ""
        print(f"{bold}WARNING: {len(mismatches)} result(s) differ from the peer beyond float ties{bold}")
    sys.stdout.flush()
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
