"""Per-field error metrics, in physical units, averaged over samples."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["field_errors", "relative_l2"]


def relative_l2(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """``||pred - target||_2 / ||target||_2`` over all entries (a 0-dim tensor)."""
    return torch.linalg.vector_norm(pred - target) / torch.linalg.vector_norm(target).clamp_min(eps)


def field_errors(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Relative L2, relative L1 and max absolute error of one field on one sample.

    Shapes: ``pred``, ``target`` (M,) or (M, k).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    diff = (pred - target).double()
    t = target.double()
    return {
        "rel_l2": float(torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(t).clamp_min(1e-12)),
        "rel_l1": float(diff.abs().sum() / t.abs().sum().clamp_min(1e-12)),
        "max_err": float(diff.abs().max()) if diff.numel() else 0.0,
    }
