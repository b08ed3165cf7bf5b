"""``pyengine train`` and ``pyengine predict``: the YAML-configured run and prediction on mesh files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write_text
from .checkpoint import load_checkpoint, load_model
from .export import write_prediction_mesh
from .frame import FrameStats, check_in_distribution
from .predict import predict_chunked
from .prepare import feature_channels, prepare_sample
from .run_config import RunConfig, load_run_config
from .train import Trainer, normalize_features
from .validate import ensure_output_dir, require_finite

__all__ = ["train_from_config", "predict_file", "load_dataset"]

#: What ``pyengine train`` writes into its output directory.
RUN_FILES = ("model.pt", "metrics.json", "log.csv", "history.json")


def load_dataset(cfg: RunConfig, progress: bool = True):
    """The raw samples of a run's dataset section and the feature recipe they use."""
    from ..data.physics import build_darcy_dataset, build_flow_dataset

    d = cfg.dataset
    if d.kind == "files":
        raise ValueError("dataset kind 'files' is streamed from a cache: use pyengine.data.files.FileDataset")
    n = d.n_train + d.n_test
    opts = dict(d.options)  # checked by DatasetConfig
    if d.kind == "bodies":
        raw = build_flow_dataset(n, opts.pop("body_kind", "ahmed"), d.seed, progress=progress, **opts)
        return raw, "normals"
    return build_darcy_dataset(n, d.seed, progress=progress, **opts), "none"


def train_from_config(path: str | Path, *, device: str | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Build the dataset, train the model and write metrics and the checkpoint, as the YAML file says."""
    from ..models import build

    cfg = load_run_config(path)
    device = device or cfg.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("the config asks for device 'cuda' but no CUDA device is available")
    out = ensure_output_dir(out or cfg.out, RUN_FILES)  # before the dataset is built and an epoch trained
    if cfg.dataset.kind == "files":  # users' own results: streamed from a preprocessed cache
        from .files_run import train_files

        return train_files(cfg, Path(path), device, out)
    raw, recipe = load_dataset(cfg, progress=cfg.train.progress)
    samples = [prepare_sample(s, recipe)[0] for s in raw]
    fields = sorted(k for k, v in samples[0].fields.items() if k != "velocity") or sorted(samples[0].fields)
    widths = sum(1 if samples[0].fields[f].dim() == 1 else samples[0].fields[f].shape[1] for f in fields)
    n_train = cfg.dataset.n_train
    torch.manual_seed(cfg.train.seed)
    model = build(cfg.model.name, feature_channels(recipe, samples[0].dim), widths, samples[0].dim,
                  **cfg.model.config)
    trainer = Trainer(model, samples[:n_train], fields=fields, val=samples[n_train:], config=cfg.train,
                      out_dir=out, device=device)
    trainer.fit()
    metrics = trainer.evaluate(samples[n_train:])
    ckpt = out / "model.pt"
    trainer.save(ckpt, extra={"features": recipe, "frame_stats": asdict(FrameStats.of(raw[:n_train])),
                              "test_metrics": metrics, "config_file": str(path)})
    result = {"test_metrics": metrics, "fields": fields, "finite": all(
        v == v for m in metrics.values() for v in m.values())}
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    for f, m in metrics.items():
        print(f"pyengine train: {f}: test rel L2 {m['rel_l2']:.4f}, rel L1 {m['rel_l1']:.4f}, max err {m['max_err']:.4g}")
    print(f"pyengine train: wrote {ckpt} and {out / 'metrics.json'}")
    return result


def predict_file(checkpoint: str | Path, mesh_path: str | Path, out_path: str | Path, *, device: str = "cpu",
                 chunk_size: int = 200_000, conditions: dict[str, float] | None = None) -> Path:
    """Predict the checkpoint's fields on a mesh file and write them onto its connectivity.

    ``conditions``: per-sample scalars of a model trained with conditioning (``kind: files``).
    """
    from ..data import Normalizer, Sample
    from ..geometry import load_mesh

    payload = load_checkpoint(checkpoint)
    if "files" in payload.get("extra", {}):  # trained on files: read the new one the same way
        from .files_run import predict_files

        return predict_files(payload, mesh_path, out_path, device=device, chunk_size=chunk_size,
                             conditions=conditions)
    if conditions:
        raise ValueError("--condition applies to models trained on files with conditioning inputs")
    model, _ = load_model(payload, device)
    normalizer = Normalizer.from_state_dict(payload["normalizer"])
    mesh = load_mesh(mesh_path)
    if mesh.points.shape[0] == 0:
        raise ValueError(f"{mesh_path}: the mesh has no points")
    recipe = payload["extra"].get("features", "none")
    cells = {k: torch.as_tensor(v) for k, v in mesh.cells.items()}
    points = torch.as_tensor(mesh.points, dtype=torch.float32)
    if model.coord_dim == 2:
        points = points[:, :2]
    check_in_distribution(points, payload["extra"].get("frame_stats"), name=str(mesh_path))
    sample, _ = prepare_sample(Sample(points=points, cells=cells), recipe)
    feats = None if sample.features is None else normalize_features(normalizer, sample.features)
    dev = torch.device(device)
    pred = predict_chunked(model, sample.points.to(dev), None if feats is None else feats.to(dev),
                           chunk_size=chunk_size).float().cpu()
    require_finite(pred, f"prediction on {mesh_path}")
    fields, start = {}, 0
    for name, width in payload["fields"].items():
        block = pred[:, start:start + width]
        fields[name] = normalizer.denormalize_field(name, block[:, 0] if width == 1 else block)
        start += width
    path = write_prediction_mesh(out_path, torch.as_tensor(mesh.points), cells, None, fields)
    print(f"pyengine predict: {len(points)} points, fields {list(fields)} -> {path}")
    return path
