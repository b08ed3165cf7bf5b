"""MgNO: a neural operator whose linear operators are multigrid V-cycles (He et al. 2024).

    points --GNO integral--> latent grid u_0 (1, hidden, *grid)
    u_{l+1} = act(norm(V_l(u_l)))                     l = 0 .. layers-1 (norm's shift: the bias b_l)
    queries <--GNO integral-- u_L

Each linear operator ``V_l`` is one multigrid V-cycle with learned convolutions (the
MgNet form used by MgNO). With ``f`` the layer input on the finest grid, on levels
``j = 0 .. levels-1`` (each coarser by 2 per axis)::

    u^j   = S^j * f^j                                 (smoothing from u = 0)
    u^j  <- u^j + S^j * (f^j - A^j * u^j)             (smoothing - 1 more times)
    f^j+1 = R^j * (f^j - A^j * u^j)                   (restricted residual, stride-2 conv)
    then back up:  u^j <- u^j + P^j * u^j+1           (prolongation, stride-2 transposed conv)

and ``V_l(f) = u^0``. ``A`` (the "discretised operator"), ``S`` (the smoother), ``R`` and
``P`` are learned ``kernel_size``-wide convolutions with zero padding (a Dirichlet-like
boundary), one set per level and layer. The cost is linear in the grid size and the
receptive field is the whole grid after one cycle.

Where it follows the paper: operators as V-cycles with learned restriction,
prolongation, smoothers and level operators, pre-smoothing only with zero initial
guesses on the coarse levels, the nonlinearity only between V-cycles, and no lifting or
projection networks: the channel maps outside the V-cycles are single linear layers (the
default ``transfer_hidden=0``).

Where it departs: a GroupNorm (one group) follows every V-cycle. Without it (the paper's
layer ``act(V u + b)``) the stacked cycles' gains compound: on the ShapeNet car the loss
rose from 1.0 to 790 in 50 Adam steps (lr 3e-3) with MLP transfers, and reached only 0.49
relative L2 in 200 steps with linear ones. MgNO is defined on regular grids. Irregular
inputs reach a latent grid over the input points' padded bounding box through a fused GNO integral
(:class:`pyengine.nn.GNOIntegral`, the ``gno_integral`` op over ``radius_search``
graphs, as in GINO), and predictions at arbitrary queries come back through a second
GNO integral over the grid nodes near each query (:mod:`pyengine.models._grid_transfer`).
Those two kernel integrals play the part of the paper's input and output grids. The
input and output of the V-cycle stack both have ``hidden`` channels. Per-point
quadrature weights (``weights=``) are accepted and ignored (the encoder integral is a
mean over each grid node's ball).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..nn.mlp import ACTIVATIONS, activation
from ._grid_transfer import GridTransfer
from .base import OperatorModel
from .registry import register

__all__ = ["MgNO", "MgNOConfig"]


@dataclass
class MgNOConfig:
    """MgNO settings.

    Attributes:
        hidden: channels of the V-cycle layers.
        grid: latent grid shape (coord_dim entries, each divisible by ``2 ** (levels - 1)``).
        levels: multigrid levels per V-cycle (1: a single-level smoother).
        smoothing: smoothing steps per level (>= 1).
        layers: V-cycle layers (a nonlinearity after each).
        kernel_size: width of the level operators and smoothers (odd).
        radius_cells: encoder/decoder radius in grid spacings (``extent / (n - 1)``, the largest axis).
        padding: bounding-box padding as a fraction of the extent.
        kernel_hidden: hidden widths of the encoder/decoder integral kernels.
        max_neighbors: per-row neighbour cap of the encoder/decoder graphs (nearest kept; None: all).
        activation: gelu, relu, silu or tanh.
        transfer_hidden: 0 (the paper's form): the channel maps before the encoder integral and
            after the decoder integral are single linear layers; > 0: MLPs with this hidden width.
    """

    hidden: int = 32
    grid: tuple[int, ...] = (16, 16, 16)
    levels: int = 3
    smoothing: int = 2
    layers: int = 4
    kernel_size: int = 3
    radius_cells: float = 1.5
    padding: float = 0.05
    kernel_hidden: tuple[int, ...] = (32,)
    max_neighbors: int | None = 32
    activation: str = "gelu"
    transfer_hidden: int = 0

    def __post_init__(self) -> None:
        self.grid, self.kernel_hidden = tuple(self.grid), tuple(self.kernel_hidden)
        th = self.transfer_hidden
        if not isinstance(th, int) or isinstance(th, bool) or th < 0:
            raise ValueError(f"MgNO transfer_hidden must be an int >= 0, got {self.transfer_hidden!r}")
        for name in ("hidden", "levels", "smoothing", "layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MgNO {name} must be an int >= 1, got {v!r}")
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"MgNO kernel_size must be a positive odd int, got {self.kernel_size!r}")
        if len(self.grid) not in (2, 3) or any(not isinstance(n, int) or n < 2 for n in self.grid):
            raise ValueError(f"MgNO grid must have 2 or 3 axes of >= 2 nodes, got {self.grid}")
        step = 2 ** (self.levels - 1)
        if any(n % step for n in self.grid):
            raise ValueError(f"MgNO grid {self.grid} must be divisible by 2**(levels-1) = {step} on every axis")
        if not self.radius_cells > 0 or not 0 <= self.padding < 10:
            raise ValueError(f"MgNO needs radius_cells > 0 and 0 <= padding < 10, got {self.radius_cells}, "
                             f"{self.padding}")
        if any(not isinstance(h, int) or h < 1 for h in self.kernel_hidden):
            raise ValueError(f"MgNO kernel_hidden must be positive widths, got {self.kernel_hidden}")
        if self.max_neighbors is not None and (not isinstance(self.max_neighbors, int) or self.max_neighbors < 1):
            raise ValueError(f"MgNO max_neighbors must be None or an int >= 1, got {self.max_neighbors!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MgNO activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


class VCycle(nn.Module):
    """One multigrid V-cycle as a linear operator on a ``d``-dimensional grid.

    Shapes: ``f (B, channels, *grid) -> u (B, channels, *grid)``; every grid axis must be
    divisible by ``2 ** (levels - 1)``. Linear in ``f`` (no bias, no activation).
    """

    def __init__(self, channels: int, coord_dim: int, levels: int, smoothing: int, kernel_size: int) -> None:
        super().__init__()
        conv = nn.Conv2d if coord_dim == 2 else nn.Conv3d
        up = nn.ConvTranspose2d if coord_dim == 2 else nn.ConvTranspose3d
        pad = kernel_size // 2
        self.smoothing = smoothing
        self.A = nn.ModuleList(conv(channels, channels, kernel_size, padding=pad, bias=False) for _ in range(levels))
        self.S = nn.ModuleList(conv(channels, channels, kernel_size, padding=pad, bias=False) for _ in range(levels))
        self.R = nn.ModuleList(conv(channels, channels, 3, stride=2, padding=1, bias=False)
                               for _ in range(levels - 1))
        self.P = nn.ModuleList(up(channels, channels, 4, stride=2, padding=1, bias=False) for _ in range(levels - 1))

    def forward(self, f: Tensor) -> Tensor:
        us, levels = [], len(self.A)
        for j in range(levels):
            u = self.S[j](f)
            for _ in range(self.smoothing - 1):
                u = u + self.S[j](f - self.A[j](u))
            us.append(u)
            if j < levels - 1:
                f = self.R[j](f - self.A[j](u))
        u = us[-1]
        for j in range(levels - 2, -1, -1):
            u = us[j] + self.P[j](u)
        return u


@register("mgno", MgNOConfig)
class MgNO(OperatorModel):
    """Multigrid neural operator on a latent grid; see the module docstring.

    Shapes: ``forward(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: MgNOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.grid) != coord_dim:
            raise ValueError(f"MgNO grid {c.grid} must have coord_dim={coord_dim} axes")
        self.transfer = GridTransfer(in_channels, out_channels, coord_dim, c.hidden, c.hidden, c.grid, c.padding,
                                     c.radius_cells, c.kernel_hidden, c.max_neighbors, c.activation,
                                     lift_hidden=c.transfer_hidden or None, project_hidden=c.transfer_hidden or None)
        self.cycles = nn.ModuleList(VCycle(c.hidden, coord_dim, c.levels, c.smoothing, c.kernel_size)
                                    for _ in range(c.layers))
        # GroupNorm over each V-cycle's output (its affine shift is the layer bias b_l)
        self.norms = nn.ModuleList(nn.GroupNorm(1, c.hidden) for _ in range(c.layers))
        self.act = activation(c.activation)()

    def encode(self, points: Tensor, features: Tensor, weights: Tensor | None = None):
        """Latent grid after the V-cycle layers. ``weights`` are accepted and ignored."""
        u, context = self.transfer.to_grid(self.graphs, points, features)
        for cycle, norm in zip(self.cycles, self.norms):
            u = self.act(norm(cycle(u)))
        return context, u

    def decode(self, state, queries: Tensor) -> Tensor:
        context, u = state
        return self.transfer.from_grid(self.graphs, context, u, queries)
