"""``pyengine train``: the YAML-configured run (``predict_file``, behind ``pyengine predict``, lives in
:mod:`.predict` and is re-exported here)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write_text
from .envelope import TrainingEnvelope
from .frame import FrameStats
from .predict import predict_file
from .prepare import feature_channels, prepare_sample
from .run_config import RunConfig, load_run_config
from .train import Trainer
from .validate import ensure_output_dir

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
        recipe = opts.pop("features", "normals")
        raw = build_flow_dataset(n, opts.pop("body_kind", "ahmed"), d.seed, progress=progress, **opts)
        return raw, recipe
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
    units = "m" if cfg.dataset.kind == "bodies" else None  # generated bodies are in metres; darcy2d is unitless
    trainer.save(ckpt, extra={"features": recipe, "frame_stats": asdict(FrameStats.of(raw[:n_train])),
                              "envelope": TrainingEnvelope.of(samples[:n_train], fields, units=units).to_dict(),
                              "test_metrics": metrics, "config_file": str(path)})
    result = {"test_metrics": metrics, "fields": fields, "finite": all(
        v == v for m in metrics.values() for v in m.values())}
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    for f, m in metrics.items():
        print(f"pyengine train: {f}: test rel L2 {m['rel_l2']:.4f}, rel L1 {m['rel_l1']:.4f}, max err {m['max_err']:.4g}")
    print(f"pyengine train: wrote {ckpt} and {out / 'metrics.json'}")
    return result
