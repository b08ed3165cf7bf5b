"""Vision-transformer processor over a regular grid of latent tokens (GAOT's processor).

Tokens live on a 2D or 3D grid; the processor groups them into patches,
runs pre-norm transformer blocks with ``scaled_dot_product_attention`` (flash
or memory-efficient kernels where PyTorch has them) and scatters the patches
back. An optional condition vector (time, lead time, ...) modulates every
normalisation (adaptive LayerNorm), as in diffusion transformers, which is how
the time-dependent GAOT/RIGNO variants are conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AdaptiveLayerNorm", "TransformerBlock", "ViTProcessor", "patchify", "sinusoidal_embedding", "unpatchify"]


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 1.0e4) -> Tensor:
    """Sinusoidal features of scalars: ``t (..., ) -> (..., dim)`` (dim even)."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[..., None] * freqs
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1).to(t.dtype if t.is_floating_point() else torch.float32)


def patchify(x: Tensor, grid_shape: Sequence[int], patch: int) -> Tensor:
    """Group a token grid into patches: ``(B, prod(grid), C) -> (B, prod(grid // patch), patch^d * C)``.

    Tokens are in row-major order of ``grid_shape``; patches too, and each patch vector
    lists its tokens in row-major order, channels last.
    """
    b, _, c = x.shape
    p, g = patch, tuple(n // patch for n in grid_shape)
    if len(g) == 2:
        x = x.reshape(b, g[0], p, g[1], p, c).permute(0, 1, 3, 2, 4, 5)
    else:
        x = x.reshape(b, g[0], p, g[1], p, g[2], p, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, math.prod(g), -1)


def unpatchify(x: Tensor, grid_shape: Sequence[int], patch: int, channels: int) -> Tensor:
    """Inverse of :func:`patchify`: ``(B, n_patches, patch^d * C) -> (B, prod(grid), C)``."""
    b, c = x.shape[0], channels
    p, g = patch, tuple(n // patch for n in grid_shape)
    if len(g) == 2:
        x = x.reshape(b, g[0], g[1], p, p, c).permute(0, 1, 3, 2, 4, 5)
    else:
        x = x.reshape(b, g[0], g[1], g[2], p, p, p, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, math.prod(grid_shape), c)


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm whose scale and shift come from a condition vector (identity at init)."""

    def __init__(self, dim: int, cond_dim: int | None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=cond_dim is None)
        self.modulation = None
        if cond_dim is not None:
            self.modulation = nn.Linear(cond_dim, 2 * dim)
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        y = self.norm(x)
        if self.modulation is None:
            return y
        if cond is None:
            raise ValueError("this block is conditioned: pass cond of shape (B, cond_dim)")
        scale, shift = self.modulation(cond).unsqueeze(1).chunk(2, dim=-1)
        return y * (1 + scale) + shift


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; ``x (B, T, dim)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, cond_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.norm1 = AdaptiveLayerNorm(dim, cond_dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = AdaptiveLayerNorm(dim, cond_dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x, cond)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x, cond))


class ViTProcessor(nn.Module):
    """Transformer over a token grid with patching.

    Args:
        grid_shape: token grid ``(n1, n2[, n3])``; each axis divisible by ``patch``.
        channels: token feature size in and out.
        dim: transformer width; heads, depth: attention heads and blocks.
        patch: patch edge length in tokens (1 = one token per patch).
        cond_dim: size of the condition vector for adaptive normalisation, or None.

    Shapes: ``tokens (B, n1*n2[*n3], channels) -> (B, n1*n2[*n3], channels)``, tokens in
    row-major (C) order of the grid.
    """

    def __init__(self, grid_shape: Sequence[int], channels: int, dim: int = 128, depth: int = 4, heads: int = 4,
                 patch: int = 2, mlp_ratio: float = 4.0, cond_dim: int | None = None) -> None:
        super().__init__()
        self.grid_shape = tuple(int(n) for n in grid_shape)
        if len(self.grid_shape) not in (2, 3):
            raise ValueError(f"grid_shape must have 2 or 3 axes, got {self.grid_shape}")
        if any(n % patch for n in self.grid_shape):
            raise ValueError(f"every grid axis {self.grid_shape} must be divisible by patch={patch}")
        self.patch = patch
        self.patch_grid = tuple(n // patch for n in self.grid_shape)
        n_patches = math.prod(self.patch_grid)
        patch_size = channels * patch ** len(self.grid_shape)
        self.embed = nn.Linear(patch_size, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_patches, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, cond_dim) for _ in range(depth))
        self.norm = AdaptiveLayerNorm(dim, cond_dim)
        self.unembed = nn.Linear(dim, patch_size)

    def _patchify(self, x: Tensor) -> Tensor:
        return patchify(x, self.grid_shape, self.patch)

    def _unpatchify(self, x: Tensor, c: int) -> Tensor:
        return unpatchify(x, self.grid_shape, self.patch, c)

    def forward(self, tokens: Tensor, cond: Tensor | None = None) -> Tensor:
        if tokens.dim() != 3 or tokens.shape[1] != math.prod(self.grid_shape):
            raise ValueError(f"tokens must be (B, {math.prod(self.grid_shape)}, C), got {tuple(tokens.shape)}")
        c = tokens.shape[2]
        h = self.embed(self._patchify(tokens)) + self.pos
        for block in self.blocks:
            h = block(h, cond)
        return tokens + self._unpatchify(self.unembed(self.norm(h, cond)), c)
