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
      name: gaot            # gno | gino | gaot | gaot_fast | rigno | gnot | mgno | mgtfno | mppde | nuno
      config: {}            # fields of that family's config dataclass
    train:                  # fields of pyengine.pipeline.TrainConfig
      epochs: 60
      lr: 0.002
    out: runs/bodies-gaot   # metrics.json, model.pt, predictions (.vtu), figure (.png)
    device: cpu             # cpu | cuda
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig, check_value, dataclass_from_dict

__all__ = ["DatasetConfig", "ModelSpec", "RunConfig", "load_run_config"]


#: ``dataset.options`` accepted per dataset kind, with their types (passed to the dataset builder).
DATASET_OPTIONS: dict[str, dict[str, Any]] = {
    "bodies": {"body_kind": str, "resolution": dict[str, float], "velocity": tuple[float, float, float],
               "workers": int | None, "features": str},
    "darcy2d": {"h": float, "n_holes": tuple[int, int], "order": int, "workers": int | None},
}


def _check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``dataset.options`` type- and range-checked for ``kind`` (what the builder would reject later)."""
    if kind == "files":  # users' own results: FileDatasetConfig checks its keys, types and ranges
        from ..data.files import file_config_from_dict

        file_config_from_dict(options, where="options")
        return dict(options)
    allowed = DATASET_OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"options: unknown key(s) {unknown} for kind {kind!r}; valid: {sorted(allowed)}")
    out = {k: check_value(v, allowed[k], f"options.{k}") for k, v in options.items()}
    if (out.get("workers") or 0) < 0:
        raise ValueError(f"options.workers: must be >= 0, got {out['workers']}")
    if kind == "bodies":
        from ..data.physics.bodies import BODY_KINDS
        from ..data.physics.potential_flow import DEFAULT_RESOLUTION, _check_resolution

        from .prepare import NORMAL_RECIPES

        if "features" in out and out["features"] not in NORMAL_RECIPES:
            raise ValueError(f"options.features: must be 'normals' (vertex normals) or 'smooth_normals' (normals "
                             f"windowed at a fixed length, mesh-independent), got {out['features']!r}")
        if "body_kind" in out and out["body_kind"] not in BODY_KINDS + ("mixed",):
            raise ValueError(f"options.body_kind: must be one of {list(BODY_KINDS + ('mixed',))}, "
                             f"got {out['body_kind']!r}")
        res = out.get("resolution", {})
        bad = sorted(set(res) - set(DEFAULT_RESOLUTION), key=str)
        if bad:
            raise ValueError(f"options.resolution: unknown key(s) {bad}; valid: {sorted(DEFAULT_RESOLUTION)}")
        try:
            _check_resolution(**{**DEFAULT_RESOLUTION, **res})
        except ValueError as e:
            raise ValueError(f"options.resolution: {str(e).removeprefix('potential_flow: ')}") from None
    else:
        if "h" in out and not out["h"] > 0:
            raise ValueError(f"options.h: must be > 0, got {out['h']}")
        if "order" in out and out["order"] not in (1, 2):
            raise ValueError(f"options.order: must be 1 or 2, got {out['order']}")
        if "n_holes" in out and not 0 <= out["n_holes"][0] <= out["n_holes"][1]:
            raise ValueError(f"options.n_holes: must be [min, max] with 0 <= min <= max, got {list(out['n_holes'])}")
    return out


@dataclass
class DatasetConfig:
    kind: str = "bodies"
    n_train: int = 32
    n_test: int = 8
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, hint in typing.get_type_hints(DatasetConfig).items():
            setattr(self, name, check_value(getattr(self, name), hint, name))
        if self.kind not in ("bodies", "darcy2d", "files"):
            raise ValueError(f"kind must be 'bodies', 'darcy2d' or 'files', got {self.kind!r}")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"need n_train >= 1 and n_test >= 1, got {self.n_train}, {self.n_test}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        self.options = _check_options(self.kind, self.options)


@dataclass
class ModelSpec:
    name: str = "gaot"
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, hint in typing.get_type_hints(ModelSpec).items():
            setattr(self, name, check_value(getattr(self, name), hint, name))


#: Model settings that are sizes or counts (each entry, for lists): they must be >= 1.
_AT_LEAST_ONE = {"hidden", "dim", "heads", "vit_heads", "patch", "edge_dim", "density_k", "grid", "modes",
                 "kernel_hidden", "max_neighbors", "depth", "fno_layers", "processor_steps", "kv_heads",
                 "encoder_kernel_hidden", "decoder_kernel_hidden", "projection_hidden", "embedding_hidden",
                 "scale_weight_hidden", "ffn_multiplier"}
#: Model settings that are lengths, scales or ratios: they must be > 0.
_POSITIVE = {"radius", "radius_cells", "radii_cells", "decoder_radius_cells", "radius_factor", "processor_scales",
             "regional_ratio"}


def _check_model_ranges(values: dict[str, Any], where: str) -> None:
    """Sizes >= 1, lengths > 0 and every other number >= 0 among a family's (type-checked) settings."""
    for name, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if name in _AT_LEAST_ONE and v < 1:
                raise ValueError(f"{where}.{name}: must be >= 1, got {value!r}")
            if name in _POSITIVE and not v > 0:
                raise ValueError(f"{where}.{name}: must be > 0, got {value!r}")
            if v < 0:
                raise ValueError(f"{where}.{name}: must be >= 0, got {value!r}")


