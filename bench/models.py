"""Model families: training step time and inference latency at N input points, and GAOT fused vs plain.

For each family (GNO, GINO, GAOT, RIGNO) on one surface cloud of N points
(area-weighted samples of an elongated body, normals as inputs, queries = the
points), the script times

* a training step: forward + backward + AdamW step, graphs already cached
  (they are built once per geometry, as in training);
* inference: ``torch.no_grad`` forward with cached graphs;

and reports the peak extra memory of the training step (CUDA:
``torch.cuda.max_memory_allocated`` above the memory in use before the step;
CPU: peak resident set size above the resident size before the step, via
``/proc/self/clear_refs``). The same GAOT then runs with its fused kernels
switched off (``model.use_fused_kernels(False)``: the attention and integral layers
run as plain gather -> compute -> scatter in PyTorch), in the same run, and the table
gives the fused/plain ratios.

Examples::

    python -m bench.models --device cpu --points 100k --markdown
    python -m bench.models --device cuda --points 100k
    python -m bench.models --quick
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys

import torch

from ._timing import (  # noqa: E402
    add_common_args,
    cuda_peak_extra,
    format_count,
    machine_description,
    measure,
    parse_common,
    parse_count,
)

CONFIGS = {
    "gno": dict(hidden=32, layers=2, radius=0.06, kernel_hidden=(32,), max_neighbors=24),
    "gino": dict(hidden=32, grid=(32, 16, 16), modes=(12, 8, 8), fno_layers=4, kernel_hidden=(32,), max_neighbors=24),
    "gaot": dict(hidden=64, grid=(16, 8, 8), radii_cells=(1.0, 2.0), heads=4, dim=128, depth=3, vit_heads=4,
                 patch=2, max_neighbors=32),
    "rigno": dict(hidden=48, edge_dim=24, regional_ratio=0.1, processor_steps=3, max_neighbors=24),
}


def surface_cloud(n: int, seed: int = 0):
    """``n`` area-weighted samples of a capsule-like body (2:1:1) in the unit frame, with outward normals."""
    import trimesh

    body = trimesh.creation.capsule(height=1.0, radius=0.5, count=[48, 48])
    body.apply_scale([1.0, 1.0, 1.0])
    pts, face = trimesh.sample.sample_surface(body, n, seed=seed)
    normals = body.face_normals[face]
    p = torch.tensor(pts, dtype=torch.float32)
    lo, hi = p.min(0).values, p.max(0).values
    p = (p - (lo + hi) / 2) / ((hi - lo).max() / 2)
    return p, torch.tensor(normals, dtype=torch.float32)


def _return_freed_memory_to_the_os() -> None:
    """Make glibc serve every allocation above 64 KiB by mmap and unmap it on free.

    By default glibc raises its mmap threshold after the first large frees, after
    which freed tensors stay resident and the peak-RSS measurement below would see
    no growth at all. A fixed threshold keeps RSS equal to the memory in use.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_extra(fn, device: torch.device) -> int | None:
    """Peak memory of one call of ``fn`` beyond what was in use before it (bytes)."""
    if device.type == "cuda":
        return cuda_peak_extra(fn, device)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # VmHWM := current RSS
    except OSError:
        return None
    before = _rss()
    fn()
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    return hwm - before


def bench_family(name: str, fused: bool, pts, nrm, target, device, repeat: int, max_seconds):
    from pyengine.models import build

    torch.manual_seed(0)
    model = build(name, 3, 1, 3, **CONFIGS[name]).to(device)
    if not fused:
        model.use_fused_kernels(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = ((model(pts, nrm) - target) ** 2).mean()
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(pts, nrm)

    train_step()  # builds and caches the graphs of this geometry
    t_train = measure(train_step, repeat=repeat, warmup=1, device=device, max_seconds=max_seconds)
    t_infer = measure(infer, repeat=repeat, warmup=1, device=device, max_seconds=max_seconds)
    mem = peak_extra(train_step, device)
    params = sum(p.numel() for p in model.parameters())
    del model, opt
    gc.collect()
    return t_train, t_infer, mem, params


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--points", default="100k", help="input points N (default 100k; 20k with --quick)")
    p.add_argument("--families", default="gno,gino,gaot,rigno")
    p.add_argument("--repeat", type=int, default=None, help="timed calls (default 5; 2 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parse_common(p, argv)
    _return_freed_memory_to_the_os()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = parse_count("20k" if args.quick and args.points == "100k" else args.points)
    repeat = args.repeat or (2 if args.quick else 5)
    pts, nrm = surface_cloud(n, args.seed)
    target = (torch.sin(3 * pts[:, :1]) + nrm[:, :1]).to(device)
    pts, nrm = pts.to(device), nrm.to(device)

    print(f"# models, N = {format_count(n)} input points, {machine_description(device)}")
    rows = []
    results = {}
    families = [f for f in args.families.split(",") if f]
    runs = [(f, True) for f in families] + ([("gaot", False)] if "gaot" in families else [])
    for name, fused in runs:
        label = name if fused else "gaot (plain)"
        try:
            r = bench_family(name, fused, pts, nrm, target, device, repeat, args.max_seconds)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory for the plain path
            print(f"{label}: failed: {str(e).splitlines()[0][:200]}")
            continue
        results[(name, fused)] = r
        t_train, t_infer, mem, params = r
        mem_s = "n/a" if mem is None else f"{mem / 2**20:.0f} MiB"
        rows.append((label, f"{t_train * 1e3:.1f}", f"{t_infer * 1e3:.1f}", mem_s, f"{params / 1e3:.0f}k"))
    header = ("family", "train step ms", "inference ms", "peak extra memory (train)", "parameters")
    sep = "|" if args.markdown else " "
    print(("| " if args.markdown else "") + f" {sep} ".join(header) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print(("| " if args.markdown else "") + f" {sep} ".join(r) + (" |" if args.markdown else ""))
    if ("gaot", True) in results and ("gaot", False) in results:
        f, pl = results[("gaot", True)], results[("gaot", False)]
        mem_ratio = (pl[2] / f[2]) if f[2] and pl[2] else math.nan
        print(f"\nGAOT fused vs plain: training step {pl[0] / f[0]:.2f}x faster, inference {pl[1] / f[1]:.2f}x faster, "
              f"peak training memory {mem_ratio:.2f}x lower")


if __name__ == "__main__":
    main()
