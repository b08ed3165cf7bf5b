"""Spectral convolution on point clouds through non-uniform FFTs (Geo-FNO / GINO style).

``SpectralConvPoints`` maps features at scattered points to a truncated Fourier
series (type-1 NUFFT with quadrature weights), multiplies every mode by a learned
complex matrix, and evaluates the series back at the points (type-2 NUFFT):

    u_hat[i, k] = sum_j q_j x[j, i] exp(-i k . theta_j)                (Cin, *n_modes)
    v_hat[o, k] = sum_i u_hat[i, k] W[i, o, k]                          (Cout, *n_modes)
    y[j, o]     = Re sum_k v_hat[o, k] exp(+i k . theta_j)              (N, Cout)

with ``theta = points * 2 pi / period``. This is the dense Fourier-matrix layer of
the peer codebases (``E[k, j] = exp(-i k . theta_j)``, O(N K) time and memory)
computed in O(N w^d + K log K) instead, for any point count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops.nufft import NUFFTPlan, _check_n_modes

__all__ = ["SpectralConvPoints"]


class SpectralConvPoints(nn.Module):
    """Learned per-mode linear map between Fourier coefficients of point-cloud features.

    Args:
        in_channels, out_channels: feature channels in and out.
        n_modes: modes per dimension (an int is used for every dimension), frequencies
            ``-N//2 .. (N-1)//2`` (FINUFFT order).
        coord_dim: d in {1, 2, 3}, the number of point coordinates.
        eps: NUFFT accuracy.
        period: length of the periodic box the coordinates live in (default 2*pi,
            i.e. radians). Points of a unit-box geometry use ``period=2`` or more, so
            opposite faces are not glued together.

    Shapes:
        ``forward(points (N, d), x (N, Cin), weights (N,) or None) -> (N, Cout)``. ``x``
        real gives the real part of the result; complex ``x`` gives the complex series.
        ``weights`` are quadrature weights (cell volumes); ``None`` means ``1 / N``.
    """

    def __init__(self, in_channels: int, out_channels: int, n_modes, coord_dim: int, *, eps: float = 1e-6,
                 period: float = 2 * math.pi):
        super().__init__()
        if coord_dim not in (1, 2, 3):
            raise ValueError(f"coord_dim must be 1, 2 or 3, got {coord_dim}")
        if isinstance(n_modes, int):
            n_modes = (n_modes,) * coord_dim
        self.n_modes = _check_n_modes(n_modes, coord_dim)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got {in_channels}, {out_channels}")
        if not period > 0:
            raise ValueError(f"period must be positive, got {period}")
        self.in_channels, self.out_channels, self.coord_dim = in_channels, out_channels, coord_dim
        self.eps, self.period = float(eps), float(period)
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.randn(in_channels, out_channels, *self.n_modes,
                                                       dtype=torch.complex64))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, n_modes={self.n_modes}, coord_dim={self.coord_dim}, "
                f"eps={self.eps:g}, period={self.period:g}")

    def make_plan(self, points: Tensor, dtype: torch.dtype = torch.complex64) -> NUFFTPlan:
        """A plan for these points (sorted once); pass it to forward to reuse it across steps."""
        return NUFFTPlan(self._angles(points), self.n_modes, self.eps, dtype)

    def _angles(self, points: Tensor) -> Tensor:
        if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[1] != self.coord_dim:
            shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(f"points must be (N, {self.coord_dim}), got {shape}")
        return points * (2 * math.pi / self.period)

    def forward(self, points: Tensor, x: Tensor, weights: Tensor | None = None,
                plan: NUFFTPlan | None = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (N, {self.in_channels}), got {shape}")
        double = x.dtype in (torch.float64, torch.complex128)
        cdtype = torch.complex128 if double else torch.complex64
        N = x.shape[0]
        if plan is None:
            if points.shape[0] != N:
                raise ValueError(f"points has {points.shape[0]} rows but x has {N}")
            plan = NUFFTPlan(self._angles(points), self.n_modes, self.eps, cdtype)
        elif plan.num_points != N or plan.n_modes != self.n_modes or plan.dtype != cdtype:
            raise ValueError(f"plan {plan} does not fit x of shape {tuple(x.shape)} / n_modes {self.n_modes}")
        if weights is None:
            xw = x / N
        else:
            if weights.shape != (N,):
                raise ValueError(f"weights must be (N,) = ({N},), got {tuple(weights.shape)}")
            xw = x * weights.unsqueeze(1)
        coeffs = plan.type1(xw.t().to(cdtype), isign=-1)  # (Cin, *n_modes)
        mixed = torch.einsum("i...,io...->o...", coeffs, self.weight.to(cdtype))  # (Cout, *n_modes)
        y = plan.type2(mixed, isign=1).t()  # (N, Cout)
        return y if x.is_complex() else y.real