def _check_model(spec: ModelSpec, kind: str, where: str) -> None:
    """Type and range checks of ``model.config``, then the model is built once (no data needed)."""
    from ..models import available, build, make_config
    from .prepare import feature_channels

    if spec.name not in available():
        raise ValueError(f"{where}.name: unknown model {spec.name!r}; available: {', '.join(available())}")
    cfg_cls = type(make_config(spec.name))
    valid = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(spec.config) - valid, key=str)
    if unknown:
        raise ValueError(f"{where}.config: unknown {spec.name} option(s) {unknown}; valid: {sorted(valid)}")
    hints = typing.get_type_hints(cfg_cls)
    values = {k: check_value(v, hints[k], f"{where}.config.{k}") for k, v in spec.config.items()}
    _check_model_ranges(values, f"{where}.config")  # before the dataclass, whose own checks may divide by them
    dataclass_from_dict(cfg_cls, values, f"{where}.config")
    spec.config = values  # checked values (lists as tuples)
    recipe, dim = ("normals", 3) if kind == "bodies" else ("none", 2)
    try:
        build(spec.name, feature_channels(recipe, dim), 1, dim, **spec.config)
    except (TypeError, ValueError, RuntimeError, ArithmeticError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"{where}.config: cannot build a {spec.name} model for {kind} data ({first})") from None


@dataclass
class RunConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/pyengine"
    device: str = "cpu"


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration.

    Every key is checked up front, before any data is built: unknown keys, types
    (``epochs: "ten"``, ``n_train: 1.5``, ``kernel_hidden: 5``) and ranges. Errors are
    one-line ``ValueError``s naming the file and the key path (``train.epochs``).
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.y*ml"))
        hint = f" (it holds {', '.join(found[:5])})" if found else ""
        raise ValueError(f"config {path} is a directory, not a YAML file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping with dataset/model/train sections")
    valid = {"dataset", "model", "train", "out", "device"}
    unknown = sorted(set(data) - valid, key=str)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; valid: {sorted(valid)}")
    for key in ("dataset", "model", "train"):
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            raise ValueError(f"{path}: section {key!r} must be a mapping")
    for key in ("out", "device"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{path}: {key}: expected a string, got {data[key]!r} ({type(data[key]).__name__})")
    cfg = RunConfig(
        dataset=dataclass_from_dict(DatasetConfig, data.get("dataset"), f"{path}: dataset"),
        model=dataclass_from_dict(ModelSpec, data.get("model"), f"{path}: model"),
        train=dataclass_from_dict(TrainConfig, data.get("train"), f"{path}: train"),
        out=data.get("out", "runs/pyengine"),
        device=data.get("device", "cpu"),
    )
    if cfg.device not in ("cpu", "cuda"):
        raise ValueError(f"{path}: device must be 'cpu' or 'cuda', got {cfg.device!r}")
    if not cfg.out.strip():
        raise ValueError(f"{path}: out must name a directory")
    _check_model(cfg.model, cfg.dataset.kind, f"{path}: model")
    return cfg
