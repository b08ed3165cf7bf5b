"""GNO kernel integral layer over a neighbor graph.

Mapping to neuraloperator's ``IntegralTransform`` (neuralop 2.0), for porting trained
blocks (:meth:`GNOIntegral.from_neuralop` does it):

====================  ============================================  ==============================================
                      neuralop ``IntegralTransform``                pyengine ``GNOIntegral``
====================  ============================================  ==============================================
kernel MLP input      ``[y_j, x_i]`` (+ ``f_j``)                    ``[x_i, y_j]`` (+ ``f_j``): the first Linear's
                                                                    first ``2 d`` columns swap halves
kernel MLP            ``LinearChannelMLP`` (``fcs``, F.gelu)        ``nn.Sequential`` of Linear / activation
transforms            linear, nonlinear, linear_kernelonly,         the same four
                      nonlinear_kernelonly
reduction             ``reduction`` (default ``"sum"``) without     ``reduction`` (``"sum"`` or ``"mean"``), always
                      weights, ``"sum"`` with them
weights               per *edge* (E,): ``weights=`` or              ``edge_weights`` (E,) per edge, and/or
                      ``neighbors["weights"]``                      ``weights`` (N,) per source point (quadrature)
weighting_fn          a function of the edge weights (mollifier)    not supported (apply it to ``edge_weights``)
graph                 ``neighbors_index`` / ``neighbors_row_splits`` ``col`` / ``row_ptr`` (the same CSR)
====================  ============================================  ==============================================

So neuralop's ``transform(y, nbrs, x, f)`` equals ``GNOIntegral.from_neuralop(transform, d)(y, x, row_ptr,
col, f)``, and ``transform(y, nbrs, x, f, weights=w)`` equals the ``reduction="sum"`` port called with
``edge_weights=w``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
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

    ``out_i = reduce_{e in row i} k(x_i, y_j[, f_y[j]]) * f_y[j] * weights[j] * edge_weights[e]``
    over the neighbors ``j = col[e]`` of query ``i`` (a CSR graph, e.g. from
    :func:`pyengine.ops.radius_search`), with ``k`` the MLP ``self.kernel``.

    Args:
        in_channels: ``C``, the width of ``f_y`` (and of the output, except for
            ``"nonlinear_kernelonly"`` with ``out_channels`` set).
        coord_dim: ``d``, the dimension of the points.
        hidden: widths of the kernel MLP's hidden layers (0 to 3 for the fused path).
        transform: ``"linear"`` (``k(x, y) * f``), ``"nonlinear"`` (``k(x, y, f) * f``),
            ``"linear_kernelonly"`` (``k(x, y)`` alone; ``f_y`` must be ``None``) or
            ``"nonlinear_kernelonly"`` (``k(x, y, f)``, not multiplied by ``f``).
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
        out_channels: output width of ``"nonlinear_kernelonly"`` (default ``in_channels``);
            the other transforms multiply by ``f_y`` and so output ``in_channels``.

    Attributes:
        kernel: ``torch.nn.Sequential`` of ``Linear`` and activation modules; input
            ``cat([x[row], y[col]])`` (``+ f_y[col]`` for the nonlinear transforms).

    The module docstring maps this layer to neuraloperator's ``IntegralTransform``.
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
        out_channels: int | None = None,
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
        if out_channels is not None and out_channels != in_channels and transform != "nonlinear_kernelonly":
            raise ValueError(f"out_channels ({out_channels}) may differ from in_channels ({in_channels}) only for "
                             f"transform 'nonlinear_kernelonly'; {transform!r} multiplies by f_y")
        if out_channels is not None and out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels or in_channels)
        self.coord_dim = int(coord_dim)
        self.transform = transform
        self.reduction = reduction
        self.activation = activation
        self.fused = bool(fused)
        feeds_f = transform in ("nonlinear", "nonlinear_kernelonly")
        widths = [2 * coord_dim + (in_channels if feeds_f else 0), *hidden, self.out_channels]
        layers: list[nn.Module] = []
        for l in range(len(widths) - 1):
            layers.append(nn.Linear(widths[l], widths[l + 1]))
            if l + 2 < len(widths):
                layers.append(_ACTIVATION_MODULES[activation]())
        self.kernel = nn.Sequential(*layers)

    @classmethod
    def from_neuralop(cls, block: nn.Module, coord_dim: int, reduction: str | None = None,
                      fused: bool = True) -> "GNOIntegral":
        """A ``GNOIntegral`` computing what neuraloperator's ``IntegralTransform`` ``block`` computes.

        Args:
            block: a trained ``neuralop.layers.integral_transform.IntegralTransform`` (or any
                module with ``transform_type`` and a ``channel_mlp`` holding Linear layers in
                ``fcs`` with GELU between them, as neuralop builds them).
            coord_dim: ``d`` of the points the block was trained on.
            reduction: default the block's ``reduction`` (what neuralop applies without
                weights); use ``"sum"`` to reproduce calls with weights (pass them as
                ``edge_weights``).
            fused: as in the constructor.

        The weights are copied (not shared); the first Linear layer's coordinate columns
        are swapped, because neuralop feeds ``[y, x]`` where pyengine feeds ``[x, y]``.
        """
        transform = getattr(block, "transform_type", None)
        mlp = getattr(block, "channel_mlp", None)
        fcs = getattr(mlp, "fcs", None)
        if transform not in _gno.TRANSFORMS or fcs is None or not all(type(m) is nn.Linear for m in fcs):
            raise TypeError("block must be a neuralop IntegralTransform whose channel_mlp is a LinearChannelMLP "
                            f"(Linear layers in .fcs); got {type(block).__name__}")
        if getattr(block, "weighting_fn", None) is not None:
            raise ValueError("blocks with a weighting_fn cannot be ported: apply it to the edge weights instead")
        reduction = getattr(block, "reduction", "sum") if reduction is None else reduction
        nonlin = getattr(mlp, "non_linearity", F.gelu)
        if nonlin is not F.gelu and len(fcs) > 1:
            raise ValueError(f"only GELU kernel MLPs can be ported (neuralop's default), got {nonlin}")
        first, last = fcs[0], fcs[-1]
        d = int(coord_dim)
        if transform in ("linear", "linear_kernelonly"):
            if first.in_features != 2 * d:
                raise ValueError(f"the block's first layer takes {first.in_features} inputs, not 2 * coord_dim = {2 * d}")
            in_ch = last.out_features
        else:
            in_ch = first.in_features - 2 * d
            if in_ch < 1:
                raise ValueError(f"the block's first layer takes {first.in_features} inputs: too few for coord_dim={d}")
        out_ch = last.out_features
        if transform == "linear_kernelonly":
            in_ch = out_ch
        layer = cls(in_ch, d, hidden=[m.out_features for m in fcs[:-1]], transform=transform, reduction=reduction,
                    fused=fused, out_channels=out_ch if transform == "nonlinear_kernelonly" else None)
        layer = layer.to(dtype=first.weight.dtype, device=first.weight.device)
        with torch.no_grad():
            for dst, src in zip(list(layer.kernel)[0::2], fcs):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
            w0 = list(layer.kernel)[0].weight
            w0[:, :d] = fcs[0].weight[:, d:2 * d]
            w0[:, d:2 * d] = fcs[0].weight[:, :d]
        return layer

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, coord_dim={self.coord_dim}, "
            f"transform={self.transform!r}, "
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
        edge_weights: Tensor | None = None,
    ) -> Tensor:
        """Integrate over each query's neighbors.

        Args:
            y: ``(N, d)`` source points.  x: ``(M, d)`` query points (same unit).
            row_ptr: ``(M + 1,)`` int64; col: ``(E,)`` int64/int32 into ``y``.
            f_y: ``(N, C)`` features at ``y`` (``None`` for ``"linear_kernelonly"``).
            weights: ``(N,)`` quadrature weights at ``y`` (e.g. cell volumes), or None.
            edge_weights: ``(E,)`` weights per edge in CSR order (attention weights,
                per-edge integration weights), or None.

        Returns:
            ``(M, out_channels)``.
        """
        if self.transform == "linear_kernelonly":
            if f_y is not None:
                raise ValueError("transform 'linear_kernelonly' does not use f_y; pass f_y=None")
        elif f_y is None:
            raise ValueError(f"transform {self.transform!r} needs f_y of shape (N, {self.in_channels})")
        if not self.fused:
            return self.plain_forward(y, x, row_ptr, col, f_y, weights, edge_weights)
        ws, bs, act = self._fused_layers()
        return _gno.gno_integral(y, x, row_ptr, col, f_y, weights, ws, bs, act, self.transform, self.reduction,
                                 edge_weights=edge_weights)

    def plain_forward(self, y, x, row_ptr, col, f_y=None, weights=None, edge_weights=None) -> Tensor:
        """The unfused gather -> MLP -> multiply -> scatter (what peers write); materialises E x hidden."""
        rows = row_index(row_ptr, col.shape[0])
        col = col.long()
        z = [x.index_select(0, rows), y.index_select(0, col)]
        if self.transform in ("nonlinear", "nonlinear_kernelonly"):
            z.append(f_y.index_select(0, col))
        msg = self.kernel(torch.cat(z, dim=1))
        if self.transform in ("linear", "nonlinear"):
            msg = msg * f_y.index_select(0, col)
        if weights is not None:
            msg = msg * weights.index_select(0, col).unsqueeze(1)
        if edge_weights is not None:
            msg = msg * edge_weights.unsqueeze(1)
        return segment_reduce(msg, row_ptr, self.reduction)
