"""``pyengine train`` / ``predict`` for ``dataset.kind: files``: users' own simulation results.

Training: discover the samples, preprocess them once into a memory-mapped cache,
train through the streaming :class:`~pyengine.data.files.CachedSamples` (random point
subsets per step when configured), then evaluate every test sample on all of its points
(chunked): per-field errors, force coefficients for truth and prediction, their test-set
errors, prediction meshes, a figure. Prediction: read a new file the way training read
its samples (same frame, features, encoder subsample), predict all points in chunks and
write the fields back onto the user's mesh.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .forces import force_coefficients, force_metrics, format_force_table
from .metrics import field_errors
from .predict import predict_chunked
from .validate import require_finite

__all__ = ["evaluate_cache", "predict_files", "train_files"]

# FileDatasetConfig fields a checkpoint keeps to read new geometries as training did
_PREDICT_KEYS = ("fields", "location", "cell_to_point", "sample", "patches", "time", "conditioning", "features",
                 "frame", "encoder_points", "eval_chunk", "forces")


def _split_fields(block: np.ndarray | torch.Tensor, widths: dict[str, int]) -> dict[str, torch.Tensor]:
    t = torch.from_numpy(np.array(block, dtype=np.float32))
    out, start = {}, 0
    for name, w in widths.items():
        out[name] = t[:, start] if w == 1 else t[:, start:start + w]
        start += w
    return out


def _predict_item(trainer_or_model, normalizer, widths, item, device, chunk: int, amp_ctx) -> dict[str, torch.Tensor]:
    model = trainer_or_model
    model.eval()
    dev = torch.device(device)
    with amp_ctx():
        pred = predict_chunked(model, item.points.to(dev), None if item.features is None else item.features.to(dev),
                               item.queries.to(dev), chunk_size=chunk).float().cpu()
    out, start = {}, 0
    for name, w in widths.items():
        block = pred[:, start:start + w]
        out[name] = normalizer.denormalize_field(name, block[:, 0] if w == 1 else block)
        start += w
    return out


def evaluate_cache(trainer, cache, fcfg, frame, out_dir: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Test-set evaluation on every point: field errors, forces, prediction files.

    Returns ``{"fields": {name: {rel_l2, rel_l1, max_err}}, "forces": {...} | None,
    "per_sample": [...], "figure_items": [...]}`` (figure items are not JSON).
    """
    from ..data.files import CachedSamples
    from .export import write_prediction_mesh

    test = CachedSamples(cache, "test", encoder_points=fcfg.encoder_points, frame=frame, seed=seed)
    test.set_normalizer(trainer.normalizer)
    widths = dict(cache.fields)
    sums = {f: {"rel_l2": 0.0, "rel_l1": 0.0, "max_err": 0.0} for f in widths}
    per_sample, forces_true, forces_pred, figure = [], [], [], []
    n = len(test)

    def amp():
        import contextlib

        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(trainer._tf32())
        stack.enter_context(trainer._autocast())
        return stack

    for pos in range(n):
        item = test.load(pos, train=False, with_target=False)
        j = item.index
        entry = cache.samples[j]
        pred = _predict_item(trainer.model, trainer.normalizer, widths, item, trainer.device, fcfg.eval_chunk, amp)
        require_finite(pred, f"prediction on test sample {entry['name']}")
        true = _split_fields(cache.array(j, "target"), widths)
        row: dict[str, Any] = {"name": entry["name"], "points": entry["n_queries"]}
        for f in widths:
            e = field_errors(pred[f], true[f])
            sums[f]["rel_l2"] += e["rel_l2"] / n
            sums[f]["rel_l1"] += e["rel_l1"] / n
            sums[f]["max_err"] = max(sums[f]["max_err"], e["max_err"])
            row[f"{f}_rel_l2"] = e["rel_l2"]
        area = cache.array(j, "area")
        if fcfg.forces is not None and area is not None:
            ct, cp = force_coefficients(area, true, fcfg.forces), force_coefficients(area, pred, fcfg.forces)
            forces_true.append(ct)
            forces_pred.append(cp)
            row["forces_true"], row["forces_pred"] = ct, cp
        per_sample.append(row)
        qarr = cache.array(j, "queries")
        pts = np.array(cache.array(j, "points") if qarr is None else qarr)
        if out_dir is not None:
            cells = {k[len("cells_"):]: torch.from_numpy(np.array(cache.array(j, k)))
                     for k in entry["arrays"] if k.startswith("cells_")}
            write_prediction_mesh(Path(out_dir) / f"{pos:03d}_{Path(entry['name']).stem}.vtu",
                                  torch.as_tensor(pts), cells, true, pred)
        first = next(iter(widths))
        if len(figure) < 4:
            keep = np.random.default_rng(pos).choice(len(pts), size=min(len(pts), 20_000), replace=False)
            mag = (lambda v: v if v.dim() == 1 else v.norm(dim=1))
            figure.append({"points": pts[keep], "true": mag(true[first]).numpy()[keep],
                           "pred": mag(pred[first]).numpy()[keep], "title": entry["name"]})
    forces = None
    if forces_true:
        forces = {"per_sample": [{"name": r["name"], "true": r["forces_true"], "pred": r["forces_pred"]}
                                 for r in per_sample if "forces_true" in r],
                  "metrics": force_metrics(forces_true, forces_pred)}
    return {"fields": sums, "forces": forces, "per_sample": per_sample, "figure_items": figure}


