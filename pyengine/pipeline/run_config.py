"""``pyengine train --config CONFIG.yaml``: dataset, model and trainer settings in one file.

Every section has documented defaults; unknown keys are errors that list the
valid ones. Example (all keys optional)::

    dataset:
      kind: bodies          # "bodies" (parametric CAD bodies, potential-flow Cp), "darcy2d", or
                            # "files" (your own results; options: pyengine.data.files.FileDatasetConfig,
                            # n_train/n_test unused: the manifest's split or options.test decide)
      n_train: 32
      n_test: 8
      seed: 0
      options: {}           # passed to the dataset builder (resolution, body family, ...)
    model:
      name: gaot            # gno | gino | gaot | rigno
      config: {}            # fields of that family's config dataclass
    train:                  # fields of pyengine.pipeline.TrainConfig
      epochs: 60
      lr: 0.002
    out: runs/bodies-gaot   # metrics.json, model.pt, predictions (.vtu), figure (.png)
    device: cpu             # cpu | cuda
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig, dataclass_from_dict

__all__ = ["DatasetConfig", "ModelSpec", "RunConfig", "load_run_config"]


@dataclass
class DatasetConfig:
    kind: str = "bodies"
    n_train: int = 32
    n_test: int = 8
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("bodies", "darcy2d", "files"):
            raise ValueError(f"dataset.kind must be 'bodies', 'darcy2d' or 'files', got {self.kind!r}")
        if self.kind == "files":  # check the options now, before anything is read or trained
            from ..data.files import file_config_from_dict

            file_config_from_dict(self.options)
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"need n_train >= 1 and n_test >= 1, got {self.n_train}, {self.n_test}")


@dataclass
class ModelSpec:
    name: str = "gaot"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/pyengine"
    device: str = "cpu"


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration (errors name the file and the key)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping with dataset/model/train sections")
    valid = {"dataset", "model", "train", "out", "device"}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; valid: {sorted(valid)}")
    for key in ("dataset", "model", "train"):
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"{path}: section {key!r} must be a mapping")
    cfg = RunConfig(
        dataset=dataclass_from_dict(DatasetConfig, data.get("dataset"), f"{path}: dataset"),
        model=dataclass_from_dict(ModelSpec, data.get("model"), f"{path}: model"),
        train=dataclass_from_dict(TrainConfig, data.get("train"), f"{path}: train"),
        out=str(data.get("out", "runs/pyengine")),
        device=str(data.get("device", "cpu")),
    )
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"{path}: device must be 'cpu' or 'cuda', got {cfg.device!r}")
    from ..models import make_config

    try:
        make_config(cfg.model.name, **cfg.model.config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: model: {e}") from None
    return cfg
