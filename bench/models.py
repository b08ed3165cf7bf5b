"""Model families: training step time and inference latency at N input points, and GAOT fused vs plain.

For each family (GNO, GINO, GAOT, GAOT-fast, RIGNO, GNOT, MgNO, MG-TFNO, MP-PDE, NUNO) on one surface cloud of N points
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

The table's last column is each family's test error on one shared task (issue 20): the
demo's potential-flow bodies (surface normals -> Cp; ``--error-bodies`` training / test
bodies), ``--error-steps`` AdamW steps from the same seed for every family, mean relative
L2 on the unseen test bodies (:func:`test_error`). Timing and memory are at ``--points``
on the capsule cloud, the test error at the bodies' own resolution.

With ``--peers`` it instead compares against the reference implementations, in one
process with interleaved steps (see ``bench/_model_peers.py``): the GNO layer against
neuraloperator's ``IntegralTransform`` (when ``neuralop`` is importable), and the
paper-faithful GAOT against the official code (``--official-gaot PATH``, a checkout of
camlab-ethz/GAOT) and against the plain-PyTorch formulation of the official forward,
on the demo's potential-flow bodies (step time, peak extra memory, test error after
``--steps`` steps).

Examples::

    python -m bench.models --device cpu --points 100k --markdown
    python -m bench.models --device cuda --points 100k
    python -m bench.models --quick
    python -m bench.models --peers --steps 300 --markdown [--official-gaot ~/src/GAOT]
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
    "gaot_fast": dict(hidden=64, grid=(16, 8, 8), radii_cells=(1.0, 2.0), heads=4, dim=128, depth=3, vit_heads=4,
                      patch=2, max_neighbors=32),
    "gno": dict(hidden=32, layers=2, radius=0.06, kernel_hidden=(32,), max_neighbors=24),
    "gino": dict(hidden=32, grid=(32, 16, 16), modes=(12, 8, 8), fno_layers=4, kernel_hidden=(32,), max_neighbors=24),
    "gaot": dict(hidden=64, grid=(16, 8, 8), radii_cells=(1.0, 2.0), encoder_kernel_hidden=(64, 64),
                 decoder_kernel_hidden=(64,), dim=128, depth=3, vit_heads=4, patch=2, projection_hidden=64),
    "rigno": dict(hidden=48, edge_dim=24, regional_ratio=0.1, processor_steps=3, max_neighbors=24),
    # issue 20: GNOT, MgNO, MG-TFNO
    "gnot": dict(hidden=64, layers=3, heads=4, experts=4, ffn_hidden=128, gate_hidden=64, embed_hidden=64),
    "mgno": dict(hidden=32, grid=(32, 16, 16), levels=3, smoothing=2, layers=4, kernel_hidden=(32,), max_neighbors=24),
    "mgtfno": dict(hidden=32, grid=(32, 16, 16), modes=(8, 6, 4), layers=4, rank=0.5, patches=(2, 2, 2), mg_levels=1,
                   kernel_hidden=(32,), max_neighbors=24),
}
# issue 20: MP-PDE (K = 1: the first normal component is the "state", the other two parameters) and NUNO
CONFIGS.update({
    "mppde": dict(hidden=64, layers=4, radius=0.06, max_neighbors=16),
    "nuno": dict(hidden=16, leaves=8, subgrid=(8, 8, 8), modes=(4, 4, 4), fno_layers=4),
})


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


def test_error(name: str, train, test, steps: int, device, seed: int = 0) -> float:
    """Mean relative L2 test error of ``name`` (its ``CONFIGS`` entry) after ``steps`` AdamW steps.

    Every family sees the same data: the demo's potential-flow bodies (normals -> surface Cp,
    :func:`_demo_bodies`), batch 1 cycling through the training bodies in order, lr 1e-3, the
    target standardised with the training mean and standard deviation (the error is in Cp units),
    the same initial seed.
    """
    from pyengine.models import build

    torch.manual_seed(seed)
    model = build(name, 3, 1, 3, **CONFIGS[name]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ys = torch.cat([t[2] for t in train])
    mu, sd = ys.mean(), ys.std().clamp_min(1e-12)
    model.train()
    for i in range(steps):
        pts, nrm, y = (t.to(device) for t in train[i % len(train)])
        opt.zero_grad(set_to_none=True)
        loss = ((model(pts, nrm) - (y - mu.to(device)) / sd.to(device)) ** 2).mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"training loss became {float(loss)} at step {i}")
        loss.backward()
        opt.step()
    model.eval()
    err = 0.0
    with torch.no_grad():
        for pts, nrm, y in test:
            pred = model(pts.to(device), nrm.to(device)).cpu() * sd + mu
            err += float((pred - y).norm() / y.norm()) / len(test)
    del model, opt
    gc.collect()
    return err


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--points", default="100k", help="input points N (default 100k; 20k with --quick)")
    p.add_argument("--families", default=",".join(CONFIGS))
    p.add_argument("--peers", action="store_true", help="compare with neuralop / the official GAOT instead")
    p.add_argument("--official-gaot", default=None, metavar="PATH", help="checkout of camlab-ethz/GAOT (new_src)")
    p.add_argument("--steps", type=int, default=None, help="--peers: GAOT training steps (default 300; 20 --quick)")
    p.add_argument("--gno-points", default=None, help="--peers: GNO layer points (default 50k; 10k --quick)")
    p.add_argument("--gaot-points", default=None, help="--peers: GAOT-3D-like synthetic inputs of this many points "
                   "per sample instead of the demo bodies (e.g. 50k)")
    p.add_argument("--gaot-grid", default=None, help="--peers: GAOT token grid, e.g. 32,32,16 (default 16,8,8)")
    p.add_argument("--gaot-radius", type=float, default=None, help="--peers: official radius (default 0.15)")
    p.add_argument("--gaot-scales", default=None, help="--peers: official radius scales (default 1,2)")
    p.add_argument("--gaot-samples", default="2,1", help="--peers with --gaot-points: training,test samples")
    p.add_argument("--no-gno", action="store_true", help="--peers: skip the GNO layer comparison")
    p.add_argument("--gaot-per-scale", action="store_true",
                   help="--peers: also time pyengine GAOT with the MAGNO scales integrated one by one")
    p.add_argument("--repeat", type=int, default=None, help="timed calls (default 5; 2 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--error-steps", type=int, default=None,
                   help="test-error column: AdamW steps per family on the demo bodies (default 200; 20 with --quick; "
                        "0: no test error)")
    p.add_argument("--error-bodies", default=None,
                   help="test-error column: TRAIN,TEST demo bodies (default 16,8; 4,2 with --quick)")
    args = parse_common(p, argv)
    _return_freed_memory_to_the_os()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.peers:
        return run_peers(args, device)
    n = parse_count("20k" if args.quick and args.points == "100k" else args.points)
    repeat = args.repeat or (2 if args.quick else 5)
    pts, nrm = surface_cloud(n, args.seed)
    target = (torch.sin(3 * pts[:, :1]) + nrm[:, :1]).to(device)
    pts, nrm = pts.to(device), nrm.to(device)

    print(f"# models, N = {format_count(n)} input points, {machine_description(device)}")
    error_steps = args.error_steps if args.error_steps is not None else (20 if args.quick else 200)
    if error_steps > 0:
        n_tr, n_te = (int(v) for v in (args.error_bodies or ("4,2" if args.quick else "16,8")).split(","))
        err_train, err_test = _demo_bodies(n_tr, n_te)
        avg = sum(t[0].shape[0] for t in err_train + err_test) / (n_tr + n_te)
        print(f"# test error: {n_tr} training / {n_te} test demo bodies (normals -> Cp, ~{avg:.0f} surface points "
              f"each), {error_steps} AdamW steps per family (lr 1e-3, batch 1), mean relative L2 on the test bodies")
    rows = []
    results = {}
    families = [f for f in args.families.split(",") if f]
    runs = [(f, True) for f in families] + [(f, False) for f in ("gaot", "gaot_fast") if f in families]
    for name, fused in runs:
        label = name if fused else f"{name} (plain)"
        try:
            r = bench_family(name, fused, pts, nrm, target, device, repeat, args.max_seconds)
        except (RuntimeError, ValueError) as e:  # e.g. out of memory for the plain path
            print(f"{label}: failed: {str(e).splitlines()[0][:200]}")
            continue
        results[(name, fused)] = r
        t_train, t_infer, mem, params = r
        mem_s = "n/a" if mem is None else f"{mem / 2**20:.0f} MiB"
        err_s = "-"
        if error_steps > 0 and fused:
            try:
                err_s = f"{test_error(name, err_train, err_test, error_steps, device, args.seed):.3f}"
            except (RuntimeError, ValueError) as e:
                err_s = "failed"
                print(f"{label} test error: failed: {str(e).splitlines()[0][:200]}")
        rows.append((label, f"{t_train * 1e3:.1f}", f"{t_infer * 1e3:.1f}", mem_s, f"{params / 1e3:.0f}k", err_s))
        print("# done: " + ", ".join(rows[-1]), file=sys.stderr, flush=True)  # progress, for long runs
    header = ("family", "train step ms", "inference ms", "peak extra memory (train)", "parameters",
              f"test rel L2 ({error_steps} steps)")
    sep = "|" if args.markdown else " "
    print(("| " if args.markdown else "") + f" {sep} ".join(header) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print(("| " if args.markdown else "") + f" {sep} ".join(r) + (" |" if args.markdown else ""))
    for fam in ("gaot", "gaot_fast"):
        if (fam, True) in results and (fam, False) in results:
            f, pl = results[(fam, True)], results[(fam, False)]
            mem_ratio = (pl[2] / f[2]) if f[2] and pl[2] else math.nan
            print(f"\n{fam} fused vs plain: training step {pl[0] / f[0]:.2f}x faster, inference "
                  f"{pl[1] / f[1]:.2f}x faster, peak training memory {mem_ratio:.2f}x lower")


def _demo_bodies(n_train: int, n_test: int):
    """The demo's potential-flow bodies in the unit frame: (points, normals, Cp) per body."""
    from pyengine.data.physics import build_flow_dataset
    from pyengine.pipeline.prepare import prepare_sample

    raw = build_flow_dataset(n_train + n_test, "ahmed", 0, resolution={"h_body": 0.06}, workers=0)
    out = []
    for s in raw:
        p, _ = prepare_sample(s, "normals")
        out.append((p.points.float().clamp(-1, 1), p.features.float(), p.fields["cp"].float().reshape(-1, 1)))
    return out[:n_train], out[n_train:]


