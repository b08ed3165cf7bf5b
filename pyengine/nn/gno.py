"""GNO kernel integral layer over a neighbor graph."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..ops import gno as _gno
from ..ops import row_index, segment_reduce

_ACTIVATION_MODULES = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _activation_name(module: nn.Module) -> str | None:
    """The fused kernel's name for an activation module, or None if it has none."""
    if type(module) is nn.GELU:
        return "gelu" if module.approximate == "none" else None
    for name, cls in _ACTIVATION_MODULES.items():
        if type(module) is cls:
            return name
    return None


class GNOIntegral(nn.Module):
    """Kernel integral of a graph neural operator.

    ``out_i = reduce_{e in row i} k(x_i, y_j[, f_y[j]]) * f_y[j] * weights[j]`` over
    the neighbors ``j = col[e]`` of query ``i`` (a CSR graph, e.g. from
    :func:`pyengine.ops.radius_search`), with ``k`` the MLP ``self.kernel``.

    Args:
        in_channels: ``C``, the width of ``f_y`` and of the output.
        coord_dim: ``d``, the dimension of the points.
        hidden: widths of the kernel MLP's hidden layers (1 to 3 for the fused path).
        transform: ``"linear"`` (``k(x, y) * f``), ``"nonlinear"`` (``k(x, y, f) * f``)
            or ``"linear_kernelonly"`` (``k(x, y)`` alone; ``f_y`` must be ``None``).
        reduction: ``"sum"`` or ``"mean"`` over each query's neighbors (mean of an
            empty row is 0).
        activation: ``"gelu"`` (exact erf form), ``"relu"``, ``"silu"`` or ``"tanh"``.
        fused: ``True`` (default) runs the fused kernel, which never stores per-edge
            tensors; ``False`` runs the plain gather -> MLP -> multiply -> scatter in
            PyTorch (any kernel module, any dtype, double backward; memory
            ``O(E * max(hidden, C))``). The fused path raises a ``ValueError`` /
            ``TypeError`` for what it does not support rather than falling back.
            On CUDA, float32 runs on tensor cores (TF32 products) when PyTorch's
            float32 matmuls may (``torch.set_float32_matmul_precision("high")``),
            exact float32 FMA otherwise; see :func:`pyengine.ops.gno_integral`.

    Attributes:
        kernel: ``torch.nn.Sequential`` of ``Linear`` and activation modules; input
            ``cat([x[row], y[col]])`` (``+ f_y[col]`` for ``"nonlinear"``), output ``C``.
    """

    def __init__(
        self,
        in_channels: int,
        coord_dim: int,
        hidden: Sequence[int] = (64, 64),
        transform: str = "linear",
        reduction: str = "mean",
        activation: str = "gelu",
        fused: bool = True,
    ):
        super().__init__()
        if transform not in _gno.TRANSFORMS:
            raise ValueError(f"transform must be one of {_gno.TRANSFORMS}, got {transform!r}")
        if reduction not in _gno.REDUCTIONS:
            raise ValueError(f"reduction must be one of {_gno.REDUCTIONS}, got {reduction!r}")
        if activation not in _ACTIVATION_MODULES:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATION_MODULES)}, got {activation!r}")
        if in_channels < 1 or coord_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"in_channels, coord_dim and hidden widths must be >= 1, got {in_channels}, {coord_dim}, {hidden}")
        self.in_channels = int(in_channels)
        self.coord_dim = int(coord_dim)
        self.transform = transform
        self.reduction = reduction
        self.activation = activation
        self.fused = bool(fused)
        widths = [2 * coord_dim + (in_channels if transform == "nonlinear" else 0), *hidden, in_channels]
        layers: list[nn.Module] = []
        for l in range(len(widths) - 1):
            layers.append(nn.Linear(widths[l], widths[l + 1]))
            if l + 2 < len(widths):
                layers.append(_ACTIVATION_MODULES[activation]())
        self.kernel = nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, coord_dim={self.coord_dim}, transform={self.transform!r}, "
            f"reduction={self.reduction!r}, fused={self.fused}"
        )

    def _fused_layers(self) -> tuple[list[Tensor], list[Tensor], str]:
        """The kernel's Linear weights and biases and its activation, as the fused op needs them."""
        mods = list(self.kernel)
        linears = mods[0::2]
        acts = mods[1::2]
        ok = len(mods) % 2 == 1 and all(type(m) is nn.Linear and m.bias is not None for m in linears)
        names = {_activation_name(a) for a in acts}
        if not ok or None in names or len(names) > 1:
            raise ValueError(
                "the fused GNO kernel needs self.kernel = Linear, act, Linear, ..., Linear with biases and one "
                "activation among gelu (exact), relu, silu, tanh; construct with fused=False for other kernels"
            )
        act = names.pop() if names else "gelu"  # a single Linear has no activation to apply
        return [m.weight for m in linears], [m.bias for m in linears], act

    def forward(
        self,
        y: Tensor,
        x: Tensor,
        row_ptr: Tensor,
        col: Tensor,
        f_y: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """Integrate over each query's neighbors.

        Args:
            y: ``(N, d)`` source points.  x: ``(M, d)`` query points (same unit).
            row_ptr: ``(M + 1,)`` int64; col: ``(E,)`` int64/int32 into ``y``.
            f_y: ``(N, C)`` features at ``y`` (``None`` for ``"linear_kernelonly"``).
            weights: ``(N,)`` quadrature weights at ``y`` (e.g. cell volumes), or None.

        Returns:
            ``(M, C)``.
        """
        if self.transform == "linear_kernelonly":
            if f_y is not None:
                raise ValueError("transform 'linear_kernelonly' does not use f_y; pass f_y=None")
        elif f_y is None:
            raise ValueError(f"transform {self.transform!r} needs f_y of shape (N, {self.in_channels})")
        if not self.fused:
            return self.plain_forward(y, x, row_ptr, col, f_y, weights)
        ws, bs, act = self._fused_layers()
        return _gno.gno_integral(y, x, row_ptr, col, f_y, weights, ws, bs, act, self.transform, self.reduction)

    def plain_forward(self, y, x, row_ptr, col, f_y=None, weights=None) -> Tensor:
        """The unfused gather -> MLP -> multiply -> scatter (what peers write); materialises E x hidden."""
        rows = row_index(row_ptr, col.shape[0])
        col = col.long()
        z = [x.index_select(0, rows), y.index_select(0, col)]
        if self.transform == "nonlinear":
            z.append(f_y.index_select(0, col))
        msg = self.kernel(torch.cat(z, dim=1))
        if self.transform != "linear_kernelonly":
            msg = msg * f_y.index_select(0, col)
        if weights is not None:
            msg = msg * weights.index_select(0, col).unsqueeze(1)
        return segment_reduce(msg, row_ptr, self.reduction)
