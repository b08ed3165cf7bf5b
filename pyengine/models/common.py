"""Small building blocks shared by the model families."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["activation", "mlp", "bounding_box", "regular_grid"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def activation(name: str) -> type[nn.Module]:
    """The activation module class for ``name`` (gelu, relu, silu, tanh)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def mlp(sizes: Sequence[int], act: str = "gelu", last_activation: bool = False) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``sizes`` (at least two entries)."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(activation(act)())
    return nn.Sequential(*layers)


def bounding_box(*clouds: Tensor, padding: float = 0.0) -> tuple[Tensor, Tensor]:
    """Joint axis-aligned box ``(lo (d,), hi (d,))`` of point clouds, padded by a fraction of its extent."""
    pts = torch.cat([c.detach() for c in clouds], dim=0)
    lo, hi = pts.min(dim=0).values, pts.max(dim=0).values
    ext = (hi - lo).clamp_min(1e-6 * float((hi - lo).abs().max().clamp_min(1.0)))
    return lo - padding * ext, hi + padding * ext


def regular_grid(lo: Tensor, hi: Tensor, shape: Sequence[int]) -> Tensor:
    """Cell-centred nodes of a regular grid over ``[lo, hi]``: ``(prod(shape), d)``, row-major order."""
    axes = [lo[i] + (torch.arange(n, dtype=lo.dtype, device=lo.device) + 0.5) * (hi[i] - lo[i]) / n
            for i, n in enumerate(shape)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))
