"""Benchmark pyengine.pyg (torch_cluster / PyG drop-ins) against the pure-torch paths PyG users have.

torch_cluster and torch_scatter ship no wheels for current torch, so a PyG user without them
falls back to plain torch. Measured in the same run, on the same inputs:

* ``feature kNN d=16/64/256``: ``knn_bruteforce`` (tiled GEMM + running top-k) vs
  ``torch.cdist`` + ``topk`` (DGCNN-style feature space, N = M = --feat-n points, k = 20);
* ``knn_graph``: ``pyengine.pyg.knn_graph(x, k, batch)`` vs a masked ``cdist`` + ``topk``
  per batch of 8 clouds (d = 3 through the k-d tree, d = 32 through the brute-force kernel);
* ``radius_graph``: ``pyengine.pyg.radius_graph`` vs ``cdist`` + threshold + nearest-32 per cloud;
* ``fps``: ``pyengine.pyg.fps`` vs a torch loop (one vectorised distance update per sample);
* ``softmax``: ``pyengine.pyg.softmax`` vs ``torch_geometric.utils.softmax`` (PyG's own
  scatter-based code) for a sorted and an unsorted ``index`` (E edges, H heads).

Ratios are peer time / pyengine time (> 1: pyengine faster). pyengine and the peer are timed
interleaved (ours, peer, ours, peer, ...) after one warm-up call each, and the note gives the
median of the per-pair ratios, so load that changes during the run hits both sides alike. "match" compares pyengine's
result with the peer's computed untimed in cdist's exact (difference-based) mode: the timed
default (matmul) mode is off by ~1e-3 in float32, which changes neighbour sets at near-ties.

Examples::

    python -m bench.pyg
    python -m bench.pyg --quick
    python -m bench.pyg --device cuda
"""

from __future__ import annotations

import argparse
import math

import torch

from pyengine import pyg
from pyengine.ops import knn_bruteforce

from ._timing import Row, machine_description, print_table, synchronize


EXACT = "donot_use_mm_for_euclid_dist"  # untimed references: cdist's default matmul form is off by ~1e-3
MM = "use_mm_for_euclid_dist_if_necessary"  # torch.cdist's default, what the timed peers use


def _cdist_topk(x, y, k, mode=MM):
    d = torch.cdist(y, x, compute_mode=mode)
    return torch.topk(d, k, dim=1, largest=False)


def _batched_cdist_knn_graph(x, k, batch, mode=MM):
    """Pure-torch kNN graph: one cdist per cloud, topk of k + 1, self dropped."""
    rows, cols = [], []
    ptr = torch.cat([batch.new_zeros(1), torch.cumsum(torch.bincount(batch), 0)]).tolist()
    for a, b in zip(ptr[:-1], ptr[1:]):
        d = torch.cdist(x[a:b], x[a:b], compute_mode=mode)
        d.fill_diagonal_(math.inf)
        kk = min(k, b - a - 1)
        idx = torch.topk(d, kk, dim=1, largest=False).indices + a
        rows.append(idx.flatten())
        cols.append(torch.arange(a, b, device=x.device).repeat_interleave(kk))
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def _batched_cdist_radius_graph(x, r, batch, max_num, mode=MM):
    rows, cols = [], []
    ptr = torch.cat([batch.new_zeros(1), torch.cumsum(torch.bincount(batch), 0)]).tolist()
    for a, b in zip(ptr[:-1], ptr[1:]):
        d = torch.cdist(x[a:b], x[a:b], compute_mode=mode)
        d.fill_diagonal_(math.inf)
        kk = min(max_num, b - a - 1)
        val, idx = torch.topk(d, kk, dim=1, largest=False)
        keep = val <= r
        cols.append(torch.arange(a, b, device=x.device).unsqueeze(1).expand_as(idx)[keep])
        rows.append(idx[keep] + a)
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def _torch_fps(pos, n_samples):
    mind = torch.full((pos.shape[0],), math.inf, dtype=pos.dtype, device=pos.device)
    out = torch.empty(n_samples, dtype=torch.long, device=pos.device)
    cur = torch.zeros((), dtype=torch.long, device=pos.device)
    out[0] = cur
    for i in range(1, n_samples):
        mind = torch.minimum(mind, (pos - pos[cur]).square().sum(1))
        cur = torch.argmax(mind)
        out[i] = cur
    return out


def _interleaved(ours, peer, repeat, device, max_seconds=60.0):
    """(median ours s, median peer s, median of the per-pair ratios peer / ours)."""
    import statistics
    import time

    ours(), peer()
    synchronize(device)
    t_o, t_p, ratios = [], [], []
    start = time.perf_counter()
    for i in range(max(1, repeat)):
        t0 = time.perf_counter()
        ours()
        synchronize(device)
        t1 = time.perf_counter()
        peer()
        synchronize(device)
        t2 = time.perf_counter()
        t_o.append(t1 - t0)
        t_p.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
        if i >= 2 and t2 - start > max_seconds:
            break
    return statistics.median(t_o), statistics.median(t_p), statistics.median(ratios)


