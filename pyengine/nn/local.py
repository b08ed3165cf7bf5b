"""Local integral kernels on point clouds (DISCO-style, after "Neural Operators with
Localized Integral and Differential Kernels").

The layer approximates, at every query point ``x_i``, the integral over the ball of
radius ``R`` around it::

    out(x_i) = integral_{|y - x_i| <= R} K(y - x_i) f(y) dy,    K(r) = sum_b theta_b psi_b(r)

with fixed, compactly supported bases ``psi_b`` and learned matrices ``theta_b``
(C_in x C_out). The integral is discretised with quadrature weights per source point,
``sum_j K(y_j - x_i) f(y_j) w_j``, so the same parameters give consistent results on
any sampling of the domain: refining the points converges to the integral.

Computation: the basis values ``psi`` (E, B) are evaluated per edge (B is small),
:func:`pyengine.ops.local_basis_aggregate` forms ``a[i, b] = sum_e psi_eb w_j f_j``
(M, B, C_in) without any per-edge feature tensor, and one dense matmul with theta
(B * C_in, C_out) finishes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops import row_index
from ..ops.local import local_basis_aggregate

_BASES = ("piecewise_linear",)


def _unit_ball_volume(d: int) -> float:
    return math.pi ** (d / 2) / math.gamma(d / 2 + 1)


class LocalBasis(nn.Module):
    """Compactly supported radial x angular bases on the ball of radius ``radius``.

    Radial part: ``num_rings`` piecewise-linear hat functions of ``t = |r| / radius``
    centred at ``t = k / num_rings`` (k = 0 .. num_rings - 1), each of half-width
    ``1 / num_rings``; all vanish for ``t >= 1``, so the kernel is continuous at the
    ball's boundary. The central hat (k = 0) is isotropic; every other ring is
    multiplied by each angular factor:

    * 2-D, ``angular_order`` n: ``1, cos(m phi), sin(m phi)`` for m = 1..n (2n + 1 factors);
    * 3-D, order 0: ``1``; order 1: adds ``u_x, u_y, u_z``; order 2 adds the five
      quadratic harmonics ``u_x u_y, u_y u_z, u_z u_x, u_x^2 - u_y^2, 3 u_z^2 - 1``
      (``u = r / |r|``).

    Since the rings with angular factors vanish at ``r = 0``, every basis function is
    continuous (and its gradient in the positions bounded) at the centre.
    ``num_bases = 1 + (num_rings - 1) * num_angular``.
    """

    def __init__(self, coord_dim: int, radius: float, num_rings: int = 3, angular_order: int = 1):
        super().__init__()
        if coord_dim not in (2, 3):
            raise ValueError(f"coord_dim must be 2 or 3, got {coord_dim!r}")
        if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be a positive finite number, got {radius!r}")
        if not isinstance(num_rings, int) or num_rings < 1:
            raise ValueError(f"num_rings must be a positive int, got {num_rings!r}")
        max_order = None if coord_dim == 2 else 2
        if not isinstance(angular_order, int) or angular_order < 0 or (max_order and angular_order > max_order):
            raise ValueError(f"angular_order must be an int in [0, {max_order or 'inf'}) for coord_dim={coord_dim}, "
                             f"got {angular_order!r}")
        self.coord_dim, self.radius = coord_dim, float(radius)
        self.num_rings, self.angular_order = num_rings, angular_order
        if coord_dim == 2:
            self.num_angular = 2 * angular_order + 1
        else:
            self.num_angular = (1, 4, 9)[angular_order]
        self.num_bases = 1 + (num_rings - 1) * self.num_angular

    def angular(self, u: Tensor) -> Tensor:
        """Angular factors ``(E, num_angular)`` of unit vectors ``u`` (E, d) (0 vectors give 0s but for ``1``)."""
        cols = [torch.ones_like(u[:, 0])]
        if self.coord_dim == 2:
            ux, uy = u[:, 0], u[:, 1]
            c, s = ux, uy  # cos(phi), sin(phi); angle addition gives cos(m phi), sin(m phi)
            for m in range(1, self.angular_order + 1):
                if m > 1:
                    c, s = c * ux - s * uy, s * ux + c * uy
                cols += [c, s]
        else:
            ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]
            if self.angular_order >= 1:
                cols += [ux, uy, uz]
            if self.angular_order >= 2:
                cols += [ux * uy, uy * uz, uz * ux, ux * ux - uy * uy, 3 * uz * uz - 1]
        return torch.stack(cols, 1)

    def forward(self, rel: Tensor) -> Tensor:
        """Basis values ``(E, num_bases)`` at relative positions ``rel = y_j - x_i`` ``(E, d)``."""
        if rel.dim() != 2 or rel.shape[1] != self.coord_dim:
            raise ValueError(f"rel must have shape (E, {self.coord_dim}), got {tuple(rel.shape)}")
        d2 = (rel * rel).sum(1)
        # Clamped so the gradient stays finite at r = 0 (where only the isotropic centre hat is non-zero).
        dist = d2.clamp_min(torch.finfo(rel.dtype).tiny).sqrt()
        t = dist / self.radius
        K = self.num_rings
        centres = torch.arange(K, dtype=rel.dtype, device=rel.device) / K
        hats = (1 - (t.unsqueeze(1) - centres).abs() * K).clamp_min(0)  # (E, K)
        hats = hats * (t < 1).to(rel.dtype).unsqueeze(1)  # compact support (hats already vanish at t = 1)
        if K == 1:
            return hats
        ang = self.angular(rel / dist.unsqueeze(1))  # (E, A)
        rings = (hats[:, 1:].unsqueeze(2) * ang.unsqueeze(1)).reshape(rel.shape[0], (K - 1) * self.num_angular)
        return torch.cat([hats[:, :1], rings], 1)


class LocalIntegral(nn.Module):
    """Discretisation-consistent local integral layer.

    Args:
        in_channels: ``C_in``; out_channels: ``C_out``.
        coord_dim: 2 or 3.
        radius: support radius ``R`` of the kernel (same units as the coordinates).
        basis: ``"piecewise_linear"`` (see :class:`LocalBasis`).
        num_rings, angular_order: basis resolution (see :class:`LocalBasis`).
        bias: add a learned ``(C_out,)`` bias.

    ``forward(y, x, row_ptr, col, f_y, weights=None, psi=None) -> (M, C_out)``:
        y: ``(N, d)`` source points; x: ``(M, d)`` query points.
        row_ptr ``(M + 1,)`` int64, col ``(E,)``: the neighbors of each query, normally
        all sources within ``radius`` (:func:`pyengine.ops.radius_search`); edges
        farther than ``radius`` contribute 0.
        f_y: ``(N, C_in)``.
        weights: ``(N,)`` quadrature weight of each source point (its cell area or
        volume). If None, each query uses the Monte-Carlo rule ``|ball| / deg_i``
        (uniform local sampling assumed).
        psi: optional precomputed :meth:`basis_values` ``(E, B)`` for a fixed graph.
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, radius: float,
                 basis: str = "piecewise_linear", num_rings: int = 3, angular_order: int = 1, bias: bool = True):
        super().__init__()
        for name, val in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if basis not in _BASES:
            raise ValueError(f"basis must be one of {_BASES}, got {basis!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.basis = LocalBasis(coord_dim, radius, num_rings, angular_order)
        B = self.basis.num_bases
        # theta scaled so that an integral of unit-variance features over the ball has O(1) outputs.
        volume = _unit_ball_volume(coord_dim) * radius**coord_dim
        bound = math.sqrt(3.0) / (volume * math.sqrt(B * in_channels))  # uniform with std 1 / (volume sqrt(B C_in))
        self.theta = nn.Parameter(torch.empty(B, in_channels, out_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @property
    def coord_dim(self) -> int:
        return self.basis.coord_dim

    @property
    def radius(self) -> float:
        return self.basis.radius

    def basis_values(self, y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor) -> Tensor:
        """``psi`` ``(E, B)``: the basis functions at ``y[col_e] - x[row_e]`` for every edge."""
        row = row_index(row_ptr, col.shape[0])
        return self.basis(y[col.long()] - x[row])

    def forward(self, y: Tensor, x: Tensor, row_ptr: Tensor, col: Tensor, f_y: Tensor, weights: Tensor | None = None,
                psi: Tensor | None = None) -> Tensor:
        for name, t in (("y", y), ("x", x), ("row_ptr", row_ptr), ("col", col), ("f_y", f_y)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        d = self.coord_dim
        if y.dim() != 2 or y.shape[1] != d or x.dim() != 2 or x.shape[1] != d:
            raise ValueError(f"y and x must have shapes (N, {d}) and (M, {d}), got {tuple(y.shape)} and {tuple(x.shape)}")
        if f_y.dim() != 2 or f_y.shape != (y.shape[0], self.in_channels):
            raise ValueError(f"f_y must have shape (N, in_channels) = ({y.shape[0]}, {self.in_channels}), "
                             f"got {tuple(f_y.shape)}")
        if row_ptr.dim() != 1 or row_ptr.shape[0] != x.shape[0] + 1:
            raise ValueError(f"row_ptr must have shape (M + 1,) = ({x.shape[0] + 1},), got {tuple(row_ptr.shape)}")
        if col.dim() != 1 or (int(row_ptr[-1]) != col.shape[0]):
            raise ValueError(f"col must have shape (row_ptr[-1],) = ({int(row_ptr[-1])},), got {tuple(col.shape)}")
        if psi is None:
            psi = self.basis_values(y, x, row_ptr, col)
        elif psi.shape != (col.shape[0], self.basis.num_bases):
            raise ValueError(f"psi must have shape (E, num_bases) = ({col.shape[0]}, {self.basis.num_bases}), "
                             f"got {tuple(psi.shape)}")
        M, B = x.shape[0], self.basis.num_bases
        a = local_basis_aggregate(psi, f_y, row_ptr, col, weights)  # (M, B, C_in)
        if weights is None:
            volume = _unit_ball_volume(d) * self.radius**d
            deg = row_ptr.diff().clamp_min(1).to(a.dtype)
            a = a * (volume / deg).view(M, 1, 1)
        out = a.reshape(M, B * self.in_channels) @ self.theta.reshape(B * self.in_channels, self.out_channels)
        return out if self.bias is None else out + self.bias
