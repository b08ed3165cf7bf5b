"""MG-TFNO: multi-grid tensorized Fourier neural operator (Kossaifi et al. 2023) on a latent grid.

    points --GNO integral--> latent grid (1, hidden, *grid)
    multi-grid domain decomposition: P patches, each with ``mg_levels`` coarser context copies
        -> (P, hidden * (mg_levels + 1), *patch) -> channel map -> (P, hidden, *patch)
    TFNO blocks on every patch (a batch of P): x + act(norm(K_l x + W_l x))
    stitch the patches back -> (1, hidden, *grid) --GNO integral--> queries

**Tucker-factorised spectral weights.** The complex spectral weights of *all* layers form
one tensor ``W (layers, hidden, hidden, m_1, .., m_d)`` held in Tucker form: a core
``G (r_L, r_in, r_out, r_1, .., r_d)`` and one factor matrix per mode, with ranks
``ceil(rank * size)`` per mode. ``W`` is rebuilt from the factors in every forward
(``einsum``); the parameter count is the core plus the factors, far below the dense
``layers * hidden^2 * prod(m)``.

**Multi-grid domain decomposition.** The grid is cut into ``patches`` per axis. Each patch
is processed at full resolution, and for every level ``k = 1 .. mg_levels`` it also receives
the region ``2^k`` times larger around it, average-pooled by ``2^k`` to the patch's size
(zero outside the grid), stacked as extra channels. The operator then runs on patches of
``grid / patches`` nodes as one batch, so its FFTs and activations are smaller, while the
coarse copies carry the long-range context.

Where it follows the paper: joint Tucker factorisation of the spectral weights across
layers (TFNO), the multi-grid patching with coarsened context stacked on the channels,
and patches processed as a batch and stitched back.

Where it departs: the paper works on regular grids; here irregular inputs reach a latent
grid over the padded bounding box through a fused GNO integral (:class:`pyengine.nn.GNOIntegral`,
the ``gno_integral`` op over ``radius_search`` graphs, as in GINO) and come back to the
queries through a second one (:mod:`pyengine.models._grid_transfer`); the lifting and
projection are small MLPs around those integrals. The region outside the grid is zero
(the grid covers the padded box, so nothing lies there) instead of a periodic wrap.
The FFTs are ``torch.fft`` (no pyengine kernel is needed on a regular grid). Per-point
quadrature weights (``weights=``) are accepted and ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.mlp import ACTIVATIONS, activation
from ._grid_transfer import GridTransfer
from .base import OperatorModel
from .registry import register

__all__ = ["MGTFNO", "MGTFNOConfig"]


@dataclass
class MGTFNOConfig:
    """MG-TFNO settings.

    Attributes:
        hidden: channel width on the grid.
        grid: latent grid shape (coord_dim entries).
        modes: retained Fourier modes per axis of a *patch* (each <= the patch length; the
            last <= patch length // 2 + 1).
        layers: TFNO blocks.
        rank: Tucker rank as a fraction of each mode's size, in (0, 1].
        patches: patches per grid axis (coord_dim entries, each dividing the grid; 1: no split).
        mg_levels: coarse context levels per patch (0: none). With more than one patch, each
            patch length must be divisible by ``2 ** (mg_levels + 1)``.
        radius_cells: encoder/decoder radius in grid spacings (``extent / (n - 1)``, the largest axis).
        padding: bounding-box padding as a fraction of the extent.
        kernel_hidden: hidden widths of the encoder/decoder integral kernels.
        max_neighbors: per-row neighbour cap of the encoder/decoder graphs (nearest kept; None: all).
        activation: gelu, relu, silu or tanh.
    """

    hidden: int = 32
    grid: tuple[int, ...] = (16, 16, 16)
    modes: tuple[int, ...] = (6, 6, 4)
    layers: int = 4
    rank: float = 0.5
    patches: tuple[int, ...] = (2, 2, 2)
    mg_levels: int = 1
    radius_cells: float = 1.5
    padding: float = 0.05
    kernel_hidden: tuple[int, ...] = (32,)
    max_neighbors: int | None = 32
    activation: str = "gelu"

    def __post_init__(self) -> None:
        self.grid, self.modes, self.patches = tuple(self.grid), tuple(self.modes), tuple(self.patches)
        self.kernel_hidden = tuple(self.kernel_hidden)
        for name in ("hidden", "layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MG-TFNO {name} must be an int >= 1, got {v!r}")
        if not isinstance(self.mg_levels, int) or isinstance(self.mg_levels, bool) or self.mg_levels < 0:
            raise ValueError(f"MG-TFNO mg_levels must be an int >= 0, got {self.mg_levels!r}")
        if not isinstance(self.rank, (int, float)) or not 0 < self.rank <= 1:
            raise ValueError(f"MG-TFNO rank must be a fraction in (0, 1], got {self.rank!r}")
        if len(self.grid) not in (2, 3) or any(not isinstance(n, int) or n < 2 for n in self.grid):
            raise ValueError(f"MG-TFNO grid must have 2 or 3 axes of >= 2 nodes, got {self.grid}")
        if len(self.modes) != len(self.grid) or len(self.patches) != len(self.grid):
            raise ValueError(f"MG-TFNO grid {self.grid}, modes {self.modes} and patches {self.patches} need the same "
                             f"number of axes")
        if any(not isinstance(p, int) or p < 1 or n % p for p, n in zip(self.patches, self.grid)):
            raise ValueError(f"MG-TFNO patches {self.patches} must be positive and divide the grid {self.grid}")
        size = tuple(n // p for n, p in zip(self.grid, self.patches))
        step = 2 ** (self.mg_levels + 1)
        if max(self.patches) > 1 and self.mg_levels and any(s % step for s in size):
            raise ValueError(f"MG-TFNO patch size {size} must be divisible by 2**(mg_levels+1) = {step} per axis")
        limits = size[:-1] + (size[-1] // 2 + 1,)
        if any(not isinstance(m, int) or not 1 <= m <= lim for m, lim in zip(self.modes, limits)):
            raise ValueError(f"MG-TFNO modes {self.modes} must be >= 1 and fit the patch {size} (at most {limits})")
        if not self.radius_cells > 0 or not 0 <= self.padding < 10:
            raise ValueError(f"MG-TFNO needs radius_cells > 0 and 0 <= padding < 10, got {self.radius_cells}, "
                             f"{self.padding}")
        if any(not isinstance(h, int) or h < 1 for h in self.kernel_hidden):
            raise ValueError(f"MG-TFNO kernel_hidden must be positive widths, got {self.kernel_hidden}")
        if self.max_neighbors is not None and (not isinstance(self.max_neighbors, int) or self.max_neighbors < 1):
            raise ValueError(f"MG-TFNO max_neighbors must be None or an int >= 1, got {self.max_neighbors!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MG-TFNO activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


class TuckerSpectralWeights(nn.Module):
    """The complex spectral weights of ``layers`` layers as one Tucker-factorised tensor.

    ``forward() -> W (layers, channels, channels, *modes)`` (complex64) from a core
    ``(r_0, .., r_{d+2})`` and factor matrices ``(size_k, r_k)``, ``r_k = ceil(rank * size_k)``.
    """

    def __init__(self, layers: int, channels: int, modes: tuple[int, ...], rank: float) -> None:
        super().__init__()
        sizes = (layers, channels, channels, *modes)
        ranks = tuple(max(1, math.ceil(rank * s)) for s in sizes)
        self.sizes, self.ranks = sizes, ranks
        # factors with entries of variance 1/r keep every entry of W at the core's variance
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(s, r, dtype=torch.cfloat) / math.sqrt(r)) for s, r in zip(sizes, ranks))
        self.core = nn.Parameter(torch.randn(*ranks, dtype=torch.cfloat) / channels)
        letters = "abcdefgh"[:len(sizes)]
        big = "ABCDEFGH"[:len(sizes)]
        self._equation = f"{letters}," + ",".join(f"{B}{a}" for a, B in zip(letters, big)) + f"->{big}"

    def forward(self) -> Tensor:
        return torch.einsum(self._equation, self.core, *self.factors)


def _spectral(x: Tensor, w: Tensor, modes: tuple[int, ...]) -> Tensor:
    """Spectral convolution of ``x (B, C, *n)`` with dense weights ``w (C, C, *modes)`` (kept modes:
    both signs on all axes but the last, non-negative rfft frequencies on the last)."""
    d = len(modes)
    axes = tuple(range(2, 2 + d))
    xf = torch.fft.rfftn(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, dim=axes, norm="ortho")
    idx = []
    for axis, (m, n) in enumerate(zip(modes, x.shape[2:])):
        f = torch.arange(m, device=x.device)
        idx.append(f if axis == d - 1 else torch.remainder(f - m // 2, n))
    grids = torch.meshgrid(*idx, indexing="ij")
    sel = xf[(slice(None), slice(None), *grids)]
    letters = "xyz"[:d]
    mixed = torch.einsum(f"bi{letters},io{letters}->bo{letters}", sel, w.to(sel.dtype))
    out = torch.zeros(x.shape[0], w.shape[1], *xf.shape[2:], dtype=xf.dtype, device=x.device)
    out[(slice(None), slice(None), *grids)] = mixed
    return torch.fft.irfftn(out, s=x.shape[2:], dim=axes, norm="ortho").to(x.dtype)


def decompose(x: Tensor, patches: tuple[int, ...], levels: int) -> Tensor:
    """Multi-grid patches of ``x (1, C, *grid)``: ``(P, C * (levels + 1), *patch)``, P = prod(patches).

    Channel block 0 is the patch itself; block ``k`` is the region ``2^k`` times larger around
    it, average-pooled by ``2^k`` (zero outside the grid). Patches in row-major order.
    """
    d = len(patches)
    size = [n // p for n, p in zip(x.shape[2:], patches)]
    blocks = []
    for k in range(levels + 1):
        f = 2 ** k
        if k == 0:
            y, step = x, size
        else:
            y = (F.avg_pool2d if d == 2 else F.avg_pool3d)(x, f)  # (1, C, *grid / f)
            pad = [s * (f - 1) // (2 * f) for s in size]
            y = F.pad(y, [p for s in reversed(pad) for p in (s, s)])
            step = [s // f for s in size]
        for axis in range(d):  # windows of one patch length, one per patch, along each axis
            y = y.unfold(2 + axis, size[axis], step[axis])
        # (1, C, p_1, .., p_d, s_1, .., s_d) -> (P, C, s_1, .., s_d)
        y = y.squeeze(0).movedim(0, d).reshape(-1, x.shape[1], *size)
        blocks.append(y)
    return torch.cat(blocks, dim=1)


def stitch(y: Tensor, patches: tuple[int, ...]) -> Tensor:
    """Inverse of the patch split: ``(P, C, *patch) -> (1, C, *grid)``."""
    d = len(patches)
    C, size = y.shape[1], y.shape[2:]
    y = y.reshape(*patches, C, *size)  # (p_1..p_d, C, s_1..s_d)
    order = [d] + [i for a in range(d) for i in (a, d + 1 + a)]  # C, p_1, s_1, p_2, s_2, ...
    return y.permute(order).reshape(1, C, *(p * s for p, s in zip(patches, size)))


@register("mgtfno", MGTFNOConfig)
class MGTFNO(OperatorModel):
    """Multi-grid tensorized FNO on a latent grid; see the module docstring.

    Shapes: ``forward(points (N, d), features (N, C_in), queries (M, d)) -> (M, C_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: MGTFNOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.grid) != coord_dim:
            raise ValueError(f"MG-TFNO grid {c.grid} must have coord_dim={coord_dim} axes")
        self.transfer = GridTransfer(in_channels, out_channels, coord_dim, c.hidden, c.hidden, c.grid, c.padding,
                                     c.radius_cells, c.kernel_hidden, c.max_neighbors, c.activation,
                                     lift_hidden=c.hidden, project_hidden=c.hidden)
        conv = nn.Conv2d if coord_dim == 2 else nn.Conv3d
        self.mg_levels = c.mg_levels if max(c.patches) > 1 else 0  # one patch: the context is the grid itself
        self.merge = conv(c.hidden * (self.mg_levels + 1), c.hidden, 1)
        self.weights = TuckerSpectralWeights(c.layers, c.hidden, c.modes, c.rank)
        self.pointwise = nn.ModuleList(conv(c.hidden, c.hidden, 1) for _ in range(c.layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, c.hidden) for _ in range(c.layers))
        self.act = activation(c.activation)()

    def process(self, g: Tensor) -> Tensor:
        """The MG-TFNO operator on the latent grid: ``(1, hidden, *grid) -> (1, hidden, *grid)``."""
        c = self.config
        x = self.merge(decompose(g, c.patches, self.mg_levels))  # (P, hidden, *patch)
        w = self.weights()
        for layer, (pw, norm) in enumerate(zip(self.pointwise, self.norms)):
            x = x + self.act(norm(_spectral(x, w[layer], c.modes) + pw(x)))
        return stitch(x, c.patches)

    def encode(self, points: Tensor, features: Tensor, weights: Tensor | None = None):
        """Latent grid after the operator. ``weights`` are accepted and ignored."""
        g, context = self.transfer.to_grid(self.graphs, points, features)
        return context, self.process(g)

    def decode(self, state, queries: Tensor) -> Tensor:
        context, g = state
        return self.transfer.from_grid(self.graphs, context, g, queries)
