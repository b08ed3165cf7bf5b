"""Small synthetic problems shared by the pipeline tests and the DDP worker."""

import torch

from pyengine.data import Sample
from pyengine.models import build
from pyengine.pipeline import TrainConfig, Trainer


def field_sample(i: int, n: int = 120) -> Sample:
    """A 2-D cloud with smooth features and a smooth target field ``u``."""
    g = torch.Generator().manual_seed(i)
    p = torch.rand(n, 2, generator=g) * 2 - 1
    return Sample(p, features=torch.sin(3 * p), fields={"u": 3 * (p ** 2).sum(1) + 1})


def small_gno():
    torch.manual_seed(0)
    return build("gno", 2, 1, 2, hidden=8, layers=1, radius=0.35, kernel_hidden=(8,), max_neighbors=12)


def ddp_setup(**overrides) -> Trainer:
    """The trainer both the DDP ranks and the single-process reference build."""
    cfg = dict(epochs=2, batch_size=4, lr=5e-3, progress=False, seed=1)
    cfg.update(overrides)
    return Trainer(small_gno(), [field_sample(i) for i in range(8)], fields=["u"], config=TrainConfig(**cfg))