def run_peers(args, device) -> None:
    from ._model_peers import gaot_peers, gno_layer_peers

    if device.type != "cpu" and not args.no_gno:
        print("--peers on CUDA compares GAOT only (pass --no-gno)")
        return
    mib = lambda b: "n/a" if b is None else f"{b / 2**20:.0f} MiB"  # noqa: E731
    n_gno = parse_count(args.gno_points or ("10k" if args.quick else "50k"))
    repeat = args.repeat or (2 if args.quick else 5)
    print(f"# peers, {machine_description(device)}")
    info, why = (None, "skipped (--no-gno)") if args.no_gno else gno_layer_peers(
        n_gno, 64, repeat, lambda fn: peak_extra(fn, device), args.seed)
    if info is None:
        print(f"\nGNO layer: {why}")
    else:
        print(f"\nGNO layer vs neuralop IntegralTransform: {info['points']} points, {info['edges']} edges, "
              f"C = {info['channels']}, kernel MLP 6-64-64-64; outputs agree to {info['rel_diff']:.1e} (relative)")
        for part in ("forward", "forward+backward"):
            a, b = info[f"pyengine {part}"], info[f"neuralop {part}"]
            extra = ""
            if part == "forward+backward":
                ma, mb = info["mem pyengine forward+backward"], info["mem neuralop forward+backward"]
                extra = f", peak extra memory {mib(ma)} vs {mib(mb)}" + (f" ({mb / ma:.1f}x less)" if ma and mb else "")
            print(f"  {part}: pyengine {a * 1e3:.1f} ms, neuralop {b * 1e3:.1f} ms: {b / a:.2f}x faster{extra}")
    from ._model_peers import GAOT_PEER_CONFIG, gaot3d_like_samples

    steps = args.steps or (20 if args.quick else 300)
    config = {}
    if args.gaot_grid:
        config["grid"] = tuple(int(v) for v in args.gaot_grid.split(","))
    if args.gaot_radius:
        config["radius"] = args.gaot_radius
    if args.gaot_scales:
        config["scales"] = tuple(float(v) for v in args.gaot_scales.split(","))
    if args.gaot_points:
        n_train, n_test = (int(v) for v in args.gaot_samples.split(","))
        samples = gaot3d_like_samples(parse_count(args.gaot_points), n_train + n_test, args.seed)
        train, test = samples[:n_train], samples[n_train:]
        what = "GAOT-3D-like synthetic bodies"
    else:
        n_train, n_test = (8, 4) if args.quick else (24, 8)
        train, test = _demo_bodies(n_train, n_test)
        what = "bodies of the demo"
    load0 = os.getloadavg()
    res, notes = gaot_peers(train, test, steps, args.official_gaot, lambda fn: peak_extra(fn, device), args.seed,
                            config=config, device=device, per_scale=args.gaot_per_scale)
    notes.append("load average (1, 5, 15 min) before: " + ", ".join(f"{v:.1f}" for v in load0)
                 + "; after: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    pts = sum(t[0].shape[0] for t in train) / len(train)
    c = dict(GAOT_PEER_CONFIG, **config)
    print(f"\nGAOT: {n_train} training / {n_test} test {what} (~{pts:.0f} surface points each), "
          f"tokens {'x'.join(map(str, c['grid']))}, radius {c['radius']} x scales {list(c['scales'])}; "
          f"{steps} interleaved AdamW steps (lr 1e-3, batch 1) from the same weights")
    for note in notes:
        print(f"  note: {note}")
    header = ("implementation", "train step ms", "peak extra memory (step)", f"test rel L2 after {steps} steps")
    sep = "|" if args.markdown else " "
    print(("| " if args.markdown else "") + f" {sep} ".join(header) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "|".join("---" for _ in header) + "|")
    for k, r in res.items():
        row = (k, f"{r['step_s'] * 1e3:.1f}", mib(r["mem"]), f"{r['test_rel_l2']:.3f}")
        print(("| " if args.markdown else "") + f" {sep} ".join(row) + (" |" if args.markdown else ""))
    ours = res["pyengine gaot"]
    for k, r in res.items():
        if k != "pyengine gaot":
            mem = f", {r['mem'] / ours['mem']:.1f}x less memory" if r["mem"] and ours["mem"] else ""
            print(f"  pyengine vs {k}: training step {r['step_s'] / ours['step_s']:.2f}x faster{mem}")


if __name__ == "__main__":
    main()
