"""Type-3 NUFFT (non-uniform points to non-uniform frequencies), d = 1, 2, 3 (FINUFFT conventions).

::

    f[b, k] = sum_j c[b, j] * exp(isign * 1j * s_k . x_j)

Sources ``x`` are ``(M, d)`` real coordinates and targets ``s`` are ``(N, d)`` real
frequencies, both arbitrary (not periodic, not integer). Cost is
``O(M w^d + N w^d + prod_i(nf_i) log)``, where the fine grid ``nf_i`` grows with the
space-bandwidth product ``X_i S_i`` (half-widths of the source and target ranges in
dimension i): ``nf_i ~ 2 sigma X_i S_i / pi + w + 1``.

Algorithm (the standard one; every step is a registered primitive or torch op, so the
CUDA path is the CPU path on CUDA tensors):

1. centre both sets (``C`` = mid-range of x, ``D`` = mid-range of s), pre-phase
   ``c'_j = c_j exp(isign i D . (x_j - C))`` and rescale the sources to
   ``x'_j = (x_j - C) / gamma`` with ``gamma = nf / (2 sigma S)``;
2. spread ``c'`` onto the ``nf`` fine grid with the ES kernel (``nufft_spread``);
3. evaluate that grid as Fourier modes (FFT order) at the rescaled targets
   ``t_k = pi (s_k - D) / (sigma S)`` with an inner type-2 NUFFT (``nufft_interp``
   on its own upsampled grid);
4. divide by the kernel's Fourier transform at ``t_k`` (Gauss-Legendre quadrature in
   torch, so it is exact for any real frequency) and post-phase by ``exp(isign i s_k . C)``.

Autograd: the adjoint of a type 3 is the type 3 from the targets to the sources with
the opposite sign, and the coordinate derivatives are type 3s with ``i x`` / ``i s``
weighted values, so forward and backward share one ``torch.autograd.Function``
(differentiable in c, x and s; twice differentiable).

The fine-grid size depends on the coordinate ranges, i.e. on tensor values, so a plain
:func:`nufft3` call reads them (one device sync). Under ``torch.compile`` make a
:class:`NUFFT3Plan` outside the compiled function: its ``execute`` traces into one graph.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from . import nufft as _nu

__all__ = ["NUFFT3Plan", "nufft3"]

# One dimension's ranges: centre and half-width of the sources (C, X) and targets (D, S).
Bounds = tuple[tuple[float, float, float, float], ...]
_MAX_GRID = 2**31  # fine-grid nodes (one axis, and all axes together)


class _T3Geometry(NamedTuple):
    grid: tuple[int, ...]  # outer fine grid nf per dimension (= inner type 2's mode count)
    gamma: tuple[float, ...]  # source rescaling x' = (x - C) / gamma
    width: int
    beta: float
    upsampfac: float


@functools.lru_cache(maxsize=256)
def _t3_geometry(bounds: Bounds, eps: float, upsampfac: float) -> _T3Geometry:
    width, beta = _nu._kernel_width(eps, upsampfac)
    grid, gamma = [], []
    for _c, x_half, _d, s_half in bounds:
        xs, ss = x_half, s_half
        # Degenerate ranges (all sources or all targets at one place): any positive
        # half-width works; pick one that keeps the product 1 (the smallest grid).
        if xs == 0.0 and ss == 0.0:
            xs = ss = 1.0
        elif xs == 0.0:
            xs = 1.0 / ss
        elif ss == 0.0:
            ss = 1.0 / xs
        nfd = 2.0 * upsampfac * xs * ss / math.pi + width + 1
        if not nfd < _MAX_GRID:
            raise ValueError(f"type-3 fine grid of {nfd:.3g} nodes along one axis: the space-bandwidth product "
                             f"X*S = {x_half:g}*{s_half:g} (half-widths of the source and target ranges) is too large")
        nf = _nu._next_smooth_even(max(math.ceil(nfd), 2 * width))
        grid.append(nf)
        gamma.append(nf / (2.0 * upsampfac * ss))
    if math.prod(grid) > _MAX_GRID:
        raise ValueError(f"type-3 fine grid {tuple(grid)} has more than {_MAX_GRID} nodes: the space-bandwidth "
                         f"products of the source and target ranges are too large")
    return _T3Geometry(tuple(grid), tuple(gamma), width, beta, upsampfac)


@functools.lru_cache(maxsize=64)
def _quadrature(width: int, beta: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Gauss-Legendre nodes z_q on [0, 1] and weights w_q * phi(z_q) * width."""
    z, wq = np.polynomial.legendre.leggauss(3 * width + 8)
    z, wq = 0.5 * (z + 1.0), 0.5 * wq
    phi = np.exp(beta * (np.sqrt(1.0 - z * z) - 1.0))
    return tuple(z.tolist()), tuple((width * wq * phi).tolist())


