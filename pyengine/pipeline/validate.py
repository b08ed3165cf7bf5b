"""Checks that stop a run before it writes a wrong file: non-finite values and unusable output paths."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["ensure_output_dir", "require_finite"]


def ensure_output_dir(path: str | os.PathLike, files: Iterable[str] = (), what: str = "output directory") -> Path:
    """Create ``path`` now (parents too) and check that ``files`` can later be written in it.

    Called before any expensive work (dataset building, training), so a bad output
    location is reported at once rather than after the first epoch. Raises a one-line
    ``ValueError`` when a component of ``path`` is a file, when it is not writable, or
    when one of ``files`` exists as a directory.
    """
    p = Path(path)
    for parent in (p, *p.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(f"{what} {p} cannot be created: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"{what} {p} cannot be written: no write permission on {parent}")
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what} {p} cannot be created ({e.strerror or e})") from None
    for name in files:
        if (p / name).is_dir():
            raise ValueError(f"{what} {p}: {p / name} is a directory, so the {name} file cannot be written")
    return p


def require_finite(values: Tensor | Mapping[str, Tensor], what: str) -> None:
    """Raise ``ValueError`` when ``values`` (a tensor, or name -> tensor) hold NaN or Inf.

    ``what`` names the values in the one-line message (e.g. ``"prediction on body.stl"``).
    Used on predictions before they are written, so a diverged or damaged model never
    produces an all-NaN file with exit status 0.
    """
    items = values.items() if isinstance(values, Mapping) else [(None, values)]
    for name, v in items:
        bad = int((~torch.isfinite(v)).sum()) if v.is_floating_point() or v.is_complex() else 0
        if bad:
            where = what if name is None else f"{what}, field {name!r}"
            raise ValueError(f"{where}: {bad} of {v.numel()} values are NaN or Inf; the model or its inputs are "
                             f"broken, nothing was written")
