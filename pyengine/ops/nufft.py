"""Non-uniform FFTs of types 1 and 2 in 1, 2 and 3 dimensions (FINUFFT conventions).

Type 1 (points -> modes)::

    f[b, k] = sum_j c[b, j] * exp(isign * 1j * k . x_j),   k in prod_i [-N_i//2, (N_i-1)//2]

Type 2 (modes -> points)::

    c[b, j] = sum_k f[b, k] * exp(isign * 1j * k . x_j)

Points ``x`` are ``(M, d)`` real coordinates in radians, 2*pi-periodic (any real value
is accepted), ``d`` in {1, 2, 3}; column ``i`` pairs with mode axis ``i``. Modes are
in FINUFFT's default (increasing-frequency) order. Values are complex64 or complex128
and set the precision; points are converted to the matching real dtype.

Algorithm: spread with the exponential-of-semicircle kernel onto an upsampled grid
(sigma = 2, width ``w = ceil(log10(1/eps)) + 1``) in C++/CUDA, ``torch.fft`` on the
fine grid, then deconvolve by the kernel's Fourier transform (type 2 runs the same
steps backwards). Relative L2 error is about ``eps`` (down to ~1e-14 in double,
~1e-6 in single).

Both transforms are differentiable in the values / modes (each is the other's
adjoint) and in the point coordinates (derivative transforms with ``i k`` weights).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

__all__ = ["NUFFTAccuracyWarning", "NUFFTPlan", "nufft1", "nufft2"]

_ops = torch.ops.pyengine
_MAX_WIDTH = 16
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}
_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


# --------------------------------------------------------------------------- parameters


class _Geometry(NamedTuple):
    n_modes: tuple[int, ...]
    grid: tuple[int, ...]  # fine (upsampled) grid size per dimension
    bins: tuple[int, ...]  # bin (CPU subproblem / CUDA tile) size per dimension
    width: int  # kernel width in fine-grid nodes
    beta: float  # kernel shape parameter


def _next_smooth_even(n: int) -> int:
    """Smallest even n' >= n whose only prime factors are 2, 3 and 5 (fast FFT sizes)."""
    n = max(2, n + (n & 1))
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


# Tolerance floors: below them the transform warns (NUFFTAccuracyWarning) and runs at the
# floor (kernel width of the floor), as FINUFFT does ("tolerance too small"). sigma = 2 reaches
# the dtype's limit (~machine epsilon in float32, 1e-14 in float64); sigma = 1.25 levels off
# earlier (the kernel's Fourier transform spans a larger dynamic range that the deconvolution
# amplifies rounding by): 1e-9 in float64, 1e-4 in float32. float32 at 1.25 reaches 6e-6 in 1-D
# but only 4.6e-5 to 1.05e-4 in 3-D at eps = 1e-5 (type 1, 16^3 and 32^3 modes, 3000 points;
# finufft 2.5.1 gives 4.9e-5 there), so 1e-5 would be a promise kept only in 1-D.
_EPS_FLOOR = {2.0: {torch.float32: 1e-7, torch.float64: 1e-14},
              1.25: {torch.float32: 1e-4, torch.float64: 1e-9}}
_UPSAMPFACS = (2.0, 1.25)


class NUFFTAccuracyWarning(UserWarning):
    """The requested eps is below what the dtype (or the chosen upsampling factor) reaches."""


def _kernel_width(eps: float, upsampfac: float = 2.0) -> tuple[int, float]:
    """ES kernel width (fine-grid nodes) and shape beta for tolerance eps and upsampling sigma.

    sigma = 2: ``w = ceil(log10(1/eps)) + 1``, ``beta = 2.30 w`` (2.20 / 2.26 / 2.38 for w = 2 / 3 / 4).
    Other sigma (1.25): ``w = ceil(ln(1/eps) / (pi sqrt(1 - 1/sigma)))``,
    ``beta = 0.97 pi (1 - 1/(2 sigma)) w`` (the kernel's support in frequency must end where
    the fine grid's aliasing starts, at ``(1 - 1/(2 sigma))`` of the Nyquist band). Width is
    clamped to [2, 16].
    """
    if upsampfac == 2.0:
        width = min(_MAX_WIDTH, max(2, math.ceil(math.log10(1.0 / eps)) + 1))
        # beta / width = 2.30 for upsampling 2; the narrowest kernels do better a little off it.
        beta_per_width = {2: 2.20, 3: 2.26, 4: 2.38}.get(width, 2.30)
        return width, beta_per_width * width
    width = math.ceil(math.log(1.0 / eps) / (math.pi * math.sqrt(1.0 - 1.0 / upsampfac)))
    width = min(_MAX_WIDTH, max(2, width))
    return width, 0.97 * math.pi * (1.0 - 0.5 / upsampfac) * width