_QUAD: dict = {}  # (width, beta) -> quadrature; filled eagerly by the plan (numpy is not traced by dynamo)


def _kernel_ft_at(t: Tensor, width: int, beta: float) -> Tensor:
    """phihat(t) = w int_0^1 phi(z) cos(t w z / 2) dz for real t (radians per fine-grid node), (N, d) -> (N,).

    Evaluated one dimension and 2^16 rows at a time, so the (rows, nodes) cosine table stays ~15 MB.
    """
    key = (width, beta)
    if key not in _QUAD:
        _QUAD[key] = _quadrature(width, beta)
    z, wphi = _QUAD[key]
    z = torch.tensor(z, dtype=t.dtype, device=t.device) * (0.5 * width)
    wphi = torch.tensor(wphi, dtype=t.dtype, device=t.device)
    out = torch.ones(t.shape[0], dtype=t.dtype, device=t.device)
    step = 1 << 16
    for i in range(t.shape[1]):
        for r in range(0, t.shape[0], step):
            out[r:r + step] *= torch.cos(t[r:r + step, i, None] * z) @ wphi
    return out


def _centres(bounds: Bounds, which: int, dtype, device) -> Tensor:
    return torch.tensor([b[which] for b in bounds], dtype=dtype, device=device)


def _t3_coordinates(x: Tensor, s: Tensor, bounds: Bounds, geo: _T3Geometry):
    """Rescaled sources x' (M, d) and inner type-2 points t (N, d), computed in float64."""
    x64, s64 = x.detach().double(), s.detach().double()
    C = _centres(bounds, 0, torch.float64, x.device)
    D = _centres(bounds, 2, torch.float64, x.device)
    gamma = torch.tensor(geo.gamma, dtype=torch.float64, device=x.device)
    nf = torch.tensor(geo.grid, dtype=torch.float64, device=x.device)
    xp = (x64 - C) / gamma
    t = (s64 - D) * gamma * (2.0 * math.pi / nf)
    return xp.to(x.dtype), t.to(x.dtype)


def _t3_factors(x: Tensor, s: Tensor, t: Tensor, bounds: Bounds, geo: _T3Geometry, isign: int, dtype):
    """Pre-phase ``exp(isign i D.(x - C))`` (M,) and post-factor ``exp(isign i s.C) / phihat(t)`` (N,).

    Computed in float64 and stored as ``dtype``; phihat is taken at the (rounded) points t the
    inner type 2 actually evaluates. A plan computes them once per sign (FINUFFT does this in setpts).
    """
    one = torch.ones((), dtype=torch.float64, device=x.device)
    C = _centres(bounds, 0, torch.float64, x.device)
    D = _centres(bounds, 2, torch.float64, x.device)
    pre = torch.polar(one, isign * ((x.detach().double() - C) @ D))
    post = torch.polar(one, isign * (s.detach().double() @ C)) / _kernel_ft_at(t.double(), geo.width, geo.beta)
    return pre.to(dtype), post.to(dtype)


