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
from .._atomic import atomic_path
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
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dictionary (tensors on CPU), with a clear error for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = load_plain(path, f"checkpoint {path}", "pyengine checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "family" not in payload:
        raise ValueError(f"checkpoint {path} is not a pyengine checkpoint (format {FORMAT})")
    return payload


def load_model(path_or_payload, device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint, weights loaded, in eval mode. Returns ``(model, payload)``."""
    from ..models import build

    payload = path_or_payload if isinstance(path_or_payload, dict) else load_checkpoint(path_or_payload)
    model = build(payload["family"], payload["in_channels"], payload["out_channels"], payload["coord_dim"],
                  **payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload
