"""The plain MLP every layer and model builds: ``Linear -> act -> ... -> Linear`` (no activation last)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["ACTIVATIONS", "activation", "mlp"]

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def activation(name: str) -> type[nn.Module]:
    """The activation module class for ``name`` (gelu, relu, silu, tanh)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def mlp(sizes: Sequence[int], act: str = "gelu") -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``sizes`` (at least two entries)."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act)())
    return nn.Sequential(*layers)
