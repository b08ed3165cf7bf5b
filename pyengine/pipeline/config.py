"""Training settings as a dataclass, loadable from YAML with clear errors for bad keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "dataclass_from_dict"]


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

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"schedule must be 'cosine', 'onecycle' or 'constant', got {self.schedule!r}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")


def dataclass_from_dict(cls: type, data: dict[str, Any] | None, where: str):
    """``cls(**data)`` with an error naming ``where`` and the valid keys for unknown ones."""
    data = dict(data or {})
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; valid: {sorted(valid)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