def _reachable_eps(upsampfac: float, real_dtype: torch.dtype) -> float:
    """Smallest eps this (sigma, dtype) pair delivers; smaller requests warn and are raised to it."""
    return _EPS_FLOOR[upsampfac][real_dtype]


def _choose_upsampfac(eps: float, grid_size: int, dim: int, type3: bool = False,
                      real_dtype: torch.dtype = torch.float64) -> float:
    """The automatic sigma (FINUFFT's rule through 2.4, with pyengine's float32 floor).

    sigma = 1.25 when eps is reachable with it (eps >= 1e-9 in float64, >= 1e-4 in float32)
    and either the transform is type 3, or the mode grid is large (d = 1: N > 1e7,
    d = 2: N1 N2 > 3e5, d = 3: N1 N2 N3 > 3e6), where the (2/1.25)^d smaller fine grid and
    FFT outweigh the wider kernel; sigma = 2 otherwise.
    """
    if eps < _reachable_eps(1.25, real_dtype):
        return 2.0
    if type3:
        return 1.25
    return 1.25 if grid_size > {1: 10_000_000, 2: 300_000, 3: 3_000_000}[dim] else 2.0


def _check_upsampfac(upsampfac, eps: float, grid_size: int, dim: int, type3: bool = False,
                     real_dtype: torch.dtype = torch.float64) -> float:
    if upsampfac is None:
        return _choose_upsampfac(eps, grid_size, dim, type3, real_dtype)
    if isinstance(upsampfac, bool) or not isinstance(upsampfac, (int, float)) or float(upsampfac) not in _UPSAMPFACS:
        raise ValueError(f"upsampfac must be None (automatic), 2.0 or 1.25, got {upsampfac!r}")
    return float(upsampfac)


def _effective_eps(eps: float, upsampfac: float, real_dtype: torch.dtype, stacklevel: int = 3) -> float:
    """eps, or the floor of (sigma, dtype) with a NUFFTAccuracyWarning when eps is below it."""
    reach = _reachable_eps(upsampfac, real_dtype)
    if eps >= reach:
        return eps
    if not torch.compiler.is_compiling():
        import warnings

        warnings.warn(f"eps = {eps:g} is below what {_COMPLEX[real_dtype]} with upsampfac {upsampfac:g} "
                      f"reaches ({reach:g}); computing at eps = {reach:g} instead",
                      NUFFTAccuracyWarning, stacklevel=stacklevel + 1)
    return reach


def _bins(dim: int, device_type: str) -> tuple[int, ...]:
    """Bin sizes (fine-grid nodes per dimension; the last dimension is contiguous).

    On the CPU a bin is the unit of the point sort the spreading subproblems are cut
    from; on CUDA a bin is also the output tile one thread block accumulates in
    shared memory (2 * prod(bins) reals: 8 KiB for 8^3 complex64).
    """
    if device_type == "cuda":
        return {1: (1024,), 2: (32, 32), 3: (8, 8, 8)}[dim]
    return {1: (256,), 2: (8, 32), 3: (4, 4, 16)}[dim]


@functools.lru_cache(maxsize=256)
def _geometry(n_modes: tuple[int, ...], eps: float, real_dtype: torch.dtype, device_type: str,
              upsampfac: float = 2.0) -> _Geometry:
    width, beta = _kernel_width(eps, upsampfac)
    grid = tuple(_next_smooth_even(max(math.ceil(upsampfac * n), 2 * width)) for n in n_modes)
    return _Geometry(n_modes, grid, _bins(len(n_modes), device_type), width, beta)


def _mode_order(n: int, modeord: int) -> Tensor:
    """Frequencies of the n mode slots: centred (-n//2 .. (n-1)//2) or FFT order (0, 1, .., -1)."""
    k = torch.arange(n) - n // 2
    return k if modeord == 0 else torch.fft.ifftshift(k)