def train_files(cfg, config_path: Path, device: str, out: Path) -> dict[str, Any]:
    """Train on ``dataset.kind: files`` as the run configuration says; returns the metrics dict."""
    from ..data.files import CachedSamples, FileDataset, file_config_from_dict
    from ..models import build
    from .plots import plot_force_scatter, plot_predictions
    from .train import Trainer

    fcfg = file_config_from_dict(cfg.dataset.options)
    base = Path(config_path).resolve().parent
    dataset = FileDataset(fcfg, base=base)
    print(f"pyengine train: {dataset}")
    cache_dir = (base / fcfg.cache_dir) if fcfg.cache_dir else out / "cache"
    cache = dataset.preprocess(cache_dir, progress=cfg.train.progress)
    if cache.built_seconds is not None:
        print(f"pyengine train: preprocessed {len(cache)} samples in {cache.built_seconds:.1f} s "
              f"({cache.points_per_second / 1e6:.2f} M points/s) into {cache_dir}")
    else:
        print(f"pyengine train: reusing the preprocessed cache {cache_dir}")
    train = CachedSamples(cache, "train", points_per_step=fcfg.points_per_step, encoder_points=fcfg.encoder_points,
                          frame=fcfg.frame, seed=cfg.train.seed, workers=fcfg.workers)
    widths = dict(cache.fields)
    torch.manual_seed(cfg.train.seed)
    model = build(cfg.model.name, cache.in_channels, sum(widths.values()), cache.dim, **cfg.model.config)
    trainer = Trainer(model, train, fields=list(widths), config=cfg.train, out_dir=out, device=device)
    t0 = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - t0
    ev = evaluate_cache(trainer, cache, fcfg, train.frame, out / "predictions", seed=cfg.train.seed)
    stored = {k: v for k, v in fcfg.to_dict().items() if k in _PREDICT_KEYS}
    stored["location"] = cache.index["location"]
    ckpt = out / "model.pt"
    trainer.save(ckpt, extra={"features": fcfg.features, "files": stored, "frame": train.frame.state(),
                              "seed": cfg.train.seed, "test_metrics": ev["fields"], "forces": ev["forces"],
                              "config_file": str(config_path)})
    result = {"test_metrics": ev["fields"], "fields": list(widths), "forces": ev["forces"],
              "per_sample": ev["per_sample"], "train_seconds": train_s,
              "preprocess": {"seconds": cache.built_seconds, "points_per_second": cache.points_per_second},
              "finite": all(v == v for m in ev["fields"].values() for v in m.values())}
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    first = list(widths)[0]
    plot_predictions(out / "predictions.png", ev["figure_items"], first)
    for f, m in ev["fields"].items():
        print(f"pyengine train: {f}: test rel L2 {m['rel_l2']:.4f}, rel L1 {m['rel_l1']:.4f}, max err {m['max_err']:.4g}")
    if ev["forces"]:
        plot_force_scatter(out / "forces.png", ev["forces"]["per_sample"])
        rows = ev["forces"]["per_sample"]
        print("\npyengine train: force coefficients on the test set\n" + format_force_table(
            [r["name"] for r in rows], [r["true"] for r in rows], [r["pred"] for r in rows],
            ev["forces"]["metrics"]))
    print(f"pyengine train: wrote {ckpt}, {out / 'metrics.json'}, {out / 'predictions'}/*.vtu")
    return result


