"""Generation time of pyengine's physics datasets (gmsh + scikit-fem), from an empty cache.

Times, each on a fresh temporary cache directory (so every sample is really solved):

* one potential-flow solve around the unit sphere at the default resolution, with its
  Cp error against the analytic 1 - 9/4 sin^2(theta) (relative L2 over the surface nodes);
* the default "quick" flow dataset (``QUICK_FLOW``: 32 Ahmed-like bodies, h_body 0.06 radii)
  with ``--workers`` processes, plus a second build that loads it from the cache;
* the default 2D Darcy dataset (64 samples, h = 0.03).

Wall-clock times (``time.perf_counter``) of single runs, and CPU seconds (this process plus
its worker processes, from ``getrusage``): on a shared machine the wall time depends on the
load, the CPU time hardly does, and on an idle machine wall ~ CPU / workers plus the ~5 s
start-up of the spawned workers. ``busy`` is the number of CPUs other processes kept busy
just before the run (near 0 means an idle machine).

Examples::

    python -m bench.datasets --markdown
    python -m bench.datasets --quick            # 4 shapes, smoke run
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

from ._timing import busy_cpus, machine_description  # noqa: E402

from pyengine.data import DiskCache  # noqa: E402
from pyengine.data.physics import QUICK_FLOW, build_darcy_dataset, build_flow_dataset, potential_flow, sphere  # noqa: E402


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _row(cells, markdown):
    return "| " + " | ".join(str(c) for c in cells) + " |" if markdown else "  ".join(f"{c!s:>14}" for c in cells)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--flow-n", type=int, default=QUICK_FLOW["n"])
    p.add_argument("--kind", default=QUICK_FLOW["kind"])
    p.add_argument("--darcy-n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="4 flow shapes and 8 Darcy samples")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.flow_n, a.darcy_n = 4, 8
    print(f"machine: {machine_description('cpu')}, {os.cpu_count()} CPUs, workers {a.workers}")
    header = ["what", "items", "wall s", "CPU s", "CPU s / item", "points / item", "busy CPUs", "note"]
    rows = []

    busy = busy_cpus()
    t, c = time.perf_counter(), _cpu()
    s = potential_flow(sphere(1.0))
    dt, dc = time.perf_counter() - t, _cpu() - c
    x = s.points.double().numpy()
    exact = 1 - 2.25 * (1 - (x[:, 0] / np.linalg.norm(x, axis=1)) ** 2)
    err = np.linalg.norm(s.fields["cp"].double().numpy() - exact) / np.linalg.norm(exact)
    rows.append(["sphere solve (default res.)", 1, f"{dt:.1f}", f"{dc:.1f}", f"{dc:.1f}", s.num_points, f"{busy:.2f}",
                 f"Cp rel L2 err {100 * err:.2f}%, {s.metadata['n_dofs']} P2 dofs"])

    progress = not a.no_progress
    with tempfile.TemporaryDirectory() as root:
        cache = DiskCache(root)
        busy = busy_cpus()
        t, c = time.perf_counter(), _cpu()
        ds = build_flow_dataset(a.flow_n, a.kind, a.seed, workers=a.workers, cache=cache, progress=progress)
        dt, dc = time.perf_counter() - t, _cpu() - c
        pts = np.mean([d.num_points for d in ds])
        dofs = np.mean([d.metadata["n_dofs"] for d in ds])
        rows.append([f"flow dataset ({a.kind})", len(ds), f"{dt:.1f}", f"{dc:.1f}", f"{dc / len(ds):.2f}", f"{pts:.0f}",
                     f"{busy:.2f}", f"h_body {QUICK_FLOW['resolution']['h_body']}, mean {dofs:.0f} P2 dofs"])
        t, c = time.perf_counter(), _cpu()
        build_flow_dataset(a.flow_n, a.kind, a.seed, workers=a.workers, cache=cache, progress=False)
        dt, dc = time.perf_counter() - t, _cpu() - c
        rows.append(["  same, from cache", len(ds), f"{dt:.2f}", f"{dc:.2f}", f"{dc / len(ds):.3f}", f"{pts:.0f}",
                     "", ""])

        busy = busy_cpus()
        t, c = time.perf_counter(), _cpu()
        dd = build_darcy_dataset(a.darcy_n, a.seed, workers=a.workers, cache=cache, progress=progress)
        dt, dc = time.perf_counter() - t, _cpu() - c
        pts = np.mean([d.num_points for d in dd])
        rows.append(["darcy2d dataset", len(dd), f"{dt:.1f}", f"{dc:.1f}", f"{dc / len(dd):.2f}", f"{pts:.0f}", f"{busy:.2f}",
                     "P1, h 0.03"])

    if a.markdown:
        print(_row(header, True))
        print(_row(["---"] * len(header), True))
    else:
        print(_row(header, False))
    for r in rows:
        print(_row(r, a.markdown))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
