"""Checks that stop a run before it writes a wrong file: non-finite values and unusable output paths."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["require_finite"]


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