@functools.lru_cache(maxsize=256)
def _deconv_factors(n_modes: tuple[int, ...], grid: tuple[int, ...], width: int, beta: float,
                    real_dtype: torch.dtype, device: torch.device, modeord: int = 0):
    """Per dimension: fine-grid index of each mode slot (k mod n) and 1 / phihat(k)."""
    out = []
    for n, nf in zip(n_modes, grid):
        k = _mode_order(n, modeord)
        inv = 1.0 / _ops.nufft_kernel_ft(n, nf, width, beta)  # centred order
        inv = inv[k + n // 2]
        out.append((torch.remainder(k, nf).to(device), inv.to(device=device, dtype=real_dtype)))
    return tuple(out)


def _wavenumbers(n_modes: Sequence[int], dtype: torch.dtype, device: torch.device, modeord: int = 0) -> list[Tensor]:
    return [_mode_order(n, modeord).to(device=device, dtype=dtype) for n in n_modes]


def _broadcast(v: Tensor, axis: int, ndim: int) -> Tensor:
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


# --------------------------------------------------------------------------- the ops (Python implementations)


def _mode_runs(n: int, nf: int, modeord: int) -> tuple[tuple[int, int, int], ...]:
    """(mode slot start, fine-grid start, length) of the two runs that place n mode slots on nf nodes.

    Frequencies k >= 0 (n - n//2 of them) go to nodes 0.., k < 0 (n//2) to the last n//2 nodes
    (node = k mod nf); the nf - n nodes between them are zero. Same map as _deconv_factors' index.
    """
    pos, neg = n - n // 2, n // 2
    if modeord == 0:  # slots hold -n//2 .. (n-1)//2
        return ((neg, 0, pos), (0, nf - neg, neg))
    return ((0, 0, pos), (pos, nf - neg, neg))  # FFT order: 0 .. (n-1)//2, -(n//2) .. -1


def _deconv_grid(factors, ndim: int) -> Tensor:
    """Outer product of the per-dimension 1 / phihat factors, shaped (1, n_1, ..., n_d)."""
    inv = None
    for i, (_idx, f) in enumerate(factors):
        v = _broadcast(f, i + 1, ndim)
        inv = v if inv is None else inv * v
    return inv


# The transforms are plain Python composites of registered primitives (nufft_spread,
# torch.fft, nufft_interp), not registered ops themselves: a call goes straight from
# Python to the C++/CUDA kernels, torch.compile traces through them (the primitives
# have fake kernels) and autograd is one torch.autograd.Function per transform.
#
# The deconvolution is one multiply by the outer product of the 1-D factors on the n_1..n_d
# mode block, and type 2 writes that block into the zeroed fine grid with 2^d slice copies:
# no fine-grid-sized temporaries besides the grid and its FFT (each new large CPU tensor is
# page-faulted in on first touch, which costs more than the arithmetic on it).


def _fft_fine(fine: Tensor, isign: int, out: Tensor | None = None) -> Tensor:
    dims = tuple(range(1, fine.dim()))
    # sum_g x[g] exp(isign * 2 pi i k g / n), unnormalised in both directions
    if isign > 0:
        return torch.fft.ifftn(fine, dim=dims, norm="forward", out=out)
    return torch.fft.fftn(fine, dim=dims, norm="backward", out=out)


def _type1(points, values, perm, bin_ptr, n_modes, eps, isign, modeord=0, upsampfac=2.0):
    geo = _geometry(tuple(n_modes), float(eps), points.dtype, points.device.type, upsampfac)
    fine = _ops.nufft_spread(points, values, perm, bin_ptr, geo.grid, geo.bins, geo.width, geo.beta)
    fine = _fft_fine(fine, isign)
    factors = _deconv_factors(geo.n_modes, geo.grid, geo.width, geo.beta, points.dtype, points.device, modeord)
    for i, (idx, _inv) in enumerate(factors):
        fine = fine.index_select(i + 1, idx)
    return fine * _deconv_grid(factors, fine.dim())


def _pad_modes(modes: Tensor, grid: tuple[int, ...], modeord: int, out: Tensor | None = None) -> Tensor:
    """(B, *n) modes -> (B, *grid) fine grid holding them at nodes k mod nf, zero elsewhere (into out if given)."""
    shape = (modes.shape[0], *grid)
    fine = modes.new_zeros(shape) if out is None else out.zero_()
    runs = [_mode_runs(n, nf, modeord) for n, nf in zip(modes.shape[1:], grid)]
    for block in itertools.product(*runs):
        dst, src = fine, modes
        for axis, (s0, d0, length) in enumerate(block, 1):
            dst, src = dst.narrow(axis, d0, length), src.narrow(axis, s0, length)
        dst.copy_(src)
    return fine


def _type2(points, modes, perm, bin_ptr, eps, isign, modeord=0, upsampfac=2.0, work=None):
    """``work``: None, or two (B, *grid) complex buffers of the fine grid's size to compute in (a plan's
    reusable workspace; the result does not alias them)."""
    n_modes = tuple(modes.shape[1:])
    geo = _geometry(n_modes, float(eps), points.dtype, points.device.type, upsampfac)
    factors = _deconv_factors(geo.n_modes, geo.grid, geo.width, geo.beta, points.dtype, points.device, modeord)
    fine = _pad_modes(modes * _deconv_grid(factors, modes.dim()), geo.grid, modeord,
                      None if work is None else work[0])
    fine = _fft_fine(fine, isign, None if work is None else work[1])
    return _ops.nufft_interp(points, fine, perm, bin_ptr, geo.bins, geo.width, geo.beta)


# --------------------------------------------------------------------------- fake kernels


@torch.library.register_fake("pyengine::nufft_sort")
def _nufft_sort_fake(points, grid, bins):
    nbins = math.prod(-(-n // b) for n, b in zip(grid, bins))
    return (points.new_empty((points.shape[0],), dtype=torch.long),
            points.new_empty((nbins + 1,), dtype=torch.long))


@torch.library.register_fake("pyengine::nufft_spread")
def _nufft_spread_fake(points, values, perm, bin_ptr, grid, bins, width, beta):
    return values.new_empty((values.shape[0], *grid))


@torch.library.register_fake("pyengine::nufft_interp")
def _nufft_interp_fake(points, fine, perm, bin_ptr, bins, width, beta):
    return fine.new_empty((fine.shape[0], points.shape[0]))


@torch.library.register_fake("pyengine::nufft_kernel_ft")
def _nufft_kernel_ft_fake(n_modes, nf, width, beta):
    return torch.empty((n_modes,), dtype=torch.float64)


# --------------------------------------------------------------------------- autograd
#
# With s = isign and PyTorch's convention for complex gradients (grad = dL/d conj(z)):
#   type 1, f = A c:   grad_c = A^H g = type2(g, -s)
#                      grad_x[j, i] = sum_b Re(conj(c[b, j]) * type2(-s i k_i g, -s)[b, j])
#   type 2, c = A f:   grad_f = type1(g, -s)
#                      grad_x[j, i] = sum_b Re(g[b, j] * conj(type2(s i k_i f, s)[b, j]))
# The d coordinate derivatives go through one type-2 call with d*B channels.


def _ik_stack(modes: Tensor, factor: complex, modeord: int = 0) -> Tensor:
    """(d*B, *n_modes): factor * k_i * modes for each dimension i, stacked along the batch."""
    n_modes = modes.shape[1:]
    ndim = modes.dim()
    ks = _wavenumbers(n_modes, _REAL[modes.dtype], modes.device, modeord)
    return torch.cat([modes * (factor * _broadcast(k, i + 1, ndim)) for i, k in enumerate(ks)], 0)


class _Type1(torch.autograd.Function):
    """Type 1 with its adjoint-based derivatives; twice differentiable (backward uses _Type2)."""

    @staticmethod
    def forward(points, values, perm, bin_ptr, n_modes, eps, isign, modeord, upsampfac):
        return _type1(points, values, perm, bin_ptr, n_modes, eps, isign, modeord, upsampfac)

    @staticmethod
    def setup_context(ctx, inputs, output):
        points, values, perm, bin_ptr, n_modes, eps, isign, modeord, upsampfac = inputs
        ctx.n_modes, ctx.eps, ctx.isign = tuple(n_modes), eps, isign
        ctx.modeord, ctx.upsampfac = modeord, upsampfac
        ctx.save_for_backward(points, values, perm, bin_ptr)

    @staticmethod
    def backward(ctx, grad):
        points, values, perm, bin_ptr = ctx.saved_tensors
        s = 1 if ctx.isign > 0 else -1
        grad = grad.contiguous()
        grad_points = grad_values = None
        if ctx.needs_input_grad[1]:
            grad_values = _Type2.apply(points, grad, perm, bin_ptr, ctx.eps, -s, ctx.modeord, ctx.upsampfac)
        if ctx.needs_input_grad[0]:
            d, B = points.shape[1], values.shape[0]
            r = _Type2.apply(points, _ik_stack(grad, -s * 1j, ctx.modeord), perm, bin_ptr, ctx.eps, -s,
                             ctx.modeord, ctx.upsampfac)
            prod = values.conj().unsqueeze(0) * r.reshape(d, B, -1)
            grad_points = prod.real.sum(1).t().to(points.dtype)
        return grad_points, grad_values, None, None, None, None, None, None, None


class _Type2(torch.autograd.Function):
    """Type 2 with its adjoint-based derivatives; twice differentiable (backward uses _Type1/_Type2)."""

    @staticmethod
    def forward(points, modes, perm, bin_ptr, eps, isign, modeord, upsampfac):
        return _type2(points, modes, perm, bin_ptr, eps, isign, modeord, upsampfac)

    @staticmethod
    def setup_context(ctx, inputs, output):
        points, modes, perm, bin_ptr, eps, isign, modeord, upsampfac = inputs
        ctx.eps, ctx.isign, ctx.modeord, ctx.upsampfac = eps, isign, modeord, upsampfac
        ctx.save_for_backward(points, modes, perm, bin_ptr)

    @staticmethod
    def backward(ctx, grad):
        points, modes, perm, bin_ptr = ctx.saved_tensors
        s = 1 if ctx.isign > 0 else -1
        grad = grad.contiguous()
        grad_points = grad_modes = None
        if ctx.needs_input_grad[1]:
            grad_modes = _Type1.apply(points, grad, perm, bin_ptr, tuple(modes.shape[1:]), ctx.eps, -s,
                                      ctx.modeord, ctx.upsampfac)
        if ctx.needs_input_grad[0]:
            d, B = points.shape[1], modes.shape[0]
            r = _Type2.apply(points, _ik_stack(modes, s * 1j, ctx.modeord), perm, bin_ptr, ctx.eps, s,
                             ctx.modeord, ctx.upsampfac)
            prod = grad.unsqueeze(0) * r.reshape(d, B, -1).conj()
            grad_points = prod.real.sum(1).t().to(points.dtype)
        return grad_points, grad_modes, None, None, None, None, None, None


# --------------------------------------------------------------------------- validation


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a float, got {type(eps).__name__}")
    eps = float(eps)
    if not (0.0 < eps < 1.0):
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    return eps


def _check_isign(isign) -> int:
    if isign not in (1, -1) or isinstance(isign, bool):
        raise ValueError(f"isign must be +1 or -1, got {isign!r}")
    return int(isign)


def _check_n_modes(n_modes, dim: int | None) -> tuple[int, ...]:
    if isinstance(n_modes, int) and not isinstance(n_modes, bool):
        n_modes = (n_modes,)
    try:
        n_modes = tuple(n_modes)
    except TypeError:
        raise TypeError(f"n_modes must be a tuple of ints, got {type(n_modes).__name__}") from None
    if not n_modes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in n_modes):
        raise ValueError(f"n_modes must be a non-empty tuple of positive ints, got {n_modes}")
    if dim is not None and len(n_modes) != dim:
        raise ValueError(f"n_modes has {len(n_modes)} entries but points have d = {dim} columns")
    if len(n_modes) > 3:
        raise ValueError(f"only d = 1, 2, 3 are supported, got n_modes {n_modes}")
    return n_modes


def _check_points(points, real_dtype: torch.dtype, name: str = "points", rows: str = "M",
                  dim: int | None = None) -> Tensor:
    """Coordinates ``(rows, d)``, d in {1, 2, 3} (equal to ``dim`` when given), finite, as
    ``real_dtype``; ``name``/``rows`` only word the errors (type 3 checks its targets too)."""
    if not isinstance(points, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    if points.dim() != 2 or not 1 <= points.shape[1] <= 3:
        raise ValueError(f"{name} must be ({rows}, d) with d in {{1, 2, 3}}, got shape {tuple(points.shape)}")
    if dim is not None and points.shape[1] != dim:
        raise ValueError(f"{name} has d = {points.shape[1]} columns but the sources have d = {dim}")
    if points.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {points.dtype}")
    # nufft_sort checks finiteness too; this eager check names the problem before any work, and
    # is skipped under torch.compile, where reading a tensor's value would break the graph.
    if not torch.compiler.is_compiling() and points.numel() and not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return points.to(real_dtype)


def _complex_input(t, name: str, dtype: torch.dtype | None = None) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype in (torch.float32, torch.float64):
        t = t.to(_COMPLEX[t.dtype])
    if t.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"{name} must be complex64 or complex128 (or real float32/float64), got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but the plan was made for {dtype}")
    return t


def _check_modeord(modeord) -> int:
    if modeord not in (0, 1) or isinstance(modeord, bool):
        raise ValueError(f"modeord must be 0 (centred, -N//2 .. (N-1)//2) or 1 (FFT order, 0 .. -1), got {modeord!r}")
    return int(modeord)


def _sort(points: Tensor, n_modes: tuple[int, ...], eps: float, upsampfac: float = 2.0) -> tuple[Tensor, Tensor]:
    geo = _geometry(n_modes, eps, points.dtype, points.device.type, upsampfac)
    with torch.no_grad():
        return _ops.nufft_sort(points.detach(), geo.grid, geo.bins)


# --------------------------------------------------------------------------- public API


class NUFFTPlan:
    """Points sorted into bins once, for repeated transforms on a fixed geometry.

    Args:
        points: ``(M, d)`` real coordinates (radians, 2*pi-periodic), d in {1, 2, 3}.
        n_modes: modes per dimension, ``(N_1, ..., N_d)``.
        eps: requested relative accuracy. Below what the dtype reaches (1e-6 for
            complex64, 1e-14 for complex128; about 1e-10 with ``upsampfac=1.25``) the
            plan warns (:class:`NUFFTAccuracyWarning`) and runs at that accuracy, as
            FINUFFT does; ``warnings.simplefilter("error", NUFFTAccuracyWarning)``
            turns it into an error.
        dtype: ``torch.complex64`` or ``torch.complex128``; points are stored in the
            matching real dtype.
        modeord: 0 (default, FINUFFT's): mode axis i holds ``-N_i//2 .. (N_i-1)//2``;
            1: FFT order ``0 .. (N_i-1)//2, -(N_i//2) .. -1`` (as ``torch.fft.fftfreq``).
        upsampfac: fine-grid upsampling sigma, 2.0 or 1.25; None (default) chooses as
            FINUFFT does (see :func:`_choose_upsampfac`): 1.25 for eps >= 1e-9 on large
            mode grids (d = 1: N > 1e7, d = 2: > 3e5 modes, d = 3: > 3e6), else 2.

    ``plan.type1(values)`` and ``plan.type2(modes)`` equal :func:`nufft1` /
    :func:`nufft2` on the plan's points, without sorting again. They are
    differentiable in the values and, if ``points`` required grad when the plan
    was made, in the points.
    """

    def __init__(self, points: Tensor, n_modes, eps: float = 1e-6, dtype: torch.dtype = torch.complex64, *,
                 modeord: int = 0, upsampfac: float | None = None):
        if dtype not in _REAL:
            raise TypeError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
        self.dtype = dtype
        self.eps = _check_eps(eps)
        self.modeord = _check_modeord(modeord)
        self.points = _check_points(points, _REAL[dtype])
        self.n_modes = _check_n_modes(n_modes, self.points.shape[1])
        self.upsampfac = _check_upsampfac(upsampfac, self.eps, math.prod(self.n_modes), len(self.n_modes),
                                          real_dtype=_REAL[dtype])
        self.eps = _effective_eps(self.eps, self.upsampfac, _REAL[dtype])
        self.perm, self.bin_ptr = _sort(self.points, self.n_modes, self.eps, self.upsampfac)

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    def type1(self, values: Tensor, isign: int = 1) -> Tensor:
        """``(B, M)`` or ``(M,)`` complex strengths -> ``(B, *n_modes)`` (or ``n_modes``) modes."""
        values = _complex_input(values, "values", self.dtype)
        squeeze = values.dim() == 1
        v = values.unsqueeze(0) if squeeze else values
        if v.dim() != 2 or v.shape[1] != self.num_points:
            raise ValueError(f"values must be (B, M) or (M,) with M = {self.num_points} points, "
                             f"got shape {tuple(values.shape)}")
        if v.device != self.points.device:
            raise ValueError(f"values are on {v.device} but the plan's points are on {self.points.device}")
        out = _Type1.apply(self.points, v.contiguous(), self.perm, self.bin_ptr, tuple(self.n_modes), self.eps,
                           _check_isign(isign), self.modeord, self.upsampfac)
        return out[0] if squeeze else out

    def type2(self, modes: Tensor, isign: int = -1) -> Tensor:
        """``(B, *n_modes)`` or ``n_modes``-shaped complex modes -> ``(B, M)`` (or ``(M,)``) values."""
        modes = _complex_input(modes, "modes", self.dtype)
        d = len(self.n_modes)
        squeeze = modes.dim() == d
        f = modes.unsqueeze(0) if squeeze else modes
        if f.dim() != d + 1 or tuple(f.shape[1:]) != self.n_modes:
            raise ValueError(f"modes must be (B, *n_modes) or n_modes with n_modes = {self.n_modes}, "
                             f"got shape {tuple(modes.shape)}")
        if f.device != self.points.device:
            raise ValueError(f"modes are on {f.device} but the plan's points are on {self.points.device}")
        out = _Type2.apply(self.points, f.contiguous(), self.perm, self.bin_ptr, self.eps, _check_isign(isign),
                           self.modeord, self.upsampfac)
        return out[0] if squeeze else out

    def __repr__(self) -> str:
        return (f"NUFFTPlan(M={self.num_points}, n_modes={self.n_modes}, eps={self.eps:g}, "
                f"dtype={self.dtype}, modeord={self.modeord}, upsampfac={self.upsampfac:g}, "
                f"device={self.points.device})")


def nufft1(points: Tensor, values: Tensor, n_modes, *, eps: float = 1e-6, isign: int = 1, modeord: int = 0,
           upsampfac: float | None = None) -> Tensor:
    """Type-1 NUFFT: ``f[b, k] = sum_j values[b, j] exp(isign i k . points[j])``.

    Args:
        points: ``(M, d)`` float32/float64 coordinates in radians (2*pi-periodic), d in {1, 2, 3}.
            Any finite value: each is reduced exactly modulo 2*pi (the double nearest it, by
            fmod), so for ``|x| >> 1`` the phase is x's modulo that double (off the true
            phase by ~|x| * 2.4e-16 rad). NaN/inf raise ValueError.
        values: ``(B, M)`` or ``(M,)`` complex64/complex128 strengths (real is promoted).
        n_modes: ``(N_1, ..., N_d)``; mode axis i holds frequencies ``-N_i//2 .. (N_i-1)//2``.
        eps: relative accuracy (warns below the dtype's reach, see :class:`NUFFTPlan`);
        isign: sign of the exponent (+1 default, as FINUFFT).
        modeord: 0 centred (default), 1 FFT order; upsampfac: 2.0, 1.25 or None (auto),
            see :class:`NUFFTPlan`.

    Returns:
        ``(B, *n_modes)`` (or ``n_modes`` for 1-D values), dtype of ``values``.
    """
    values = _complex_input(values, "values")
    points = _check_points(points, _REAL[values.dtype])
    return NUFFTPlan(points, n_modes, eps, values.dtype, modeord=modeord, upsampfac=upsampfac).type1(values, isign)


def nufft2(points: Tensor, modes: Tensor, *, eps: float = 1e-6, isign: int = -1, modeord: int = 0,
           upsampfac: float | None = None) -> Tensor:
    """Type-2 NUFFT: ``c[b, j] = sum_k modes[b, k] exp(isign i k . points[j])``.

    Args:
        points: ``(M, d)`` float32/float64 coordinates in radians (2*pi-periodic); any
            finite value, reduced as in :func:`nufft1`. NaN/inf raise ValueError.
        modes: ``(B, N_1, ..., N_d)`` or ``(N_1, ..., N_d)`` complex modes, in the order
            ``modeord`` names (0: centred, FINUFFT's default; 1: FFT order).
        eps: relative accuracy (warns below the dtype's reach, see :class:`NUFFTPlan`);
        isign: sign of the exponent (-1 default, as FINUFFT); upsampfac: 2.0, 1.25 or None (auto).

    Returns:
        ``(B, M)`` (or ``(M,)``), dtype of ``modes``.
    """
    modes = _complex_input(modes, "modes")
    points = _check_points(points, _REAL[modes.dtype])
    d = points.shape[1]
    if modes.dim() not in (d, d + 1):
        raise ValueError(f"modes must be (B, *n_modes) or n_modes with {d} mode axes for d = {d} points, "
                         f"got shape {tuple(modes.shape)}")
    n_modes = tuple(modes.shape[-d:])
    return NUFFTPlan(points, n_modes, eps, modes.dtype, modeord=modeord, upsampfac=upsampfac).type2(modes, isign)
