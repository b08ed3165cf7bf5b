"""``pyengine predict`` end to end on large and messy surfaces: time per stage and peak memory.

Cases (each written as a binary STL, the format CAD tools export most):

* ``closed-2M``: a closed body of 1,997,568 triangles (a cube-sphere ellipsoid of 12 n^2
  triangles, n = 408, aspect 1 : 0.45 : 0.35);
* ``duplicates-330k``: a 164,268-triangle body plus every face again with opposite winding
  (328,536 triangles, half of them duplicates: the "same sheet twice" of real exports).

Each case runs ``pyengine predict`` (load, clean, normals, envelope check, chunked decode,
VTU write, preview PNG) in a fresh subprocess; the stage times come from its summary and
the peak RSS from ``getrusage`` in that process. Targets (issue 15, 2 cores): the 2M case in
at most 60 s at at most 2 GB peak RSS, with clean + normals at most 25 % of the total.

Peer, measured in the same run on the same file: trimesh's processing of the STL
(``trimesh.load`` with ``process=True`` merges vertices; then ``unique_faces`` and
``vertex_normals``). It does less than pyengine's clean + normals (no degenerate test,
no opposite-wound duplicates, no orientation, no PCA fallback), so ``ratio`` = peer /
(pyengine load + clean + normals) > 1 means pyengine is faster despite doing more.

The model is the demo's quick model (QUICK.family) with random weights and a synthetic normaliser
(``--checkpoint`` takes a trained ``model.pt`` instead); prediction cost does not depend
on the weights.

Examples::

    python -m bench.predict --markdown
    python -m bench.predict --quick          # 200k / 33k triangles
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._timing import busy_cpus, machine_description


def cube_sphere(n: int, aspect=(1.0, 0.45, 0.35)) -> tuple[np.ndarray, np.ndarray]:
    """A closed, outward-wound ellipsoid of 12 n^2 triangles (vertices shared)."""
    from pyengine.geometry.clean import merge_vertices

    t = np.linspace(-1.0, 1.0, n + 1)
    a, b = np.meshgrid(t, t, indexing="ij")
    pts, faces = [], []
    base = 0
    for axis in range(3):
        for sign in (-1.0, 1.0):
            p = np.empty((n + 1, n + 1, 3))
            p[..., axis] = sign
            p[..., (axis + 1) % 3] = a
            p[..., (axis + 2) % 3] = b
            pts.append(p.reshape(-1, 3))
            i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            v0 = (i * (n + 1) + j).ravel() + base
            v1, v2, v3 = v0 + (n + 1), v0 + (n + 1) + 1, v0 + 1
            faces.append(np.concatenate([np.stack([v0, v1, v2], 1), np.stack([v0, v2, v3], 1)]))
            base += (n + 1) ** 2
    pts = np.concatenate(pts)
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * np.asarray(aspect)
    faces = np.concatenate(faces)
    first, vmap = merge_vertices(pts, tolerance=0.0)
    pts, faces = pts[first], vmap[faces]
    tri = pts[faces]
    outward = np.einsum("ij,ij->i", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.mean(1)) > 0
    faces[~outward] = faces[~outward][:, [0, 2, 1]]
    return pts, faces


def write_stl(path: Path, points: np.ndarray, faces: np.ndarray) -> None:
    rec = np.zeros(len(faces), dtype=[("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")])
    rec["v"] = points[faces]
    with open(path, "wb") as fh:
        fh.write(b"pyengine bench".ljust(80, b" "))
        fh.write(np.uint32(len(faces)).tobytes())
        fh.write(rec.tobytes())


def synthetic_checkpoint(path: Path) -> None:
    """The demo's quick model, random weights, normaliser and envelope from one small ellipsoid."""
    import torch

    from pyengine.data import Normalizer, Sample
    from pyengine.models import build
    from pyengine.pipeline import save_checkpoint
    from pyengine.pipeline.demo import QUICK
    from pyengine.pipeline.envelope import TrainingEnvelope
    from pyengine.pipeline.prepare import prepare_sample

    torch.manual_seed(0)
    pts, faces = cube_sphere(24)
    cp = 1.0 - 2.25 * (1.0 - (pts[:, 0] / np.linalg.norm(pts, axis=1)) ** 2)
    s, _ = prepare_sample(Sample(torch.tensor(pts, dtype=torch.float32), cells={"triangle": torch.tensor(faces)},
                                 fields={"cp": torch.tensor(cp, dtype=torch.float32)}), "normals")
    model = build(QUICK.family, 3, 1, 3, **QUICK.model)
    norm = Normalizer().fit([s], fields=["cp"])
    save_checkpoint(path, model, normalizer=norm, fields={"cp": 1},
                    extra={"features": "normals", "envelope": TrainingEnvelope.of([s], ["cp"], units="m").to_dict()})


