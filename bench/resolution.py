"""Discretization convergence (issue 17): does a prediction hold when the mesh is refined or resampled?

The demo's bodies (potential-flow Cp on Ahmed-like bodies, meshed at ``h_body``) are the
data. Each model family is trained (``--epochs``; 0 keeps the random initialisation, an
operator-level measurement) at the training resolution, with ``quadrature`` off and on.
Every test surface is then re-discretised without changing its shape:

* ``h/2``, ``h/4``: uniform midpoint subdivision (1 and 2 rounds);
* ``half``: the faces on one half (x above the middle) subdivided twice (h/4 there, h elsewhere);
* ``jitter``: every vertex moved in its tangent plane by up to 0.25 of its mean edge length.

Inputs (normals, quadrature weights, frame) are prepared from each variant exactly as
``pyengine predict`` would; predictions are made at the original vertices (their
positions before jitter) where the true Cp is known. Reported per family and setting:

* ``rel L2 <variant>``: test relative L2 of Cp at the original vertices, mean over test shapes;
* ``change <variant>``: ``|pred(variant) - pred(h)| / |pred(h) - mean(pred(h))|`` at the same points,
  mean over shapes (relative to the prediction's spread: an untrained model predicts a near
  constant, and for Cp, whose mean is not 0, this is stricter than relative to ``|pred(h)|``);
* ``max uniform change``: the largest change between any two of h, h/2, h/4.

Targets of issue 17: rel L2 at h/4 <= 1.15x that at h; changes <= 3% between uniform
resolutions and <= 5% on the non-uniform meshes.

Examples::

    python -m bench.resolution --epochs 0 --markdown                       # operator level, all families
    python -m bench.resolution --families gaot_fast --epochs 100 --markdown  # the demo's model, trained
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from pyengine.pipeline.prepare import FEATURE_RECIPES

FAMILIES = ("gno", "gino", "gaot", "gaot_fast", "rigno")

#: Small configurations on the unit frame (radii in frame units or token spacings). gaot_fast is the demo's.
CONFIGS = {
    "gno": dict(hidden=32, layers=2, radius=0.1, kernel_hidden=(32,), max_neighbors=32),
    "gino": dict(hidden=32, grid=(16, 8, 8), modes=(6, 4, 4), fno_layers=3, kernel_hidden=(32,), max_neighbors=32),
    "gaot": dict(hidden=32, grid=(16, 8, 8), radii_cells=(1.0, 2.0), encoder_kernel_hidden=(32, 32),
                 decoder_kernel_hidden=(32,), dim=64, depth=2, vit_heads=4, patch=2, projection_hidden=64,
                 max_neighbors=None),  # complete balls, as the paper: the fused kernel stores no E x C tensor, and
    # the uniform cap is a first-order quadrature (it moved gaot's scale integrals 17 % at h/2, 3 % without it)
    "gaot_fast": None,  # filled from the demo's QUICK config
    "rigno": dict(hidden=48, edge_dim=24, processor_steps=3, max_neighbors=24),
}
VARIANTS = ("h", "h/2", "h/4", "half", "jitter")


def _variants(raw) -> dict:
    """The test surface re-discretised: name -> (points (N', 3), triangles)."""
    from pyengine.geometry.refine import jitter, refine_half, subdivide

    p = raw.points.double().numpy()
    t = raw.cells["triangle"].numpy()
    return {"h": (p, t), "h/2": subdivide(p, t, 1), "h/4": subdivide(p, t, 2), "half": refine_half(p, t, times=2),
            "jitter": (jitter(p, t, 0.25, seed=0), t)}


def _prepared(raw, variants: dict, features: str = "normals") -> dict:
    """Model-ready samples of each variant, queried at the original vertices (true Cp there)."""
    from pyengine.data import Sample
    from pyengine.pipeline.prepare import prepare_sample

    out = {}
    for name, (p, t) in variants.items():
        s = Sample(points=torch.as_tensor(p, dtype=raw.points.dtype), cells={"triangle": torch.as_tensor(t)},
                   queries=raw.points, fields={"cp": raw.fields["cp"]})
        out[name] = prepare_sample(s, features)[0]
    return out


def run(families, epochs: int, n_train: int, n_test: int, seed: int, resample: bool, log,
        save_dir: str | None = None, settings=(False, True), progress: bool = False,
        overrides: dict | None = None, features: str | None = None) -> list[dict]:
    from pyengine.data.physics.datasets import build_flow_dataset
    from pyengine.models import build
    from pyengine.pipeline.demo import QUICK
    from pyengine.pipeline.prepare import feature_channels, prepare_sample
    from pyengine.pipeline.train import Trainer

    import pyengine.geometry.quadrature  # noqa: F401  (imported now: a long run keeps the code it started with)
    import pyengine.geometry.refine  # noqa: F401
    import pyengine.models._quadrature  # noqa: F401
    import pyengine.nn.magno  # noqa: F401

    # the demo's model; quadrature is this bench's own switch (--quadrature)
    CONFIGS["gaot_fast"] = {k: v for k, v in QUICK.model.items() if k != "quadrature"}
    t0 = time.perf_counter()
    raw = build_flow_dataset(n_train + n_test, QUICK.body_kind, QUICK.seed, resolution=QUICK.resolution,
                             cache=True, progress=False)
    features = features or QUICK.features
    train = [prepare_sample(s, features)[0] for s in raw[:n_train]]
    tests = []
    for r in raw[n_train:n_train + n_test]:
        tests.append(_prepared(r, _variants(r), features))
    sizes = {k: int(np.mean([t[k].num_points for t in tests])) for k in VARIANTS}
    log(f"data: {n_train} train / {n_test} test shapes, mean input points {sizes} "
        f"({time.perf_counter() - t0:.0f} s)")
    rows = []
    for family in families:
        for quadrature in settings:
            torch.manual_seed(seed)
            model = build(family, feature_channels(features), 1, 3, quadrature=quadrature,
                          **{**CONFIGS[family], **(overrides or {})})
            cfg = replace(QUICK.train, epochs=max(epochs, 1), progress=progress, resample=resample and quadrature)
            trainer = Trainer(model, train, fields=["cp"], config=cfg)
            t1 = time.perf_counter()
            saved = None
            if save_dir is not None:
                from pathlib import Path

                tag = f"{family}_q{int(quadrature)}_e{epochs}_n{n_train}_s{seed}{'_resample' if cfg.resample else ''}" \
                    + ("" if features == "normals" else f"_{features}")
                saved = Path(save_dir) / f"{tag}.pt"
            if saved is not None and saved.exists():  # trained before with the same settings: evaluate only
                state = torch.load(saved, map_location="cpu")
                model.load_state_dict(state["model"])
                trainer.normalizer = type(trainer.normalizer).from_state_dict(state["normalizer"])
                log(f"{family} quadrature={quadrature}: loaded {saved}")
            elif epochs > 0:
                trainer.fit()
                if saved is not None:
                    saved.parent.mkdir(parents=True, exist_ok=True)
                    torch.save({"model": model.state_dict(), "normalizer": trainer.normalizer.state_dict()}, saved)
            train_s = time.perf_counter() - t1
            rel = {k: [] for k in VARIANTS}
            change = {k: [] for k in VARIANTS[1:]}
            uniform = []
            t2 = time.perf_counter()
            for shape in tests:
                preds = {k: trainer.predict(s)["cp"].double() for k, s in shape.items()}
                true = shape["h"].fields["cp"].double()
                for k, v in preds.items():
                    rel[k].append(float((v - true).norm() / true.norm()))
                base = preds["h"]
                spread = (base - base.mean()).norm()  # an untrained model's output is a near-constant
                for k in change:
                    change[k].append(float((preds[k] - base).norm() / spread))
                uniform.append(max(float((preds[a] - preds[b]).norm() / spread)
                                   for a, b in (("h", "h/2"), ("h", "h/4"), ("h/2", "h/4"))))
            row = {"family": family, "quadrature": quadrature, "epochs": epochs, "train_s": round(train_s, 1),
                   "predict_s": round(time.perf_counter() - t2, 1),
                   **{f"rel_l2 {k}": float(np.mean(v)) for k, v in rel.items()},
                   **{f"change {k}": float(np.mean(v)) for k, v in change.items()},
                   "max uniform change": float(np.max(uniform))}
            rows.append(row)
            log(json.dumps(row))
    return rows


def markdown(rows: list[dict]) -> str:
    head = ["family", "quadrature", "epochs"] + [f"rel L2 {k}" for k in VARIANTS] + \
        [f"change {k}" for k in VARIANTS[1:]] + ["max uniform change"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["family"], "on" if r["quadrature"] else "off", str(r["epochs"])]
        cells += [f"{r[f'rel_l2 {k}']:.3f}" for k in VARIANTS]
        cells += [f"{100 * r[f'change {k}']:.1f}%" for k in VARIANTS[1:]]
        cells.append(f"{100 * r['max uniform change']:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated model families")
    ap.add_argument("--epochs", type=int, default=0, help="training epochs at h (0: untrained, operator level)")
    ap.add_argument("--n-train", type=int, default=48)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resample", action="store_true", help="train the quadrature models with TrainConfig.resample")
    ap.add_argument("--quadrature", choices=("off", "on", "both"), default="both",
                    help="which setting of the families' quadrature option to measure")
    ap.add_argument("--progress", action="store_true", help="show the training progress bar (stderr)")
    ap.add_argument("--save-dir", default=None, help="keep trained weights here and reuse them on a rerun")
    ap.add_argument("--model", default=None, metavar="JSON",
                    help='config overrides for every family measured, e.g. \'{"radii_cells": [1.5, 3.0]}\' '
                         '(use a separate --save-dir per override: the checkpoint name does not include it)')
    ap.add_argument("--features", default=None, choices=FEATURE_RECIPES,
                    help="input feature recipe (default: the demo's); smooth_normals is the mesh-independent one")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; choose from {FAMILIES}")
    if args.epochs < 0 or args.n_train < 1 or args.n_test < 1:
        raise SystemExit("--epochs must be >= 0, --n-train and --n-test >= 1")
    rows = run(families, args.epochs, args.n_train, args.n_test, args.seed, args.resample,
               lambda m: print(m, flush=True), args.save_dir,
               {"off": (False,), "on": (True,), "both": (False, True)}[args.quadrature], args.progress,
               json.loads(args.model) if args.model else None, args.features)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    main()