def _write_result(path: Path, arrays, fields: dict[str, torch.Tensor]) -> Path:
    """The prediction on the user's mesh: point data at vertices, or cell data on the cells."""
    from ..data.files import write_vtp
    from ..geometry import Mesh, save_mesh

    data = {f"{k}_pred": v.numpy() for k, v in fields.items()}
    path = Path(path)
    if arrays.location == "points" or not arrays.cells:
        pts = arrays.query_points if arrays.location == "cells" else arrays.mesh_points
        cells = arrays.cells if arrays.location == "points" else {}
        if path.suffix.lower() == ".vtp":
            return write_vtp(path, pts, cells, point_data=data)
        return save_mesh(Mesh(pts, cells), path, point_data=data)
    if path.suffix.lower() == ".vtp":
        return write_vtp(path, arrays.mesh_points, arrays.cells, cell_data=data)
    split, start = {}, 0
    for kind, c in arrays.cells.items():
        split[kind] = slice(start, start + len(c))
        start += len(c)
    cdata = {k: {kind: v[s] for kind, s in split.items()} for k, v in data.items()}
    return save_mesh(Mesh(arrays.mesh_points, arrays.cells), path, cell_data=cdata)


def predict_files(payload: dict, mesh_path: str | Path, out_path: str | Path, *, device: str = "cpu",
                  chunk_size: int | None = None, conditions: dict[str, float] | None = None) -> Path:
    """Predict a files-trained checkpoint's fields on a new geometry file and write them onto it."""
    from ..data import Normalizer
    from ..data.files import CoordinateFrame, FileDatasetConfig, LoadedItem, SampleSpec, assemble
    from ..data.files.loader import _subset, eval_seed
    from .checkpoint import load_model

    extra = payload["extra"]
    stored = dict(extra["files"])
    fcfg = FileDatasetConfig(path=str(mesh_path), **stored)
    conditions = dict(conditions or {})
    missing = [c for c in fcfg.conditioning if c not in conditions]
    if missing:
        raise ValueError(f"this model is conditioned on {fcfg.conditioning}; give each with --condition NAME=VALUE "
                         f"(missing: {missing})")
    unknown = sorted(set(conditions) - set(fcfg.conditioning))
    if unknown:
        raise ValueError(f"--condition {unknown[0]} is not an input of this model (it takes {fcfg.conditioning})")
    spec = SampleSpec(str(mesh_path), Path(mesh_path), scalars=conditions)
    a = assemble(spec, fcfg, targets=False)
    model, _ = load_model(payload, device)
    normalizer = Normalizer.from_state_dict(payload["normalizer"])
    frame = CoordinateFrame(**extra["frame"])
    center, scale = frame.center_scale(a.points.min(axis=0), a.points.max(axis=0))
    rng = np.random.default_rng(eval_seed(int(extra.get("seed", 0)), len(a.points)))
    enc = _subset(rng, len(a.points), fcfg.encoder_points)
    pts = a.points if enc is None else a.points[enc]
    feats = None
    if a.features is not None:
        f = torch.as_tensor((a.features if enc is None else a.features[enc]).astype(np.float32))
        feats = normalizer.normalize_field("features", f)
    item = LoadedItem(0, torch.from_numpy(frame.apply(pts, center, scale)), feats,
                      torch.from_numpy(frame.apply(a.query_points, center, scale)), None)
    import contextlib

    pred = _predict_item(model, normalizer, dict(payload["fields"]), item, device, chunk_size or fcfg.eval_chunk,
                         lambda: contextlib.ExitStack())
    require_finite(pred, f"prediction on {mesh_path}")
    path = _write_result(Path(out_path), a, pred)
    print(f"pyengine predict: {len(a.query_points)} {'cells' if a.location == 'cells' else 'points'}, "
          f"fields {list(pred)} -> {path}")
    if fcfg.forces is not None and a.area is not None:
        c = force_coefficients(a.area, pred, fcfg.forces)
        short = {"drag": "Cd", "lift": "Cl", "side": "Cs"}
        print("pyengine predict: predicted force coefficients " + ", ".join(f"{short[k]} {v:.4f}" for k, v in c.items()))
    return path
