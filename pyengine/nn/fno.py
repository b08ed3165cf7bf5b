"""Fourier neural operator blocks on regular latent grids (GINO's processor).

The grid FFTs go through ``torch.fft`` (cuFFT / pocketfft); only the lowest
``modes`` frequencies per axis are kept and mixed by learned complex weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SpectralConvGrid", "FNOBlock"]


class SpectralConvGrid(nn.Module):
    """Spectral convolution on a ``d``-dimensional regular grid (d in {1, 2, 3}).

    Args:
        in_channels, out_channels: feature sizes.
        modes: number of retained frequencies per axis (``(m1, ..., md)``). Along the
            last axis these are the non-negative rfft frequencies ``0..m_d-1``; along
            the others both signs, ``-(m//2)..(m-1)//2``.

    Shapes: ``x (B, in_channels, *grid) -> (B, out_channels, *grid)``. Each grid
    axis must be at least as long as its mode count (the last axis at least
    ``2*m_d - 1``).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]) -> None:
        super().__init__()
        modes = tuple(int(m) for m in modes)
        if not 1 <= len(modes) <= 3 or min(modes) < 1:
            raise ValueError(f"modes must be 1 to 3 positive integers, got {modes}")
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        scale = 1.0 / math.sqrt(in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.randn(in_channels, out_channels, *modes, dtype=torch.cfloat))

    def _index(self, shape: Sequence[int]) -> list[Tensor]:
        """Per-axis frequency indices of the kept modes in the (r)fft output."""
        idx = []
        for axis, (m, n) in enumerate(zip(self.modes, shape)):
            last = axis == len(self.modes) - 1
            if last:
                if m > n // 2 + 1:
                    raise ValueError(f"grid axis {axis} of length {n} cannot hold {m} rfft modes")
                idx.append(torch.arange(m))
            else:
                if m > n:
                    raise ValueError(f"grid axis {axis} of length {n} cannot hold {m} modes")
                f = torch.arange(m) - m // 2
                idx.append(torch.remainder(f, n))
        return idx

    def forward(self, x: Tensor) -> Tensor:
        d = len(self.modes)
        if x.dim() != d + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, {d} grid axes), got {tuple(x.shape)}")
        axes = tuple(range(2, 2 + d))
        xf = torch.fft.rfftn(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, dim=axes, norm="ortho")
        idx = [i.to(x.device) for i in self._index(x.shape[2:])]
        grids = torch.meshgrid(*idx, indexing="ij")
        sel = xf[(slice(None), slice(None), *grids)]  # (B, Cin, *modes)
        w = self.weight.to(sel.dtype)
        letters = "xyz"[:d]
        mixed = torch.einsum(f"bi{letters},io{letters}->bo{letters}", sel, w)
        out = torch.zeros(x.shape[0], self.out_channels, *xf.shape[2:], dtype=xf.dtype, device=x.device)
        out[(slice(None), slice(None), *grids)] = mixed
        y = torch.fft.irfftn(out, s=x.shape[2:], dim=axes, norm="ortho")
        return y.to(x.dtype)


class FNOBlock(nn.Module):
    """``x + act(norm(spectral(x) + pointwise(x)))``: one residual FNO layer on a grid.

    Shapes: ``(B, channels, *grid) -> (B, channels, *grid)``.
    """

    def __init__(self, channels: int, modes: Sequence[int], activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.spectral = SpectralConvGrid(channels, channels, modes)
        self.pointwise = nn.Linear(channels, channels)
        self.norm = nn.GroupNorm(1, channels)
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        pw = self.pointwise(x.movedim(1, -1)).movedim(-1, 1)
        return x + self.act(self.norm(self.spectral(x) + pw))
