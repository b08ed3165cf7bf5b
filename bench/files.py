"""File datasets at scale: preprocessing throughput, training memory, step time with and without the loader.

Generates ``--samples`` closed surfaces of about ``--points`` vertices each (ellipsoids with
random semi-axes, latitude-longitude triangulations, 2 triangles per vertex) written as
VTP files with point data ``p`` (scalar) and ``wallShearStress`` (3 components), the layout of
DrivAerML/AhmedML boundary files. ``--vtp raw`` (default) appends the arrays as raw binary, as
CFD tools and ParaView usually write them; ``zlib`` compresses them; ``base64`` is VTK's own
default (compressed, then base64 text), about 5x slower to read. Then, on that folder:

1. **preprocess**: :meth:`FileDataset.preprocess` from an empty cache (read, orient, vertex
   normals, lumped area vectors, statistics, memory-mapped arrays) with ``--workers``
   processes; reports points per second (wall clock, including process start-up).
2. **train** (in a fresh child process, so its peak RSS is its own): GAOT on random subsets of
   ``--points-per-step`` queries and ``--encoder-points`` encoder points per geometry,
   streamed by the DataLoader (1 worker); then evaluation of the test samples on every point
   (chunked). Reports the peak RSS of the trainer process and of its loader workers
   (``getrusage``), and the median step time **with the loader** (``Trainer.fit``) and
   **without** (the same steps on batches already in memory): their ratio says whether data
   loading is the bottleneck.

Examples::

    python -m bench.files --markdown                      # 16 x 1M points (the issue 16 target)
    python -m bench.files --quick                         # 4 x 100k points, smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._timing import busy_cpus, command_line, machine_description


def _body(n_vertices: int, rng: np.random.Generator):
    """An ellipsoid-like closed surface with about ``n_vertices`` vertices and smooth fields."""
    n_lon = max(8, int(round(np.sqrt(2 * n_vertices))))
    n_lat = max(3, (n_vertices - 2) // n_lon)
    a, b, c = 2.0 + rng.uniform(-0.3, 0.3), 0.8 + rng.uniform(-0.1, 0.1), 0.6 + rng.uniform(-0.1, 0.1)
    th = np.linspace(0, np.pi, n_lat + 2)[1:-1]
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    pts = np.stack([a * np.cos(T), b * np.sin(T) * np.cos(P), c * np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    pts = np.concatenate([pts, [[a, 0, 0], [-a, 0, 0]]])
    idx = np.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    q0, q1, q2, q3 = idx[:-1], nxt[:-1], nxt[1:], idx[1:]
    top, bot = n_lat * n_lon, n_lat * n_lon + 1
    tris = np.concatenate([np.stack([q0, q1, q2], -1).reshape(-1, 3), np.stack([q0, q2, q3], -1).reshape(-1, 3),
                           np.stack([np.full(n_lon, top), nxt[0], idx[0]], -1),
                           np.stack([np.full(n_lon, bot), idx[-1], nxt[-1]], -1)])
    cos = pts[:, 0] / a
    p = 1 - 9 / 4 * (1 - cos ** 2) + 0.1 * np.sin(5 * pts[:, 1]) * rng.uniform(0.5, 1.5)
    wss = 0.01 * np.stack([1 - cos ** 2, 0.1 * pts[:, 2], 0.1 * pts[:, 1]], -1)
    return pts, tris, p, wss


def generate(folder: Path, samples: int, points: int, encoding: str = "raw") -> Path:
    """Write the VTP folder once (kept between runs: a marker file records what is there)."""
    from pyengine.data.files import write_vtp

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "generated.json"
    want = {"samples": samples, "points": points, "encoding": encoding, "version": 2}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return folder
    for f in folder.glob("*.vtp"):
        f.unlink()
    for i in range(samples):
        pts, tris, p, wss = _body(points, np.random.default_rng([7, i]))
        write_vtp(folder / f"body{i:03d}.vtp", pts, {"triangle": tris}, point_data={"p": p, "wallShearStress": wss},
                  encoding=encoding)
    marker.write_text(json.dumps(want))
    return folder


def _options(args) -> dict:
    return {"path": str(args.data), "fields": ["p", "wallShearStress"], "test": 2,
            "points_per_step": args.points_per_step, "encoder_points": args.encoder_points, "frame": "dataset",
            "eval_chunk": 200_000, "workers": 1,
            "forces": {"pressure": "p", "shear": "wallShearStress", "reference_area": 1.0}}


MODEL = dict(hidden=32, grid=(16, 8, 8), radii_cells=(1.0, 2.0), heads=4, dim=64, depth=2, vit_heads=4, patch=2,
             max_neighbors=16)


def train_child(args) -> dict:
    """Runs in the child process: train from the cache, time steps with and without the loader."""
    import torch

    from pyengine.data.files import CachedSamples, FileCache, FileDataset
    from pyengine.models import build
    from pyengine.pipeline import TrainConfig, Trainer
    from pyengine.pipeline.files_run import evaluate_cache

    fcfg = FileDataset(_options(args)).config
    cache = FileCache(args.cache)
    train = CachedSamples(cache, "train", points_per_step=args.points_per_step, encoder_points=args.encoder_points,
                          frame="dataset", seed=0, workers=1)
    torch.manual_seed(0)
    model = build("gaot_fast", cache.in_channels, sum(cache.fields.values()), 3, **MODEL)
    config = TrainConfig(epochs=args.epochs, batch_size=2, lr=1e-3, progress=False)
    trainer = Trainer(model, train, fields=list(cache.fields), config=config, device=args.device)
    # with the loader: every step waits for the DataLoader (1 worker process reading the memmaps)
    step_times = []
    orig = trainer.step

    def timed(batch):
        t0 = time.perf_counter()
        out = orig(batch)
        step_times.append(time.perf_counter() - t0)
        return out

    trainer.step = timed
    t0 = time.perf_counter()
    trainer.fit()
    fit_s = time.perf_counter() - t0
    steps = len(step_times)
    with_loader = fit_s / steps
    # without the loader: the same kind of batches, loaded beforehand, stepped back to back
    load = []
    batches = []
    for i in range(0, 2 * min(4, len(train) // 2), 2):
        t0 = time.perf_counter()
        batches.append([train[(i, 99)], train[(i + 1, 99)]])
        load.append(time.perf_counter() - t0)
    pure = []
    for b in batches * 2:
        t0 = time.perf_counter()
        orig([item.to(trainer.device) for item in b])
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        pure.append(time.perf_counter() - t0)
    trainer._stream.loader._iterator = None  # shut the persistent loader worker down, so getrusage sees it
    import gc

    gc.collect()
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    t0 = time.perf_counter()
    ev = evaluate_cache(trainer, cache, fcfg, train.frame, None)
    eval_s = time.perf_counter() - t0
    return {"steps": steps, "step_with_loader_s": with_loader, "step_without_loader_s": statistics.median(pure),
            "step_in_fit_s": statistics.median(step_times), "load_batch_s": statistics.median(load),
            "fit_s": fit_s, "eval_s": eval_s, "eval_points": sum(r["points"] for r in ev["per_sample"]),
            "rel_l2": {k: v["rel_l2"] for k, v in ev["fields"].items()},
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "peak_rss_workers_gb": workers_rss}


def _forkserver_cpu(own: bool = False) -> float:
    """User + system CPU seconds of the multiprocessing forkserver and of the workers it has reaped
    (Linux ``/proc``; 0 when there is none); ``own``: the server's alone (its imports). Preprocessing
    workers are the forkserver's children, not this process's, so ``RUSAGE_CHILDREN`` does not see them."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), i.e. 11-14 after "(comm)"
    return sum(int(f) for f in fields[11:13 if own else 15]) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, its finished children (spawned workers, the
    training child) and the forkserver with its finished workers."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + _forkserver_cpu()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--points", type=int, default=1_000_000, help="vertices per surface")
    parser.add_argument("--points-per-step", type=int, default=16_384)
    parser.add_argument("--encoder-points", type=int, default=16_384)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    parser.add_argument("--vtp", choices=("raw", "zlib", "base64"), default="raw",
                        help="encoding of the generated VTP files' appended data")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "pyengine-bench-files")
    parser.add_argument("--quick", action="store_true", help="4 surfaces of 100k points")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="training device")
    parser.add_argument("--train-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.points = 4, 100_000
        args.data = args.data.with_name(args.data.name + "-quick")
    if args.train_child:
        print(json.dumps(train_child(args)))
        return 0

    from pyengine.data.files import FileDataset

    busy = busy_cpus()
    t0 = time.perf_counter()
    generate(args.data, args.samples, args.points, args.vtp)
    gen_s = time.perf_counter() - t0
    ds = FileDataset(_options(args))
    with tempfile.TemporaryDirectory(dir=args.data.parent) as tmp:
        cpu0 = _cpu_seconds()
        cache = ds.preprocess(Path(tmp) / "cache", workers=args.workers)
        time.sleep(0.2)  # let the forkserver reap its last workers
        cpu = _cpu_seconds() - cpu0
        server_cpu = _forkserver_cpu(own=True)
        points = cache.index["build"]["points"]
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*.npy"))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        child = subprocess.run([sys.executable, "-m", "bench.files", "--train-child", "1", "--cache",
                                str(Path(tmp) / "cache"), "--data", str(args.data), "--samples", str(args.samples),
                                "--points-per-step", str(args.points_per_step), "--encoder-points",
                                str(args.encoder_points), "--epochs", str(args.epochs), "--device", args.device],
                               capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
        if child.returncode:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(child.stdout.strip().splitlines()[-1])
    rows = [
        ("surfaces", f"{args.samples} x {points // args.samples:,} points (VTP, {args.vtp} appended data, "
                     "point data p + wallShearStress)"),
        ("generation (not part of the target)", f"{gen_s:.1f} s"),
        ("preprocess", f"{cache.built_seconds:.1f} s with {args.workers} processes = "
                       f"{cache.points_per_second / 1e6:.2f} M points/s (wall); cache {disk / 2**30:.2f} GiB"),
        ("preprocess CPU time", f"{cpu:.1f} CPU-s = {points / cpu / 1e6:.2f} M points per CPU-second "
                                f"(this process, the forkserver and its workers; of which the forkserver's imports "
                                f"{server_cpu:.1f} CPU-s) = {cpu / points * 1e6:.2f} CPU-s per 1M points"),
        ("train", f"{r['steps']} steps of 2 geometries x ({args.points_per_step} queries, {args.encoder_points} "
                  f"encoder points), GAOT"),
        ("step time with loader", f"{r['step_with_loader_s'] * 1e3:.0f} ms (Trainer.fit / steps)"),
        ("step time without loader", f"{r['step_without_loader_s'] * 1e3:.0f} ms (batches in memory, median)"),
        ("loader overhead", f"{r['step_with_loader_s'] / r['step_without_loader_s']:.2f}x"),
        ("inside fit: compute per step / one batch loaded in-process",
         f"{r['step_in_fit_s'] * 1e3:.0f} ms / {r['load_batch_s'] * 1e3:.0f} ms (medians)"),
        ("evaluation, every point", f"{r['eval_points']:,} points in {r['eval_s']:.1f} s (chunks of 200k)"),
        ("peak RSS trainer / loader worker", f"{r['peak_rss_gb']:.2f} GB / {r['peak_rss_workers_gb']:.2f} GB"),
        ("test rel L2", ", ".join(f"{k} {v:.3f}" for k, v in r["rel_l2"].items())),
    ]
    print(f"\n{machine_description(args.device)}; other busy CPUs at start: {busy if busy is None else round(busy, 2)}")
    print(command_line(__file__))
    if args.markdown:
        print("\n| quantity | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    else:
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