def _outer_bins(geo: _T3Geometry, eps: float, x: Tensor) -> tuple[int, ...]:
    # The device's bin (CPU sort unit / CUDA tile) sizes, taken from the type-1/2 geometry.
    return _nu._geometry(geo.grid, eps, x.dtype, x.device.type, geo.upsampfac).bins


def _t3_sort(xp: Tensor, t: Tensor, geo: _T3Geometry, eps: float):
    bins = _outer_bins(geo, eps, xp)
    inner = _nu._geometry(geo.grid, eps, t.dtype, t.device.type, geo.upsampfac)
    with torch.no_grad():
        perm_x, ptr_x = _nu._ops.nufft_sort(xp, geo.grid, bins)
        perm_t, ptr_t = _nu._ops.nufft_sort(t, inner.grid, inner.bins)
    return perm_x, ptr_x, perm_t, ptr_t


def _t3_prepare(x: Tensor, s: Tensor, bounds: Bounds, eps: float, isign: int, upsampfac: float, dtype):
    """Everything a type 3 needs besides the values: (xp, t, perm_x, ptr_x, perm_t, ptr_t, pre, post)."""
    geo = _t3_geometry(bounds, eps, upsampfac)
    with torch.no_grad():
        xp, t = _t3_coordinates(x, s, bounds, geo)
        return (xp, t, *_t3_sort(xp, t, geo, eps), *_t3_factors(x, s, t, bounds, geo, isign, dtype))


def _type3(c, prepared, bounds: Bounds, eps: float, isign: int, upsampfac: float, work=None) -> Tensor:
    geo = _t3_geometry(bounds, eps, upsampfac)
    xp, t, perm_x, ptr_x, perm_t, ptr_t, pre, post = prepared
    fine = _nu._ops.nufft_spread(xp, c * pre, perm_x, ptr_x, geo.grid, _outer_bins(geo, eps, xp), geo.width,
                                 geo.beta)
    # grid nodes = modes in FFT order; ``work``: a plan's two inner-grid buffers (see NUFFT3Plan._workspace)
    inner = _nu._type2(t, fine, perm_t, ptr_t, eps, isign, 1, upsampfac, work)
    return inner * post


def _swap(bounds: Bounds) -> Bounds:
    return tuple((d, s, c, x) for c, x, d, s in bounds)


class _Type3(torch.autograd.Function):
    """Type 3 with adjoint-based derivatives in c, x and s; backward is type 3 again (twice differentiable).

    ``prepared`` (8 tensors, see _t3_prepare) is a plan's cache for these x, s and isign, or all None
    (computed here). With sign s and PyTorch's complex-gradient convention (grad = dL/d conj(z)):
      grad_c    = type3(s -> x, g, -s)
      grad_x[j, i] = sum_b Re(conj(c[b, j]) * type3(s -> x, -s i s_{k,i} g, -s)[b, j])
      grad_s[k, i] = sum_b Re(g[b, k] * conj(type3(x -> s, s i x_{j,i} c, s)[b, k]))
    """

    @staticmethod
    def forward(x, s, c, xp, t, perm_x, ptr_x, perm_t, ptr_t, pre, post, bounds, eps, isign, upsampfac, work):
        prepared = (xp, t, perm_x, ptr_x, perm_t, ptr_t, pre, post)
        if xp is None:
            prepared = _t3_prepare(x, s, bounds, eps, isign, upsampfac, c.dtype)
        return _type3(c, prepared, bounds, eps, isign, upsampfac, work)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, s, c = inputs[:3]
        ctx.bounds, ctx.eps, ctx.isign, ctx.upsampfac = inputs[11:15]
        ctx.save_for_backward(x, s, c)

    @staticmethod
    def backward(ctx, grad):
        x, s, c = ctx.saved_tensors
        sg = ctx.isign
        grad = grad.contiguous()
        back = _swap(ctx.bounds)
        none8 = (None,) * 8
        gx = gs = gc = None
        if ctx.needs_input_grad[2]:
            gc = _Type3.apply(s, x, grad, *none8, back, ctx.eps, -sg, ctx.upsampfac, None)
        d, B = x.shape[1], c.shape[0]
        if ctx.needs_input_grad[0]:
            w = torch.cat([grad * ((-sg * 1j) * s[:, i]).to(grad.dtype) for i in range(d)], 0)
            r = _Type3.apply(s, x, w, *none8, back, ctx.eps, -sg, ctx.upsampfac, None)
            gx = (c.conj().unsqueeze(0) * r.reshape(d, B, -1)).real.sum(1).t().to(x.dtype)
        if ctx.needs_input_grad[1]:
            w = torch.cat([c * ((sg * 1j) * x[:, i]).to(c.dtype) for i in range(d)], 0)
            r = _Type3.apply(x, s, w, *none8, ctx.bounds, ctx.eps, sg, ctx.upsampfac, None)
            gs = (grad.unsqueeze(0) * r.reshape(d, B, -1).conj()).real.sum(1).t().to(s.dtype)
        return (gx, gs, gc) + (None,) * 13


