"""One-file checkpoints: model family, config, weights, normalisation stats, training state.

Writes go to a temporary file in the target directory and are renamed into
place (``os.replace`` is atomic on POSIX), so a crash mid-write leaves the
previous checkpoint intact instead of a truncated one.

A checkpoint holds only tensors and plain containers (dicts, lists, tuples,
strings, numbers, None): the model config is stored as a dict, the optimizer and
scheduler states are plain state dicts. It is read with
``torch.load(weights_only=True)`` (:func:`pyengine._safe_load.load_plain`), whose
unpickler builds nothing else, so a file carrying a pickled callable (a
``__reduce__`` payload) is refused with a ``ValueError`` before any of its code
can run (see SECURITY.md).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .._atomic import atomic_torch_save
from .._safe_load import load_plain

__all__ = ["save_checkpoint", "load_checkpoint", "load_model"]

FORMAT = 1


def save_checkpoint(path: str | os.PathLike, model, *, normalizer=None, fields: dict[str, int] | None = None,
                    train_state: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a :mod:`pyengine.models` family) and its context to ``path`` atomically.

    Args:
        model: the model (unwrapped, not DDP).
        normalizer: object with ``state_dict()`` (per-field statistics) or None.
        fields: predicted field name -> channel count, in output order.
        train_state: optimizer/scheduler state, epoch, ... for resuming.
        extra: any JSON-friendly metadata (dataset description, metrics).
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "pyengine_version": __version__,
        "family": model.family,
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "coord_dim": model.coord_dim,
        "config": dataclasses.asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalizer": None if normalizer is None else normalizer.state_dict(),
        "fields": dict(fields or {}),
        "train_state": train_state,
        "extra": dict(extra or {}),
    }
    atomic_torch_save(payload, path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dictionary (tensors on CPU), with a clear error for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = load_plain(path, f"checkpoint {path}", "pyengine checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "family" not in payload:
        raise ValueError(f"checkpoint {path} is not a pyengine checkpoint (format {FORMAT})")
    check_payload(payload, f"checkpoint {path}")
    return payload


def check_payload(payload: dict[str, Any], where: str = "checkpoint") -> None:
    """Raise a one-line ``ValueError`` unless ``payload`` is a usable checkpoint.

    Checks every entry :func:`load_model` and prediction read (present, of the right type),
    and that the weights and the normaliser statistics are finite (a checkpoint of a diverged
    run would otherwise predict NaN everywhere).
    """
    required = {"family": str, "in_channels": int, "out_channels": int, "coord_dim": int, "config": dict,
                "state_dict": dict, "normalizer": (dict, type(None)), "fields": dict}
    for key, kind in required.items():
        if key not in payload:
            raise ValueError(f"{where} has no {key!r} entry; it was not written by pyengine's save_checkpoint")
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise ValueError(f"{where}: entry {key!r} has type {type(payload[key]).__name__}")
    for name, w in payload["state_dict"].items():
        if not isinstance(w, torch.Tensor):
            raise ValueError(f"{where}: weight {name!r} is a {type(w).__name__}, not a tensor")
        if w.is_floating_point() and not bool(torch.isfinite(w).all()):
            bad = int((~torch.isfinite(w)).sum())
            raise ValueError(f"{where}: weight {name!r} holds NaN or Inf ({bad} of {w.numel()} values); the "
                             f"training diverged or the file is damaged")
    for name, width in payload["fields"].items():
        if not isinstance(name, str) or not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"{where}: entry 'fields' must map field names to channel counts >= 1")
    if payload["fields"] and sum(payload["fields"].values()) != payload["out_channels"]:
        raise ValueError(f"{where}: fields {payload['fields']} have {sum(payload['fields'].values())} channels but "
                         f"the model predicts {payload['out_channels']}")
    if payload["normalizer"] is not None:
        from ..data import Normalizer

        try:
            Normalizer.from_state_dict(payload["normalizer"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


def load_model(path_or_payload, device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint, weights loaded, in eval mode. Returns ``(model, payload)``."""
    from ..models import build

    if isinstance(path_or_payload, dict):
        payload, where = path_or_payload, "checkpoint"
        check_payload(payload, where)
    else:
        payload, where = load_checkpoint(path_or_payload), f"checkpoint {path_or_payload}"
    try:
        model = build(payload["family"], payload["in_channels"], payload["out_channels"], payload["coord_dim"],
                      **payload["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: its model settings are invalid ({e})") from None
    load_weights(model, payload["state_dict"], where)
    return model.to(device).eval(), payload


def load_weights(model, state_dict: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """``model.load_state_dict(state_dict)`` with a one-line ``ValueError`` naming the first mismatch.

    (PyTorch's own error lists every mismatched tensor over many lines.)
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        if shapes:
            k = shapes[0]
            first = (f"{k!r} has shape {tuple(state_dict[k].shape)} but the {model.family} model built from its "
                     f"config expects {tuple(own[k].shape)}")
        elif missing:
            first = f"{missing[0]!r} is missing"
        else:
            first = f"{unexpected[0]!r} is not a weight of a {model.family} model"
        raise ValueError(f"{where}: the weights do not fit the model: {first} ({len(shapes)} shape mismatch(es), "
                         f"{len(missing)} missing, {len(unexpected)} unexpected)")
    model.load_state_dict(state_dict)
