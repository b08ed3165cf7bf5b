"""GINO: GNO encoder to a latent regular grid, an FNO on the grid, GNO decoder to the queries.

The latent grid covers the bounding box of each geometry's points and queries
(padded), so the operator sees every geometry at the same latent resolution.
The encoder radius and decoder radius default to ``radius_cells`` grid
spacings, so they scale with the geometry. The ``"points"`` variant skips the
grid and applies NUFFT spectral convolutions (:class:`pyengine.nn.SpectralConvPoints`)
directly on the points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn import GNOIntegral
from ..nn.fno import FNOBlock
from ..ops import radius_search
from .base import OperatorModel
from .common import bounding_box, mlp, regular_grid
from .registry import register

__all__ = ["GINO", "GINOConfig"]


@dataclass
class GINOConfig:
    """GINO settings.

    Attributes:
        hidden: channel width on the grid and in the integrals.
        grid: latent grid shape (2 or 3 entries, matching coord_dim).
        modes: retained Fourier modes per grid axis (each <= grid; last axis <= grid//2 + 1).
        fno_layers: number of FNO blocks.
        radius_cells: encoder/decoder radius in units of the largest grid spacing.
        padding: bounding-box padding as a fraction of the extent.
        kernel_hidden: hidden sizes of the integral kernels.
        max_neighbors: per-row neighbor cap of the encoder and decoder graphs (nearest kept).
        variant: "grid" (GNO -> FNO -> GNO) or "points" (NUFFT spectral layers on the points).
        activation: gelu, relu, silu or tanh.
    """

    hidden: int = 32
    grid: tuple[int, ...] = (16, 16, 16)
    modes: tuple[int, ...] = (8, 8, 8)
    fno_layers: int = 4
    radius_cells: float = 1.5
    padding: float = 0.05
    kernel_hidden: tuple[int, ...] = (64, 64)
    max_neighbors: int | None = 64
    variant: str = "grid"
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.variant not in ("grid", "points"):
            raise ValueError(f"GINO variant must be 'grid' or 'points', got {self.variant!r}")
        if len(self.grid) != len(self.modes):
            raise ValueError(f"grid {self.grid} and modes {self.modes} need the same number of axes")


@register("gino", GINOConfig)
class GINO(OperatorModel):
    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: GINOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.grid) != coord_dim:
            raise ValueError(f"grid {c.grid} must have coord_dim={coord_dim} axes")
        self.lift = mlp([in_channels + coord_dim, c.hidden, c.hidden], c.activation)
        if c.variant == "grid":
            self.encode = GNOIntegral(c.hidden, coord_dim, hidden=c.kernel_hidden, reduction="mean",
                                      activation=c.activation)
            self.blocks = nn.ModuleList(FNOBlock(c.hidden, c.modes) for _ in range(c.fno_layers))
        else:
            from ..nn import SpectralConvPoints

            self.spectral = nn.ModuleList(SpectralConvPoints(c.hidden, c.hidden, c.modes, coord_dim)
                                          for _ in range(c.fno_layers))
            self.pointwise = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.fno_layers))
            self.act = nn.GELU()
        self.decode = GNOIntegral(c.hidden, coord_dim, hidden=c.kernel_hidden, reduction="mean",
                                  activation=c.activation)
        self.project = mlp([c.hidden, c.hidden, out_channels], c.activation)

    def _latent(self, points: Tensor, queries: Tensor):
        """Grid nodes, the encoder and decoder graphs, and the radius, cached per geometry."""
        c = self.config

        def compute():
            lo, hi = bounding_box(points, queries, padding=c.padding)
            nodes = regular_grid(lo, hi, c.grid)
            r = c.radius_cells * float(((hi - lo) / torch.tensor(c.grid, dtype=lo.dtype, device=lo.device)).max())
            enc = radius_search(points, nodes, r, max_neighbors=c.max_neighbors)
            dec = radius_search(nodes, queries, r, max_neighbors=c.max_neighbors)
            return nodes, enc, dec, lo, hi

        return self.graphs.get("gino-latent", (points, queries), (c.grid, c.padding, c.radius_cells,
                                                                   c.max_neighbors), compute)

    def _forward(self, points: Tensor, features: Tensor, queries: Tensor) -> Tensor:
        c = self.config
        h = self.lift(torch.cat([features, points], dim=1))
        if c.variant == "points":
            return self._forward_points(points, h, queries)
        nodes, (enc_ptr, enc_col), (dec_ptr, dec_col), _, _ = self._latent(points, queries)
        g = self.encode(points, nodes, enc_ptr, enc_col, h)  # (G, hidden)
        g = g.T.reshape(1, c.hidden, *c.grid)
        for block in self.blocks:
            g = block(g)
        g = g.reshape(c.hidden, -1).T
        return self.project(self.decode(nodes, queries, dec_ptr, dec_col, g))

    def _forward_points(self, points: Tensor, h: Tensor, queries: Tensor) -> Tensor:
        c = self.config
        lo, hi = bounding_box(points, queries, padding=c.padding)
        # NUFFT coordinates are 2*pi-periodic: map the padded box onto [-pi, pi)
        x = (points - lo) / (hi - lo) * (2 * math.pi) - math.pi
        for spectral, pointwise in zip(self.spectral, self.pointwise):
            h = self.act(spectral(x, h) + pointwise(h))
        r = c.radius_cells * float(((hi - lo) / torch.tensor(c.grid, dtype=lo.dtype, device=lo.device)).max())
        row_ptr, col = self.graphs.get("radius", (points, queries), (r, c.max_neighbors),
                                       lambda: radius_search(points, queries, r, max_neighbors=c.max_neighbors))
        return self.project(self.decode(points, queries, row_ptr, col, h))