def _ranges(t: Tensor) -> list[tuple[float, float]]:
    """(centre, half-width) per column, in float64 (one host read)."""
    if t.shape[0] == 0:
        return [(0.0, 0.0)] * t.shape[1]
    lo_hi = torch.stack([t.detach().amin(0), t.detach().amax(0)]).double().cpu().tolist()
    return [((lo + hi) / 2, (hi - lo) / 2) for lo, hi in zip(*lo_hi)]


class NUFFT3Plan:
    """Type-3 NUFFT on fixed sources and targets: ranges measured and points sorted once.

    Args:
        points: ``(M, d)`` float32/float64 source coordinates (any real values), d in {1, 2, 3}.
        targets: ``(N, d)`` target frequencies (any real values), same d.
        eps: relative accuracy (warns below the dtype's reach, as :class:`NUFFTPlan`).
        dtype: ``torch.complex64`` or ``torch.complex128``.
        upsampfac: 2.0, 1.25 or None (default: 1.25 where it reaches eps, i.e. eps >= 1e-9 in float64 and >= 1e-4 in float32, else 2, as FINUFFT).

    ``plan.execute(values, isign=1)`` maps ``(B, M)`` (or ``(M,)``) strengths to ``(B, N)``
    (or ``(N,)``) values ``f[b, k] = sum_j values[b, j] exp(isign i targets[k] . points[j])``;
    differentiable in the values, and in points/targets if they required grad when the
    plan was made. It traces into one graph under ``torch.compile(fullgraph=True)``.
    """

    def __init__(self, points: Tensor, targets: Tensor, eps: float = 1e-6, dtype: torch.dtype = torch.complex64, *,
                 upsampfac: float | None = None):
        if dtype not in _nu._REAL:
            raise TypeError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
        real = _nu._REAL[dtype]
        self.dtype = dtype
        self.eps = _nu._check_eps(eps)
        self.points = _nu._check_points(points, real, "points", "n")
        self.targets = _nu._check_points(targets, real, "targets", "n", self.points.shape[1])
        if self.targets.device != self.points.device:
            raise ValueError(f"targets are on {self.targets.device} but points are on {self.points.device}")
        d = self.points.shape[1]
        self.upsampfac = _nu._check_upsampfac(upsampfac, self.eps, 0, d, type3=True, real_dtype=real)
        self.eps = _nu._effective_eps(self.eps, self.upsampfac, real)
        self.bounds: Bounds = tuple((c, x, dd, s) for (c, x), (dd, s) in zip(_ranges(self.points),
                                                                            _ranges(self.targets)))
        geo = _t3_geometry(self.bounds, self.eps, self.upsampfac)
        _QUAD.setdefault((geo.width, geo.beta), _quadrature(geo.width, geo.beta))
        self.grid = geo.grid
        # Rescaled points, both sorts and the pre/post factors, once; the isign = -1 factors are the
        # conjugates of the +1 ones (phihat is real).
        plus = _t3_prepare(self.points, self.targets, self.bounds, self.eps, 1, self.upsampfac, dtype)
        self._prepared = {1: plus, -1: (*plus[:6], plus[6].conj().resolve_conj(), plus[7].conj().resolve_conj())}
        self._work: tuple[int, tuple[Tensor, Tensor]] | None = None

    def _workspace(self, batch: int):
        """Two (batch, *inner grid) buffers for the inner type 2's padded grid and its FFT, kept between
        calls (for the last batch size only). A fresh 100+ MB grid per call is page-faulted in on first
        touch, which cost ~15 % of a 1M-point 3-D transform; FINUFFT's plan keeps its grids the same way.
        None under torch.compile, which allocates its own buffers."""
        if torch.compiler.is_compiling():
            return None
        if self._work is None or self._work[0] != batch:
            geo = _t3_geometry(self.bounds, self.eps, self.upsampfac)
            inner = _nu._geometry(geo.grid, self.eps, self.points.dtype, self.points.device.type, self.upsampfac)
            self._work = None  # free the old pair before allocating the new one
            shape = (batch, *inner.grid)
            self._work = (batch, tuple(torch.empty(shape, dtype=self.dtype, device=self.points.device)
                                       for _ in range(2)))
        return self._work[1]

    def execute(self, values: Tensor, isign: int = 1) -> Tensor:
        """``(B, M)`` or ``(M,)`` complex strengths -> ``(B, N)`` or ``(N,)`` values at the targets."""
        values = _nu._complex_input(values, "values", self.dtype)
        squeeze = values.dim() == 1
        v = values.unsqueeze(0) if squeeze else values
        M = self.points.shape[0]
        if v.dim() != 2 or v.shape[1] != M:
            raise ValueError(f"values must be (B, M) or (M,) with M = {M} points, got shape {tuple(values.shape)}")
        if v.device != self.points.device:
            raise ValueError(f"values are on {v.device} but the plan's points are on {self.points.device}")
        isign = _nu._check_isign(isign)
        out = _Type3.apply(self.points, self.targets, v.contiguous(), *self._prepared[isign], self.bounds,
                           self.eps, isign, self.upsampfac, self._workspace(v.shape[0]))
        return out[0] if squeeze else out

    def __repr__(self) -> str:
        return (f"NUFFT3Plan(M={self.points.shape[0]}, N={self.targets.shape[0]}, grid={self.grid}, "
                f"eps={self.eps:g}, dtype={self.dtype}, upsampfac={self.upsampfac:g}, device={self.points.device})")


