"""GINO: GNO encoder to a latent regular grid, an FNO on the grid, GNO decoder to the queries.

The latent grid covers the padded bounding box of each geometry's input points,
so the operator sees every geometry at the same latent resolution; queries
should lie in that box (a query with no grid node within the radius gets only
the projection of a zero integral).
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
from ._box import box_grid
from ._quadrature import default_weights, mean_edge_weights, quadrature_graph
from .base import OperatorModel
from ..nn.mlp import activation, mlp
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
        radius_cells: encoder/decoder radius in grid spacings: the largest over the axes of the
            distance between neighbouring grid nodes, ``extent / (n - 1)`` (the convention of
            :func:`pyengine.geometry.latent_grid`, shared with GAOT's ``radii_cells``).
        padding: bounding-box padding as a fraction of the extent.
        kernel_hidden: hidden sizes of the integral kernels.
        max_neighbors: per-row neighbor cap of the encoder and decoder graphs (nearest kept).
        variant: "grid" (GNO -> FNO -> GNO) or "points" (NUFFT spectral layers on the points).
        activation: gelu, relu, silu or tanh: of the lifting and projection MLPs, the integral
            kernels, and the FNO blocks (or the spectral layers of the "points" variant).
        quadrature: discretization-convergent encoder. The point-to-grid integral becomes the
            quadrature-weighted mean ``sum w_j k f_j / sum w_j`` over each node's ball (``w`` the
            input points' weights, ``forward(..., weights=)``, k-nearest-neighbour density
            weights when none are given), the ``max_neighbors`` cap keeps a spatially uniform
            subset carrying the same weight, and the "points" variant's NUFFT sums use ``w``
            (normalised to sum 1) instead of ``1/N``. The FNO and the grid-to-query decoder see
            only the fixed latent grid, so with this option every part of GINO is
            discretization-convergent. False: plain means (the default; older checkpoints).
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
    quadrature: bool = False

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
            self.encode_integral = GNOIntegral(c.hidden, coord_dim, hidden=c.kernel_hidden,
                                               reduction="sum" if c.quadrature else "mean", activation=c.activation)
            self.blocks = nn.ModuleList(FNOBlock(c.hidden, c.modes, activation=activation(c.activation))
                                        for _ in range(c.fno_layers))
        else:
            from ..nn import SpectralConvPoints

            self.spectral = nn.ModuleList(SpectralConvPoints(c.hidden, c.hidden, c.modes, coord_dim)
                                          for _ in range(c.fno_layers))
            self.pointwise = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.fno_layers))
            self.act = activation(c.activation)()
        self.decode_integral = GNOIntegral(c.hidden, coord_dim, hidden=c.kernel_hidden, reduction="mean",
                                  activation=c.activation)
        self.project = mlp([c.hidden, c.hidden, out_channels], c.activation)

    def _grid(self, points: Tensor):
        """Grid nodes over the padded box of the points, the encoder graph and the radius (cached)."""
        c = self.config

        def compute():
            grid = box_grid(points, c.grid, c.padding)  # never a zero-extent box (plates, coincident points)
            nodes, lo, hi = grid.points.to(points), grid.lower.to(points), grid.upper.to(points)
            r = c.radius_cells * float(grid.spacing.max())
            return nodes, radius_search(points, nodes, r, max_neighbors=c.max_neighbors), r, lo, hi

        return self.graphs.get("gino-grid", (points,), (c.grid, c.padding, c.radius_cells, c.max_neighbors), compute)

    def _encoder_quadrature(self, points: Tensor, nodes: Tensor, r: float, weights: Tensor):
        """Encoder graph with normalised quadrature edge weights (cached)."""
        c = self.config

        def compute():
            rp, col, ew = quadrature_graph(points, nodes, r, weights, c.max_neighbors)
            return rp, col, mean_edge_weights(rp, ew)

        return self.graphs.get("gino-encoder-quadrature", (points, nodes, weights), (r, c.max_neighbors), compute)

    def _decoder_graph(self, sources: Tensor, queries: Tensor, r: float):
        c = self.config
        return self.graphs.get("gino-decoder", (sources, queries), (r, c.max_neighbors),
                               lambda: radius_search(sources, queries, r, max_neighbors=c.max_neighbors))

    def encode(self, points: Tensor, features: Tensor, weights: Tensor | None = None):
        c = self.config
        if c.quadrature and weights is None:
            weights = self.graphs.get("density-weights", (points,), (), lambda: default_weights(points))
        h = self.lift(torch.cat([features, points], dim=1))
        if c.variant == "points":
            _, _, r, lo, hi = self._grid(points)
            # NUFFT coordinates are 2*pi-periodic: the padded box maps into [-pi, pi)
            x = (points - lo) / (hi - lo) * (2 * math.pi) - math.pi
            w = weights / weights.sum() if c.quadrature else None
            for spectral, pointwise in zip(self.spectral, self.pointwise):
                h = self.act(spectral(x, h, w) + pointwise(h))
            return points, h, r, weights if c.quadrature else None
        nodes, (row_ptr, col), r, _, _ = self._grid(points)
        ew = None
        if c.quadrature:
            row_ptr, col, ew = self._encoder_quadrature(points, nodes, r, weights)
        g = self.encode_integral(points, nodes, row_ptr, col, h, edge_weights=ew)  # (G, hidden), row-major grid order
        g = g.T.reshape(1, c.hidden, *c.grid)
        for block in self.blocks:
            g = block(g)
        return nodes, g.reshape(c.hidden, -1).T, r, None

    def decode(self, state, queries: Tensor) -> Tensor:
        sources, h, r, weights = state
        if weights is not None:  # "points" variant with quadrature: the sources are the input points
            row_ptr, col, ew = self._encoder_quadrature(sources, queries, r, weights)
            # a sum over quadrature-normalised edges; decode_integral reduces by mean, so scale back
            counts = (row_ptr[1:] - row_ptr[:-1]).to(ew.dtype)
            ew = ew * counts.repeat_interleave(row_ptr[1:] - row_ptr[:-1])
            return self.project(self.decode_integral(sources, queries, row_ptr, col, h, edge_weights=ew))
        row_ptr, col = self._decoder_graph(sources, queries, r)
        return self.project(self.decode_integral(sources, queries, row_ptr, col, h))
