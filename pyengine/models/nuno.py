"""NUNO: the non-uniform neural operator of Liu et al. (2023), on pyengine's k-d partition.

Non-uniform data are split into k-d subdomains (:func:`pyengine.ops.kd_partition`,
balanced median splits), each subdomain's points are interpolated to a uniform
subgrid over its box, an FNO runs on the subgrids, and the result is interpolated
back to any query points. Shapes (``L`` leaves, ``G = prod(subgrid)`` nodes per leaf)::

    points (N, d), features (N, C_in)
      -> subgrid input (L, C_in + 3d + 1, *subgrid)     inverse-distance interpolation (k nearest
                                                         points of the leaf), plus position channels
      -> lift -> FNO blocks (exchange between leaves, below) -> (L, hidden, *subgrid)
      -> multilinear interpolation at each query in its leaf -> project -> (M, C_out)

Engine kernels: the partition is ``kd_partition``; the points-to-grid interpolation is one
batched :func:`pyengine.ops.knn` (leaves as batches, so neighbours never cross a leaf)
and one :func:`pyengine.ops.spmm` over all leaves; grid-to-points is one ``spmm`` with
the ``2^d`` multilinear weights per query; the FNO blocks are :class:`pyengine.nn.FNOBlock`.
Nothing loops over leaves in Python. The interpolation structures depend on the
geometry only and are cached per geometry.

Exchange between subdomains (``exchange``):

* ``"stack"`` (the paper's): the ``L`` subgrids are stacked along the channel axis,
  so one FNO of width ``L * hidden`` sees every subdomain at once. This ties the model
  to ``leaves`` subdomains (a power of two, so median splits give exactly that many).
* ``"mean"``: the leaves are a batch of one shared-weight FNO; after every block each
  leaf receives a linear map of the mean over all leaves and nodes (global context).
* ``"none"``: the leaves are independent (a shared-weight FNO per subdomain).

Where this follows the paper and where it departs:

* follows: k-d tree decomposition into balanced subdomains, interpolation of each to
  a uniform grid, FNO on the grids with the subdomains stacked as channels, and
  interpolation back; the leaf size controls the interpolation error (more, smaller
  leaves at a fixed subgrid resolution resolve finer detail);
* departs: the paper builds its k-d tree by minimising an interpolation-error estimate
  (KL divergence of point densities) and interpolates with scipy's ``griddata``; here the
  splits are plain median splits and the interpolation is k-nearest inverse-distance
  weighting (points to grid) and multilinear (grid to points). Grid nodes also carry
  their position, their leaf's extent and the distance to the nearest data point (so
  the FNO can tell surface from empty space on surface clouds). Queries outside every
  leaf box use the nearest box (clamped). Per-point quadrature ``weights`` from the
  shared base are accepted and ignored (the interpolation is not an integral).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..nn.fno import FNOBlock
from ..nn.mlp import ACTIVATIONS, activation, mlp
from ..ops import kd_partition, knn, row_index, spmm
from .base import OperatorModel
from .registry import register

__all__ = ["LeafGrids", "NUNO", "NUNOConfig", "leaf_grids"]

EXCHANGES = ("stack", "mean", "none")


@dataclass
class NUNOConfig:
    """NUNO settings.

    Attributes:
        hidden: channel width per subdomain.
        leaves: number of k-d subdomains (a power of two: median splits then give exactly this many).
        subgrid: uniform grid per subdomain (one entry per axis, each >= 2).
        modes: Fourier modes per subgrid axis (each <= subgrid; the last <= subgrid//2 + 1).
        fno_layers: FNO blocks.
        exchange: "stack" (the paper's), "mean" or "none" (see the module docstring).
        k_interp: nearest data points per grid node in the points-to-grid interpolation.
        padding: subdomain box padding, as a fraction of the box extent per side.
        activation: gelu, relu, silu or tanh.
    """

    hidden: int = 32
    leaves: int = 8
    subgrid: tuple[int, ...] = (8, 8, 8)
    modes: tuple[int, ...] = (4, 4, 4)
    fno_layers: int = 4
    exchange: str = "stack"
    k_interp: int = 4
    padding: float = 0.05
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.fno_layers < 0:
            raise ValueError(f"NUNO needs hidden >= 1 and fno_layers >= 0, got {self.hidden}, {self.fno_layers}")
        if int(self.leaves) != self.leaves or self.leaves < 1 or self.leaves & (self.leaves - 1):
            raise ValueError(f"NUNO leaves must be a power of two >= 1, got {self.leaves!r}")
        if len(self.subgrid) != len(self.modes) or not 2 <= len(self.subgrid) <= 3:
            raise ValueError(f"NUNO subgrid {self.subgrid} and modes {self.modes} need the same 2 or 3 axes")
        if min(self.subgrid) < 2 or min(self.modes) < 1:
            raise ValueError(f"NUNO subgrid axes must be >= 2 and modes >= 1, got {self.subgrid}, {self.modes}")
        if any(m > n for m, n in zip(self.modes[:-1], self.subgrid[:-1])) or \
                self.modes[-1] > self.subgrid[-1] // 2 + 1:
            raise ValueError(f"NUNO modes {self.modes} do not fit subgrid {self.subgrid} (last axis <= n//2 + 1)")
        if self.exchange not in EXCHANGES:
            raise ValueError(f"NUNO exchange must be one of {EXCHANGES}, got {self.exchange!r}")
        if self.k_interp < 1:
            raise ValueError(f"NUNO k_interp must be >= 1, got {self.k_interp}")
        if not 0 <= self.padding <= 1:
            raise ValueError(f"NUNO padding must be in [0, 1], got {self.padding}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"NUNO activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


@dataclass
class LeafGrids:
    """Uniform subgrids over the k-d leaves of one point cloud, with both interpolations.

    Attributes:
        nodes: ``(L * G, d)`` grid nodes, leaf-major, row-major (``ij``) within a leaf.
        lower, upper: ``(L, d)`` padded leaf boxes the subgrids span.
        shape: the subgrid shape (``G = prod(shape)``).
        row_ptr, col, weight: CSR over the nodes of the points-to-grid weights (rows sum to 1).
        nearest: ``(L * G,)`` distance from each node to its nearest point of the leaf, divided
            by the leaf's box diagonal.
        center, half: ``(d,)`` centre and half extent of the whole cloud (the global frame).
        boxes: ``(L, 2, d)`` the leaves' tight boxes (from the partition), which assign queries to leaves.
    """

    nodes: Tensor
    lower: Tensor
    upper: Tensor
    shape: tuple[int, ...]
    row_ptr: Tensor
    col: Tensor
    weight: Tensor
    nearest: Tensor
    center: Tensor
    half: Tensor
    boxes: Tensor

    @property
    def num_leaves(self) -> int:
        return self.lower.shape[0]

    def to_grid(self, values: Tensor) -> Tensor:
        """``values (N, C)`` at the points -> ``(L * G, C)`` at the grid nodes."""
        return spmm(self.row_ptr, self.col, self.weight.to(values.dtype), values)

    def leaf_of(self, queries: Tensor, chunk: int = 8192) -> Tensor:
        """``(M,)`` the leaf of each query: the nearest tight leaf box (inside: distance 0; ties: lowest
        index), so an input point belongs to its own leaf unless it lies on a shared face."""
        lo, hi = self.boxes[:, 0], self.boxes[:, 1]
        out = []
        for q in queries.split(chunk):
            gap = (q[:, None, :] - torch.maximum(torch.minimum(q[:, None, :], hi), lo)).square().sum(-1)
            out.append(gap.argmin(dim=1))
        return torch.cat(out) if out else queries.new_zeros(0, dtype=torch.long)

    def to_points(self, grid_values: Tensor, queries: Tensor) -> Tensor:
        """Multilinear interpolation of ``grid_values (L * G, C)`` at ``queries (M, d)`` -> ``(M, C)``."""
        return spmm(*self.interpolation(queries), grid_values)

    def interpolation(self, queries: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """CSR ``(row_ptr, col, weight)`` of the multilinear grid-to-query weights (``2^d`` per query)."""
        d, m = queries.shape[1], queries.shape[0]
        leaf = self.leaf_of(queries)
        lo, hi = self.lower[leaf], self.upper[leaf]
        n = torch.tensor(self.shape, device=queries.device)
        t = ((queries - lo) / (hi - lo)).clamp(0, 1) * (n - 1).to(queries.dtype)
        i0 = torch.minimum(t.floor().long(), n - 2)
        frac = t - i0.to(t.dtype)
        strides = [1] * d
        for a in range(d - 2, -1, -1):
            strides[a] = strides[a + 1] * self.shape[a + 1]
        strides = torch.tensor(strides, device=queries.device)
        corners = torch.cartesian_prod(*[torch.tensor([0, 1], device=queries.device)] * d).reshape(-1, d)  # (2^d, d)
        idx = ((i0[:, None, :] + corners[None]) * strides).sum(-1) + leaf[:, None] * int(torch.prod(n))
        w = torch.where(corners[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)  # (M, 2^d)
        row_ptr = torch.arange(0, m * 2 ** d + 1, 2 ** d, device=queries.device)
        return row_ptr, idx.reshape(-1), w.reshape(-1)


def leaf_grids(points: Tensor, leaves: int, shape, k: int = 4, padding: float = 0.05) -> LeafGrids:
    """Partition ``points (N, d)`` into ``leaves`` k-d subdomains (:func:`~pyengine.ops.kd_partition`)
    and build each one's uniform ``shape`` subgrid with the interpolation weights.

    A leaf of zero extent along an axis (flat or collinear points) gets 1% of its largest
    extent there (or 1e-3 of the cloud's extent; coincident points a width of 1e-3), so
    no box is degenerate.
    """
    shape = tuple(int(s) for s in shape)
    d = points.shape[1]
    if len(shape) != d or min(shape) < 2:
        raise ValueError(f"subgrid {shape} must have {d} axes of at least 2 nodes")
    part = kd_partition(points, n_parts=int(leaves))
    L, G = part.num_leaves, 1
    for s in shape:
        G *= s
    lo_all, hi_all = points.min(0).values, points.max(0).values
    center, half = (lo_all + hi_all) / 2, (hi_all - lo_all) / 2
    scale = half.max()
    if not bool(scale > 0):
        scale = center.abs().max().clamp_min(1.0) * 1e-3
    half = half.clamp_min(float(scale) * 1e-3)
    lo, hi = part.boxes[:, 0], part.boxes[:, 1]
    ext = hi - lo
    ext = torch.maximum(ext, (0.01 * ext.max(dim=1, keepdim=True).values).clamp_min(2e-3 * float(scale)))
    mid = (lo + hi) / 2
    lower, upper = mid - ext * (0.5 + padding), mid + ext * (0.5 + padding)
    axes = [torch.linspace(0, 1, s, dtype=points.dtype, device=points.device) for s in shape]
    unit = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(G, d)
    nodes = (lower[:, None, :] + unit[None] * (upper - lower)[:, None, :]).reshape(L * G, d)
    sizes = part.leaf_ptr.diff()
    k = min(int(k), int(sizes.min()))
    leaf_of_point = row_index(part.leaf_ptr, points.shape[0])
    leaf_of_node = torch.arange(L, device=points.device).repeat_interleave(G)
    dist, idx = knn(points[part.perm].contiguous(), nodes.contiguous(), k, batch_points=leaf_of_point,
                    batch_queries=leaf_of_node)
    diag = (upper - lower).norm(dim=1)[leaf_of_node]
    w = 1.0 / (dist.square() + (1e-6 * diag[:, None]).square())
    w = w / w.sum(dim=1, keepdim=True)
    row_ptr = torch.arange(0, L * G * k + 1, k, device=points.device)
    return LeafGrids(nodes=nodes, lower=lower, upper=upper, shape=shape, row_ptr=row_ptr,
                     col=part.perm[idx].reshape(-1), weight=w.reshape(-1), nearest=dist[:, 0] / diag,
                     center=center, half=half, boxes=part.boxes)


@register("nuno", NUNOConfig)
class NUNO(OperatorModel):
    """NUNO on one interface: ``model(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: NUNOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.subgrid) != coord_dim:
            raise ValueError(f"NUNO subgrid {c.subgrid} must have coord_dim={coord_dim} axes")
        self.lift = mlp([in_channels + 3 * coord_dim + 1, c.hidden, c.hidden], c.activation)
        width = c.hidden * c.leaves if c.exchange == "stack" else c.hidden
        self.blocks = nn.ModuleList(FNOBlock(width, c.modes, activation=activation(c.activation))
                                    for _ in range(c.fno_layers))
        self.mix = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.fno_layers)) \
            if c.exchange == "mean" else None
        self.project = mlp([c.hidden, c.hidden, out_channels], c.activation)

    def _grids(self, points: Tensor) -> LeafGrids:
        c = self.config

        def compute():
            if points.shape[0] < c.leaves:
                raise ValueError(f"NUNO with leaves={c.leaves} needs at least {c.leaves} points, got {points.shape[0]}")
            grids = leaf_grids(points, c.leaves, c.subgrid, c.k_interp, c.padding)
            if c.exchange == "stack" and grids.num_leaves != c.leaves:
                raise ValueError(f"the k-d partition gave {grids.num_leaves} leaves, not leaves={c.leaves} "
                                 f"(exchange='stack' needs exactly that many); use exchange='mean' or 'none'")
            return grids

        return self.graphs.get("nuno-leaves", (points,), (c.leaves, tuple(c.subgrid), c.k_interp, c.padding), compute)

    def encode(self, points: Tensor, features: Tensor, weights: Tensor | None = None, **kwargs):
        """The subgrid latent state ``(grids, (L * G, hidden))``; ``weights`` are accepted and ignored."""
        if kwargs:
            raise ValueError(f"NUNO takes no conditioning {sorted(kwargs)}")
        c = self.config
        grids = self._grids(points)
        L, G, d = grids.num_leaves, grids.nodes.shape[0] // grids.num_leaves, self.coord_dim
        leaf_of_node = torch.arange(L, device=points.device).repeat_interleave(G)
        extent = ((grids.upper - grids.lower) / (2 * grids.half))[leaf_of_node]
        unit = (grids.nodes - grids.lower[leaf_of_node]) / (grids.upper - grids.lower)[leaf_of_node] * 2 - 1
        x = torch.cat([grids.to_grid(features), (grids.nodes - grids.center) / grids.half, unit, extent,
                       grids.nearest[:, None]], dim=1)
        g = self.lift(x).reshape(L, *c.subgrid, c.hidden).movedim(-1, 1)  # (L, hidden, *subgrid)
        for i, block in enumerate(self.blocks):
            if c.exchange == "stack":
                g = block(g.reshape(1, L * c.hidden, *c.subgrid)).reshape(L, c.hidden, *c.subgrid)
            else:
                g = block(g)
                if self.mix is not None:
                    ctx = self.mix[i](g.mean(dim=tuple(range(2, 2 + d))).mean(dim=0))  # (hidden,)
                    g = g + ctx.reshape(1, -1, *([1] * d))
        return grids, g.movedim(1, -1).reshape(L * G, c.hidden)

    def decode(self, state, queries: Tensor) -> Tensor:
        grids, h = state
        return self.project(grids.to_points(h, queries))
