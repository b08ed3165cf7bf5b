"""Per-field normalisation statistics: fit once over a training set, apply everywhere.

Each normalised quantity (every target field, and optionally the input features)
gets a per-channel mean and standard deviation, accumulated in float64 over all
rows of all samples (so large samples weigh more, as they do in a pointwise loss).
Values are mapped to ``(v - mean) / std`` and back. The statistics travel with a
trained model through :meth:`Normalizer.state_dict`.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from .batch import Batch
from .sample import Sample

__all__ = ["Normalizer"]

FEATURES = "features"  # key under which the input-feature statistics are stored


class _Moments:
    """Streaming count, mean and sum of squared deviations per channel (Chan et al. merge)."""

    def __init__(self, channels: int):
        self.n = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, x: Tensor) -> None:
        x = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(0)
        m2b = ((x - mb) ** 2).sum(0)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta ** 2 * (self.n * nb / n)
        self.n = n


class Normalizer:
    """Per-channel mean/std for named fields (and input features).

    Args:
        eps: channels whose std is below ``eps`` (constants) get std 1, so they are only
            shifted; dividing by ~0 would blow them up.

    Usage::

        norm = Normalizer().fit(train_samples)
        s = norm.normalize(sample)          # fields and features scaled
        pred = norm.denormalize_field("cp", model_out)
    """

    def __init__(self, eps: float = 1e-12):
        self.eps = float(eps)
        self.mean: dict[str, Tensor] = {}
        self.std: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ fitting

    def fit(self, samples: Iterable[Sample] | Batch, fields: Iterable[str] | None = None,
            features: bool = True) -> "Normalizer":
        """Accumulate statistics over ``samples`` (any iterable of Sample, or a Batch).

        ``fields``: names to fit (default: every field of the first sample).
        ``features``: also fit the input features (when the samples have them).
        Replaces any previous statistics. Raises ValueError on an empty iterable or a missing field.
        """
        if isinstance(samples, Batch):
            samples = samples.to_samples()
        moments: dict[str, _Moments] = {}
        names: list[str] | None = None if fields is None else list(fields)
        seen = 0
        for s in samples:
            if not isinstance(s, Sample):
                raise TypeError(f"fit expects pyengine Samples, got {type(s).__name__}")
            if names is None:
                names = list(s.fields)
            for name in names:
                if name not in s.fields:
                    raise ValueError(f"sample {seen} has no field {name!r} (has {sorted(s.fields)})")
                v = s.fields[name]
                moments.setdefault(name, _Moments(v[0].numel() if v.dim() > 1 else 1)).add(v)
            if features and s.features is not None:
                moments.setdefault(FEATURES, _Moments(s.features.shape[1])).add(s.features)
            seen += 1
        if seen == 0:
            raise ValueError("fit needs at least one sample")
        self.mean, self.std = {}, {}
        for name, m in moments.items():
            if m.n == 0:
                raise ValueError(f"{name!r} has no rows in any sample; cannot fit its statistics")
            std = (m.m2 / m.n).sqrt()
            self.mean[name] = m.mean
            self.std[name] = torch.where(std < self.eps, torch.ones_like(std), std)
        return self

    # ------------------------------------------------------------------ applying

    def _stats(self, name: str, like: Tensor) -> tuple[Tensor, Tensor]:
        if name not in self.mean:
            raise KeyError(f"no normalisation statistics for {name!r} (have {sorted(self.mean)})")
        mean, std = self.mean[name], self.std[name]
        if like.dim() == 1:
            if mean.numel() != 1:
                raise ValueError(f"{name!r} was fitted with {mean.numel()} channels, got a 1-D tensor")
            return mean[0].to(like), std[0].to(like)
        if like.shape[-1] != mean.numel():
            raise ValueError(f"{name!r} was fitted with {mean.numel()} channels, got {like.shape[-1]}")
        return mean.to(like), std.to(like)

    def normalize_field(self, name: str, value: Tensor) -> Tensor:
        """``(value - mean) / std`` for field ``name`` (or ``"features"``); (M,) or (M, k)."""
        mean, std = self._stats(name, value)
        return (value - mean) / std

    def denormalize_field(self, name: str, value: Tensor) -> Tensor:
        """The inverse of :meth:`normalize_field`: ``value * std + mean``."""
        mean, std = self._stats(name, value)
        return value * std + mean

    def _map(self, x: Sample | Batch, fn) -> Sample | Batch:
        fields = {k: (fn(k, v) if k in self.mean else v) for k, v in x.fields.items()}
        feats = x.features
        if feats is not None and FEATURES in self.mean:
            feats = fn(FEATURES, feats)
        qf = x.query_features  # the same channels as the features, at the queries
        if qf is not None and FEATURES in self.mean:
            qf = fn(FEATURES, qf)
        if isinstance(x, Sample):
            return Sample(points=x.points, features=feats, queries=x.queries, fields=fields, cells=x.cells,
                          metadata=dict(x.metadata), weights=x.weights, query_features=qf)
        if isinstance(x, Batch):
            out = x.to(x.points.device)  # shallow structural copy
            out.fields, out.features, out.query_features = fields, feats, qf
            return out
        raise TypeError(f"expected a Sample or Batch, got {type(x).__name__}")

    def normalize(self, x: Sample | Batch) -> Sample | Batch:
        """A copy of a Sample or Batch with its fitted fields and features normalised."""
        return self._map(x, self.normalize_field)

    def denormalize(self, x: Sample | Batch) -> Sample | Batch:
        """The inverse of :meth:`normalize`."""
        return self._map(x, self.denormalize_field)

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and floats, for ``torch.save`` next to a model's weights."""
        return {"eps": self.eps, "mean": {k: v.clone() for k, v in self.mean.items()},
                "std": {k: v.clone() for k, v in self.std.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> "Normalizer":
        try:
            mean, std = dict(state["mean"]), dict(state["std"])
        except (KeyError, TypeError):
            raise ValueError("normaliser state must be a dict with 'mean' and 'std' entries") from None
        if set(mean) != set(std):
            raise ValueError("normaliser state has mean and std for different names")
        means, stds = {}, {}
        for k in mean:
            try:
                m, s = torch.as_tensor(mean[k], dtype=torch.float64), torch.as_tensor(std[k], dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"normaliser state for {k!r}: mean and std must be numbers or tensors") from None
            if m.dim() == 0 and s.dim() == 0:
                m, s = m.reshape(1), s.reshape(1)
            if m.shape != s.shape or m.dim() != 1:
                raise ValueError(f"normaliser state for {k!r}: mean and std must be equal-length vectors")
            # a zero, negative or non-finite std would turn every normalised value into Inf or NaN
            if not bool(torch.isfinite(m).all()) or not bool((torch.isfinite(s) & (s > 0)).all()):
                raise ValueError(f"normaliser state for {k!r}: mean must be finite and std finite and > 0")
            means[k], stds[k] = m, s
        self.eps = float(state.get("eps", self.eps))
        self.mean, self.std = means, stds
        return self

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Normalizer":
        return cls().load_state_dict(state)

    def __repr__(self) -> str:
        return f"Normalizer({', '.join(f'{k}[{v.numel()}]' for k, v in self.mean.items())})"
