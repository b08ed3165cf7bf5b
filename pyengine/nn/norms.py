"""Normalisation layers of the GAOT processor: RMSNorm and the time-conditioned scaling.

Both follow the semantics of the official GAOT code (camlab-ethz/GAOT), so that its
trained weights load unchanged (:func:`pyengine.models.gaot.from_official`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConditionedNorm", "RMSNorm"]


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last axis (no centring, no bias).

    The normalisation runs in float32 (then casts back) so that bf16/fp16 inputs keep
    their scale, as in LLaMA-style transformers. Shapes: ``(..., dim) -> (..., dim)``.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        if dim < 1 or not eps > 0:
            raise ValueError(f"RMSNorm needs dim >= 1 and eps > 0, got dim={dim}, eps={eps}")
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class ConditionedNorm(nn.Module):
    """Time-conditioned affine map ``x * (1 + c * a(c)) + c * b(c)`` with linear ``a``, ``b``.

    ``c`` is the (normalised) lead time, shape ``(B, 1)``; ``x`` is ``(B, T, dim)``. At
    ``c = 0`` the map is the identity, so a model trained for one step size extends
    smoothly to others. Weights start small (std 0.01), as in the official GAOT.
    """

    def __init__(self, dim: int, cond_dim: int = 1) -> None:
        super().__init__()
        self.scale = nn.Linear(cond_dim, dim)
        self.shift = nn.Linear(cond_dim, dim)
        for lin in (self.scale, self.shift):
            nn.init.normal_(lin.weight, std=0.01)

    def forward(self, c: Tensor, x: Tensor) -> Tensor:
        if c is None:
            raise ValueError("this block is time-conditioned: pass the lead time as cond of shape (B, 1)")
        scale = 1 + c * self.scale(c)
        shift = c * self.shift(c)
        return x * scale[:, None, :] + shift[:, None, :]