_CHILD = """
import json, resource, sys
from pyengine.pipeline.predict import predict_file
ckpt, mesh, out, chunk = sys.argv[1:5]
r = predict_file(ckpt, mesh, out, chunk_size=int(chunk), png=out[:-4] + ".png")
print("\\n".join(r.summary))
for w in r.warnings:
    print("warning:", w, file=sys.stderr)
ru = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT", json.dumps({"wall": r.timings, "cpu": r.cpu_timings, "rss_kb": ru.ru_maxrss,
                            "process_cpu": ru.ru_utime + ru.ru_stime}))
"""


def run_predict(ckpt: Path, mesh: Path, out: Path, chunk: int) -> dict:
    """``predict_file`` (what ``pyengine predict`` runs, preview included) in a fresh process."""
    import json

    cmd = [sys.executable, "-W", "ignore", "-c", _CHILD, str(ckpt), str(mesh), str(out), str(chunk)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"pyengine predict failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    text, res = proc.stdout.split("RESULT ")
    res = json.loads(res)
    cleaned = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("cleaned")), "")
    return {"wall": wall, "stages": res["wall"], "cpu": res["cpu"], "process_cpu": res["process_cpu"],
            "rss_gb": res["rss_kb"] / 1024**2, "cleaned": cleaned, "stdout": text,
            "warnings": proc.stderr.splitlines()}


def trimesh_peer(mesh: Path) -> float:
    import trimesh

    t0 = time.perf_counter()
    m = trimesh.load(mesh, process=True)
    m.update_faces(m.unique_faces())
    _ = m.vertex_normals
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="200k and 33k triangles")
    p.add_argument("--checkpoint", default=None, help="a trained model.pt (default: synthetic quick GAOT)")
    p.add_argument("--chunk-size", type=int, default=200_000)
    p.add_argument("--device", default="cpu", help="(cpu only: predict runs in a subprocess on its default device)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--keep", default=None, help="keep the generated files in this folder")
    args = p.parse_args(argv)
    big_n, dup_n = (129, 52) if args.quick else (408, 117)
    print(f"# bench.predict: {machine_description('cpu')}; busy CPUs before: {busy_cpus():.2f}")
    with tempfile.TemporaryDirectory(prefix="pyengine-bench-predict-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        ckpt = Path(args.checkpoint) if args.checkpoint else folder / "model.pt"
        if not args.checkpoint:
            synthetic_checkpoint(ckpt)
        cases = []
        pts, faces = cube_sphere(big_n)
        cases.append((f"closed-{len(faces) / 1e6:.1f}M" if len(faces) >= 1e6 else f"closed-{len(faces) // 1000}k",
                      pts, faces))
        pts, faces = cube_sphere(dup_n)
        cases.append((f"duplicates-{2 * len(faces) // 1000}k", pts, np.concatenate([faces, faces[:, [0, 2, 1]]])))
        rows = []
        for name, pts, faces in cases:
            stl = folder / f"{name}.stl"
            write_stl(stl, pts, faces)
            del pts
            r = run_predict(ckpt, stl, folder / f"{name}.vtu", args.chunk_size)
            peer = trimesh_peer(stl)
            rows.append((name, len(faces), r, peer))
            print(r["stdout"].rstrip(), flush=True)
            for w in r["warnings"]:
                print(w)
    stages = ("load", "clean", "normals", "predict", "check", "write", "preview")
    head = ["case", "triangles", *(f"{k} s" for k in stages), "total s", "CPU s", "peak RSS GB",
            "clean+normals share", "trimesh peer s", "ratio"]
    table = []
    for name, nf, r, peer in rows:
        st = r["stages"]
        total = sum(st.values())
        ours = st["load"] + st["clean"] + st["normals"]
        share = (st["clean"] + st["normals"]) / total
        table.append([name, f"{nf:,}", *(f"{st.get(k, 0):.1f}" for k in stages), f"{total:.1f}",
                      f"{r['process_cpu']:.1f}", f"{r['rss_gb']:.2f}", f"{share:.0%}", f"{peer:.1f}",
                      f"{peer / ours:.2f}x"])
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for t in table:
            print("| " + " | ".join(t) + " |")
    else:
        print("  ".join(f"{h:>10}" for h in head))
        for t in table:
            print("  ".join(f"{c:>10}" for c in t))
    print("CPU seconds per stage (all threads): " + "; ".join(
        f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu"].items()) for name, _, r, _ in rows))
    print(f"busy CPUs after: {busy_cpus():.2f} (timings are only meaningful when near 0)")
    name, nf, r, _ = rows[0]
    if not args.quick:
        total = sum(r["stages"].values())
        share = (r["stages"]["clean"] + r["stages"]["normals"]) / total
        ok = total <= 60 and r["rss_gb"] <= 2.0 and share <= 0.25
        print(f"target (2M case: total <= 60 s, peak RSS <= 2 GB, clean+normals <= 25%): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
