"""Point cloud <-> latent grid transfer shared by the grid-operator families (MgNO, MG-TFNO).

    points (N, d), features (N, C_in) --lift--> (N, C) --GNO integral (mean over a ball)--> grid (1, C, *grid)
    grid (1, C', *grid) --GNO integral over the grid nodes near each query--> (M, C') --project--> (M, C_out)

Both integrals are fused :class:`pyengine.nn.GNOIntegral` layers (the ``gno_integral``
op) over radius graphs from :func:`pyengine.ops.radius_search`; the grid covers the
padded bounding box of the input points (:func:`pyengine.models._box.box_grid`, never
of zero extent), and the radius is ``radius_cells`` grid spacings. Kernels see
coordinates normalised to that box (``[-1, 1]`` per axis), so weights transfer
across geometry sizes. Graphs are cached per geometry in the model's
:class:`~pyengine.models.base.GraphCache`. Decoding is row-independent, so chunked
prediction is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..nn import GNOIntegral
from ..nn.mlp import mlp
from ..ops import radius_search
from ._box import box_grid
from .base import GraphCache

__all__ = ["GridTransfer"]


class GridTransfer(nn.Module):
    """Lift + GNO integral to a latent grid, and GNO integral + projection back to queries.

    Args:
        in_channels: C_in per input point (the lift sees ``[f, x_unit]``).
        out_channels: C_out at the queries.
        coord_dim: d.
        width: C, the channels on the grid going in.
        grid_out: C', the channels on the grid coming out (what the decoder integrates).
        grid: the latent grid shape (d entries).
        padding, radius_cells, kernel_hidden, max_neighbors, activation: as in GINO.
        lift_hidden / project_hidden: hidden width of the lift / projection MLP, or ``None``
            for a single linear map (no lifting / projection network).
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, width: int, grid_out: int,
                 grid: Sequence[int], padding: float, radius_cells: float, kernel_hidden: Sequence[int],
                 max_neighbors: int | None, activation: str, lift_hidden: int | None,
                 project_hidden: int | None) -> None:
        super().__init__()
        self.grid, self.padding, self.radius_cells = tuple(grid), float(padding), float(radius_cells)
        self.max_neighbors = max_neighbors
        sizes = [in_channels + coord_dim] + ([lift_hidden] if lift_hidden else []) + [width]
        self.lift = mlp(sizes, activation)
        self.encode_integral = GNOIntegral(width, coord_dim, hidden=tuple(kernel_hidden), reduction="mean",
                                           activation=activation)
        self.decode_integral = GNOIntegral(grid_out, coord_dim, hidden=tuple(kernel_hidden), reduction="mean",
                                           activation=activation)
        sizes = [grid_out] + ([project_hidden] if project_hidden else []) + [out_channels]
        self.project = mlp(sizes, activation)

    def _grid(self, cache: GraphCache, points: Tensor):
        def compute():
            g = box_grid(points, self.grid, self.padding)
            nodes, lo, hi = g.points.to(points), g.lower.to(points), g.upper.to(points)
            r = self.radius_cells * float(g.spacing.max())
            return nodes, radius_search(points, nodes, r, max_neighbors=self.max_neighbors), r, lo, hi

        return cache.get("latent-grid", (points,), (self.grid, self.padding, self.radius_cells, self.max_neighbors),
                         compute)

    def to_grid(self, cache: GraphCache, points: Tensor, features: Tensor) -> tuple[Tensor, tuple]:
        """``(1, C, *grid)`` grid features and the context :meth:`from_grid` needs."""
        nodes, (row_ptr, col), r, lo, hi = self._grid(cache, points)
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        h = self.lift(torch.cat([features, unit(points)], dim=1))
        g = self.encode_integral(unit(points), unit(nodes), row_ptr, col, h)  # (G, C), row-major grid order
        return g.T.reshape(1, -1, *self.grid), (nodes, r, lo, hi)

    def from_grid(self, cache: GraphCache, context: tuple, grid_features: Tensor, queries: Tensor) -> Tensor:
        """``(M, C_out)`` at ``queries`` from ``(1, C', *grid)`` grid features."""
        nodes, r, lo, hi = context
        row_ptr, col = cache.get("latent-grid-decoder", (nodes, queries), (r, self.max_neighbors),
                                 lambda: radius_search(nodes, queries, r, max_neighbors=self.max_neighbors))
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        h = grid_features.reshape(grid_features.shape[1], -1).T
        return self.project(self.decode_integral(unit(nodes), unit(queries), row_ptr, col, h))
