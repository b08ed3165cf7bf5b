"""Training, evaluation, prediction and export: Trainer, checkpoints, demo, CLI back ends."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig
from .metrics import field_errors, relative_l2
from .predict import predict_chunked
from .train import Trainer

__all__ = ["TrainConfig", "Trainer", "field_errors", "load_checkpoint", "load_model", "predict_chunked",
           "relative_l2", "save_checkpoint"]
