"""Name -> (model class, config dataclass) registry behind :func:`pyengine.models.build`."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}


def register(name: str, config_cls: type):
    """Class decorator adding a model family under ``name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise RuntimeError(f"model family {name!r} registered twice")
        _REGISTRY[name] = (cls, config_cls)
        cls.family = name
        return cls

    return wrap


def available() -> list[str]:
    """Registered family names."""
    return sorted(_REGISTRY)


def make_config(name: str, **config: Any):
    """The config dataclass of family ``name`` from keyword overrides (unknown keys are an error)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    cfg_cls = _REGISTRY[name][1]
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        hint = ""
        if name == "gaot" and "gaot_fast" in _REGISTRY:
            fast = {f.name for f in dataclasses.fields(_REGISTRY["gaot_fast"][1])}
            if set(unknown) <= fast:
                hint = ("; they are options of 'gaot_fast', pyengine's own GAOT variant (what 'gaot' built before "
                        "'gaot' became the published architecture)")
        raise ValueError(f"unknown {name} config option(s) {unknown}; valid: {sorted(fields)}{hint}")
    # YAML gives lists where the dataclasses use tuples
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return cfg_cls(**config)


def upgrade_legacy(name: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Family name and config of a checkpoint written by an earlier pyengine.

    Before the paper-faithful GAOT, ``"gaot"`` was the variant now called ``"gaot_fast"``;
    its saved configs are recognised by their ``skip_neighbors`` option.
    """
    if name == "gaot" and "skip_neighbors" in config:
        return "gaot_fast", config
    return name, config


def build(name: str, in_channels: int, out_channels: int, coord_dim: int, **config: Any) -> nn.Module:
    """Build a model family by name.

    Args:
        name: one of :func:`available` (``"gno"``, ``"gino"``, ``"gaot"`` (the published GAOT),
            ``"gaot_fast"`` (pyengine's faster variant), ``"rigno"``).
            Issue 20 adds ``"mppde"`` (MP-PDE, time-dependent) and ``"nuno"`` (NUNO, k-d subdomains).
        in_channels: per-point input feature size C_in (0 allowed: coordinates only).
        out_channels: predicted field channels C_out.
        coord_dim: spatial dimension d (2 or 3).
        **config: fields of that family's config dataclass.

    Returns a module with ``forward(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``.
    """
    cfg = make_config(name, **config)
    if coord_dim not in (2, 3):
        raise ValueError(f"coord_dim must be 2 or 3, got {coord_dim}")
    if in_channels < 0 or out_channels < 1:
        raise ValueError(f"need in_channels >= 0 and out_channels >= 1, got {in_channels}, {out_channels}")
    return _REGISTRY[name][0](in_channels, out_channels, coord_dim, cfg)
