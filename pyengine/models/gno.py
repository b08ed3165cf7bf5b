"""GNO: a graph neural operator of stacked kernel integrals over radius balls.

    h0 = lift([f, x]);  h_{l+1} = act(K_l h_l + W_l h_l);  u(q) = proj((K_out h_L)(q))

Every ``K`` is a fused :class:`pyengine.nn.GNOIntegral` over the neighbors
within ``radius`` (coordinates in the units of the points), so no per-edge
tensor is materialised. The point-to-point and point-to-query graphs are built
once per geometry and cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn import GNOIntegral
from ..ops import radius_search
from .base import OperatorModel
from ..nn.mlp import activation, mlp
from .registry import register

__all__ = ["GNO", "GNOConfig"]


@dataclass
class GNOConfig:
    """GNO settings.

    Attributes:
        hidden: channel width of the latent features.
        layers: number of point-to-point integral layers.
        radius: neighborhood radius in coordinate units.
        kernel_hidden: hidden sizes of each kernel MLP (input 2d, output ``hidden``).
        transform: "linear", "nonlinear" or "linear_kernelonly" (see GNOIntegral).
        reduction: "mean" (discretisation-robust) or "sum".
        max_neighbors: keep at most this many nearest neighbors per point (None: all).
        activation: gelu, relu, silu or tanh.
    """

    hidden: int = 64
    layers: int = 3
    radius: float = 0.1
    kernel_hidden: tuple[int, ...] = (64, 64)
    transform: str = "linear"
    reduction: str = "mean"
    max_neighbors: int | None = 64
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 0 or not self.radius > 0:
            raise ValueError(f"GNO needs hidden >= 1, layers >= 0, radius > 0; got {self}")


@register("gno", GNOConfig)
class GNO(OperatorModel):
    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: GNOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        self.lift = mlp([in_channels + coord_dim, c.hidden, c.hidden], c.activation)

        def integral() -> GNOIntegral:
            return GNOIntegral(c.hidden, coord_dim, hidden=c.kernel_hidden, transform=c.transform,
                               reduction=c.reduction, activation=c.activation)

        self.integrals = nn.ModuleList(integral() for _ in range(c.layers))
        self.skips = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.layers))
        self.act = activation(c.activation)()
        self.decode_integral = integral()
        self.project = mlp([c.hidden, c.hidden, out_channels], c.activation)

    def _graph(self, points: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        return self.graphs.get("radius", (points, queries), (c.radius, c.max_neighbors),
                               lambda: radius_search(points, queries, c.radius, max_neighbors=c.max_neighbors))

    def encode(self, points: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.lift(torch.cat([features, points], dim=1))
        if len(self.integrals):
            row_ptr, col = self._graph(points, points)
            for integral, skip in zip(self.integrals, self.skips):
                h = self.act(integral(points, points, row_ptr, col, h) + skip(h))
        return points, h

    def decode(self, state: tuple[Tensor, Tensor], queries: Tensor) -> Tensor:
        points, h = state
        row_ptr, col = self._graph(points, queries)
        return self.project(self.decode_integral(points, queries, row_ptr, col, h))