def _same_edges(a, b):
    ka = (a[0] * (1 << 32) + a[1]).sort().values
    kb = (b[0] * (1 << 32) + b[1]).sort().values
    return ka.shape == kb.shape and bool((ka == kb).all())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    dev = torch.device(args.device)
    q = args.quick
    rep = dict(repeat=args.repeat, device=dev)
    g = torch.Generator(device="cpu").manual_seed(0)
    rows: list[Row] = []
    print(f"# bench.pyg on {machine_description(dev)}")

    # feature-space kNN
    n = 2000 if q else 8000
    for d in (16, 64, 256):
        x = torch.randn(n, d, generator=g).to(dev)
        ours, peer, ratio = _interleaved(lambda: knn_bruteforce(x, x, 20), lambda: _cdist_topk(x, x, 20), **rep)
        dist, _ = knn_bruteforce(x, x, 20)
        ref = _cdist_topk(x, x, 20, EXACT).values
        ok = bool(torch.allclose(dist, ref, rtol=1e-4, atol=1e-5))
        rows.append(Row(f"N=M={n}, d={d}, k=20", "feature kNN", ours, "cdist+topk", peer, match=ok,
                        note=f"median pair ratio {ratio:.2f}x"))

    # knn_graph / radius_graph over batches of 8 clouds
    for d, per in ((3, 2000 if q else 10000), (32, 500 if q else 2000)):
        nb = 8
        x = torch.rand(nb * per, d, generator=g).to(dev)
        batch = torch.arange(nb).repeat_interleave(per).to(dev)
        for k in (16, 32):
            ours, peer, ratio = _interleaved(lambda: pyg.knn_graph(x, k, batch, batch_size=nb),
                                             lambda: _batched_cdist_knn_graph(x, k, batch), **rep)
            a, b = pyg.knn_graph(x, k, batch), _batched_cdist_knn_graph(x, k, batch, EXACT)
            rows.append(Row(f"8 x {per} pts, d={d}, k={k}", "knn_graph", ours, "cdist+topk", peer,
                            match=_same_edges(a, b), note=f"median pair ratio {ratio:.2f}x"))
        if d == 3:
            r = 0.6 * (32 / per) ** (1 / 3)
            ours, peer, ratio = _interleaved(
                lambda: pyg.radius_graph(x, r, batch, max_num_neighbors=32, batch_size=nb),
                lambda: _batched_cdist_radius_graph(x, r, batch, 32), **rep)
            a = pyg.radius_graph(x, r, batch, max_num_neighbors=32)
            b = _batched_cdist_radius_graph(x, r, batch, 32, EXACT)
            rows.append(Row(f"8 x {per} pts, d=3, r={r:.3f}", "radius_graph", ours, "cdist+topk", peer,
                            match=_same_edges(a, b), note=f"median pair ratio {ratio:.2f}x"))

    # fps
    npts = 5000 if q else 20000
    pos = torch.rand(npts, 3, generator=g).to(dev)
    s = npts // 4
    ours, peer, ratio = _interleaved(lambda: pyg.fps(pos, ratio=0.25, random_start=False),
                                     lambda: _torch_fps(pos, s), **dict(rep, repeat=min(args.repeat, 3)))
    ok = torch.equal(pyg.fps(pos, ratio=0.25, random_start=False), _torch_fps(pos, s))
    rows.append(Row(f"N={npts}, ratio=0.25", "fps", ours, "torch loop", peer, match=ok, note=f"median pair ratio {ratio:.2f}x"))

    # softmax vs PyG
    try:
        from torch_geometric.utils import softmax as pyg_softmax
    except ImportError:
        pyg_softmax = None
    if pyg_softmax is not None:
        E, nodes, H = (200_000, 20_000, 4) if q else (2_000_000, 100_000, 4)
        index = torch.sort(torch.randint(0, nodes, (E,), generator=g)).values.to(dev)
        src = torch.randn(E, H, generator=g).to(dev)
        perm = torch.randperm(E, generator=g).to(dev)
        for name, idx, sv in (("sorted", index, src), ("unsorted", index[perm], src[perm])):
            ours, peer, ratio = _interleaved(lambda: pyg.softmax(sv, idx, num_nodes=nodes),
                                             lambda: pyg_softmax(sv, idx, num_nodes=nodes), **rep)
            ok = bool(torch.allclose(pyg.softmax(sv, idx, num_nodes=nodes), pyg_softmax(sv, idx, num_nodes=nodes),
                                     rtol=1e-5, atol=1e-6))
            rows.append(Row(f"E={E}, H={H}, {name} index", "softmax", ours, "PyG softmax", peer, match=ok,
                            note=f"median pair ratio {ratio:.2f}x"))
    print_table(rows, markdown=args.markdown)


if __name__ == "__main__":
    main()
