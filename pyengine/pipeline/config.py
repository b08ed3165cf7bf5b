"""Training settings as a dataclass, loadable from YAML with clear errors for bad keys, types and ranges."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "check_value", "dataclass_from_dict"]


@dataclass
class TrainConfig:
    """How a model is trained.

    Attributes:
        epochs: passes over the training samples.
        batch_size: samples (geometries) per optimizer step, across all ranks.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        schedule: "cosine" (warm-up free cosine decay to ``lr * min_lr_ratio``), "onecycle" or "constant".
        min_lr_ratio: final/peak learning rate for the cosine schedule.
        grad_clip: max global gradient norm (0 disables clipping).
        amp: mixed precision on CUDA (ignored on CPU): bf16 autocast, and TF32 for what stays float32
            (matmuls, the fused GNO kernels on tensor cores) during training steps and prediction.
        seed: seeds the shuffling and the weight initialisation done by the caller.
        eval_every: evaluate on the validation samples every this many epochs (0: only at the end).
        checkpoint_every: write the checkpoint every this many epochs (0: only at the end).
        progress: show progress bars.
        resample: train on a different discretization of each geometry every step (issue 17):
            the input points are thinned at random, either uniformly (keep fraction ``f``) or
            with a keep probability graded along a random direction from ``f`` to 1 (a mesh
            denser on one side), ``f`` drawn from ``[resample_min, 1]``. Quadrature weights are
            divided by the keep probability (Horvitz-Thompson), so integrals stay unbiased.
            Targets stay at all the original points; evaluation and prediction use the full
            resolution. Each thinned sample carries its parent
            (:class:`~pyengine.models.thinning.Thinning`): a family that supports it (GAOT-fast
            with ``quadrature``) builds its token box, graphs and geometry statistics once per
            geometry and filters them per step. Off by default; the demo turns it on.
        resample_min: the smallest keep fraction of ``resample`` (in (0, 1]).
    """

    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    amp: bool = True
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 0
    progress: bool = True
    resample: bool = False
    resample_min: float = 0.5

    def __post_init__(self) -> None:
        for name, hint in typing.get_type_hints(TrainConfig).items():
            setattr(self, name, check_value(getattr(self, name), hint, name))
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"schedule must be 'cosine', 'onecycle' or 'constant', got {self.schedule!r}")
        for name in ("weight_decay", "grad_clip", "seed", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.resample_min <= 1:
            raise ValueError(f"resample_min must be in (0, 1], got {self.resample_min}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def _describe(hint: Any) -> str:
    """'an integer', 'a list of numbers', ... for a type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is tuple or origin is list:
        return "a list of " + {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(
            _describe(args[0]), "values") if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return str(hint)


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a dataclass field's type hint (as YAML gives it), converted where lossless.

    ``int`` takes integers only (not 1.5, not true); ``float`` takes finite numbers (and numeric strings
    such as ``"1e-3"``, which YAML reads as text); ``tuple[T, ...]`` takes a list or tuple of T and returns
    a tuple; ``X | None`` takes null. Raises ``ValueError`` naming ``where`` (the key path) otherwise.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def fail() -> ValueError:
        return ValueError(f"{where}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")

    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(value, a, where)
            except ValueError:
                pass
        raise fail()
    if hint is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if hint is float:
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise fail() from None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail()
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail()
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} entries, got {len(value)}")
            items = [check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = [check_value(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise fail()
        return value
    return value


def dataclass_from_dict(cls: type, data: dict[str, Any] | None, where: str):
    """``cls(**data)`` with every value type-checked first (:func:`check_value`).

    Errors name the key path (``where.key``), list the valid keys for unknown ones, and
    prefix the dataclass's own range errors with ``where``.
    """
    data = dict(data or {})
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid, key=str)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; valid: {sorted(valid)}")
    hints = typing.get_type_hints(cls)
    values = {k: check_value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError, ArithmeticError) as e:
        raise ValueError(f"{where}: {e}") from None