def nufft3(points: Tensor, values: Tensor, targets: Tensor, *, eps: float = 1e-6, isign: int = 1,
           upsampfac: float | None = None) -> Tensor:
    """Type-3 NUFFT: ``f[b, k] = sum_j values[b, j] exp(isign i targets[k] . points[j])``.

    Args:
        points: ``(M, d)`` float32/float64 source coordinates, d in {1, 2, 3} (any real values).
        values: ``(B, M)`` or ``(M,)`` complex64/complex128 strengths (real is promoted).
        targets: ``(N, d)`` target frequencies (any real values), same d.
        eps: relative accuracy; isign: sign of the exponent (+1 default, as FINUFFT);
        upsampfac: 2.0, 1.25 or None (auto: 1.25 where it reaches eps, i.e. eps >= 1e-9 in float64 and >= 1e-4 in float32, else 2).

    Returns:
        ``(B, N)`` (or ``(N,)``), dtype of ``values``. Differentiable in values, points and
        targets. Reads the coordinate ranges (one sync); under ``torch.compile`` use a
        :class:`NUFFT3Plan` made outside the compiled function.
    """
    if torch.compiler.is_compiling():
        raise ValueError("nufft3 sizes its fine grid from the coordinate ranges (tensor values); under "
                         "torch.compile make a NUFFT3Plan outside the compiled function and call plan.execute")
    values = _nu._complex_input(values, "values")
    return NUFFT3Plan(points, targets, eps, values.dtype, upsampfac=upsampfac).execute(values, isign)
