"""Per-field normalisation statistics: fit on training samples, apply everywhere, store in checkpoints.

Each field (and the input features) is standardised channel by channel:
``(x - mean) / std``, with statistics pooled over every point of every
training sample (so large geometries weigh by their point count, as in the
loss). Channels that are constant get ``std = 1`` instead of a division by
zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .sample import Sample

__all__ = ["FieldStats", "Normalizer"]

FEATURES = "__features__"


@dataclass
class FieldStats:
    """Channel statistics of one field: ``mean``, ``std`` (k,) float64 (k = 1 for scalar fields)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def of(cls, values: Sequence[Tensor]) -> "FieldStats":
        cols = [v.detach().double().reshape(v.shape[0], -1) for v in values]
        if not cols or sum(c.shape[0] for c in cols) == 0:
            raise ValueError("cannot fit statistics on zero points")
        k = cols[0].shape[1]
        if any(c.shape[1] != k for c in cols):
            raise ValueError(f"channel counts differ between samples: {sorted({c.shape[1] for c in cols})}")
        # Welford-free but stable enough in float64: pooled sums over all points
        n = sum(c.shape[0] for c in cols)
        mean = sum(c.sum(0) for c in cols) / n
        var = sum(((c - mean) ** 2).sum(0) for c in cols) / n
        std = var.sqrt()
        std = torch.where(std > 1e-12 * mean.abs().clamp_min(1.0), std, torch.ones_like(std))
        return cls(mean, std)

    def apply(self, x: Tensor) -> Tensor:
        m, s = self.mean.to(x), self.std.to(x)
        return (x - m.reshape(-1)[0]) / s.reshape(-1)[0] if x.dim() == 1 else (x - m) / s

    def invert(self, x: Tensor) -> Tensor:
        m, s = self.mean.to(x), self.std.to(x)
        return x * s.reshape(-1)[0] + m.reshape(-1)[0] if x.dim() == 1 else x * s + m


class Normalizer:
    """Standardisation of named fields and of the input features.

    Use :meth:`fit` on training samples, :meth:`normalize` / :meth:`denormalize`
    per field, :meth:`normalize_features` for inputs, and
    :meth:`state_dict` / :meth:`from_state_dict` to store it with a model.
    """

    def __init__(self, stats: dict[str, FieldStats] | None = None) -> None:
        self.stats = dict(stats or {})

    @classmethod
    def fit(cls, samples: Sequence[Sample], fields: Sequence[str] | None = None,
            features: bool = True) -> "Normalizer":
        """Statistics of ``fields`` (default: every field of the first sample) and of the features."""
        if not samples:
            raise ValueError("Normalizer.fit needs at least one sample")
        names = list(fields) if fields is not None else sorted(samples[0].fields)
        stats = {}
        for name in names:
            missing = [i for i, s in enumerate(samples) if name not in s.fields]
            if missing:
                raise ValueError(f"field {name!r} is missing from sample(s) {missing[:5]}")
            stats[name] = FieldStats.of([s.fields[name] for s in samples])
        if features and samples[0].features is not None:
            if any(s.features is None for s in samples):
                raise ValueError("some samples have features and others do not")
            stats[FEATURES] = FieldStats.of([s.features for s in samples])
        return cls(stats)

    def _get(self, name: str) -> FieldStats:
        if name not in self.stats:
            known = sorted(k for k in self.stats if k != FEATURES)
            raise KeyError(f"no statistics for field {name!r}; fitted fields: {known}")
        return self.stats[name]

    def normalize(self, name: str, values: Tensor) -> Tensor:
        """``(values - mean) / std`` for field ``name``; (M,) or (M, k)."""
        return self._get(name).apply(values)

    def denormalize(self, name: str, values: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        return self._get(name).invert(values)

    def normalize_features(self, features: Tensor) -> Tensor:
        """Standardised input features (unchanged when none were fitted)."""
        return self.stats[FEATURES].apply(features) if FEATURES in self.stats else features

    def state_dict(self) -> dict[str, dict[str, list[float]]]:
        return {k: {"mean": v.mean.tolist(), "std": v.std.tolist()} for k, v in self.stats.items()}

    @classmethod
    def from_state_dict(cls, state: dict | None) -> "Normalizer":
        if state is None:
            return cls()
        try:
            return cls({k: FieldStats(torch.tensor(v["mean"], dtype=torch.float64),
                                      torch.tensor(v["std"], dtype=torch.float64)) for k, v in state.items()})
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a Normalizer state: {e}") from None
