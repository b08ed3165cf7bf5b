"""Fused GNO kernel integral (``torch.ops.pyengine.gno_integral``).

For a CSR neighbor graph (``row_ptr``, ``col``) from :func:`pyengine.ops.radius_search`
with query points ``x`` (rows) and source points ``y`` (columns)::

    out_i = reduce_{e in row i} k(z_e) * f_y[col_e] * weights[col_e] * edge_weights[e]
    z_e   = cat([x[i], y[col_e]])                  ("linear", "linear_kernelonly")
          = cat([x[i], y[col_e], f_y[col_e]])      ("nonlinear", "nonlinear_kernelonly")

``k`` is an MLP ``Linear -> act -> ... -> Linear`` (no activation after the last
layer) given by its weights and biases. The ``"kernelonly"`` transforms drop the
factor ``f_y[col_e]``: ``out_i = reduce k(z_e) * weights[col_e] * edge_weights[e]``
(``"linear_kernelonly"`` takes no ``f_y`` at all; ``"nonlinear_kernelonly"`` feeds
it to ``k`` only, so ``k``'s output width may differ from ``f_y``'s). ``weights``
are per source point (quadrature weights), ``edge_weights`` per edge (attention
weights such as GAOT's MAGNO softmax, or per-edge integration weights as in
neuralop); either may be omitted. ``reduce`` is ``"sum"`` or ``"mean"`` (mean
divides by the row's edge count; empty rows give 0).

The kernel evaluates the MLP per edge and reduces on the fly; nothing of size
``E x hidden`` or ``E x C`` is stored, and backward recomputes the per-edge
activations. Gradients flow to ``y``, ``x``, ``f_y``, ``weights``, ``edge_weights``
and every MLP weight and bias. Double backward is not supported.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine

TRANSFORMS = ("linear", "nonlinear", "linear_kernelonly", "nonlinear_kernelonly")
REDUCTIONS = ("sum", "mean")
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
MAX_HIDDEN_LAYERS = 3


def pack_mlp(mlp_weights: Sequence[Tensor], mlp_biases: Sequence[Tensor]) -> tuple[Tensor, list[int]]:
    """Flatten Linear layers into the fused op's ``(params, dims)`` (differentiable).

    Args:
        mlp_weights: per layer ``(out_l, in_l)`` as ``torch.nn.Linear.weight``.
        mlp_biases: per layer ``(out_l,)``.

    Returns:
        ``params`` (1-D: weight row-major then bias, layer by layer) and
        ``dims = [in_0, out_0, out_1, ...]``.
    """
    if len(mlp_weights) != len(mlp_biases) or not mlp_weights:
        raise ValueError(
            f"need one bias per weight and at least one layer, got {len(mlp_weights)} weights "
            f"and {len(mlp_biases)} biases"
        )
    if len(mlp_weights) > MAX_HIDDEN_LAYERS + 1:
        raise ValueError(
            f"the fused GNO kernel supports at most {MAX_HIDDEN_LAYERS} hidden layers "
            f"({MAX_HIDDEN_LAYERS + 1} Linear layers), got {len(mlp_weights)} Linear layers"
        )
    dims = [int(mlp_weights[0].shape[1])]
    parts = []
    for l, (w, b) in enumerate(zip(mlp_weights, mlp_biases)):
        if w.dim() != 2 or b.dim() != 1 or b.shape[0] != w.shape[0] or w.shape[1] != dims[-1]:
            raise ValueError(
                f"layer {l}: weight {tuple(w.shape)} and bias {tuple(b.shape)} do not chain "
                f"(expected weight (out, {dims[-1]}) and bias (out,))"
            )
        dims.append(int(w.shape[0]))
        parts += [w.reshape(-1), b]
    return torch.cat(parts), dims


def gno_integral(
    y: Tensor,
    x: Tensor,
    row_ptr: Tensor,
    col: Tensor,
    f_y: Tensor | None,
    weights: Tensor | None,
    mlp_weights: Sequence[Tensor],
    mlp_biases: Sequence[Tensor],
    activation: str = "gelu",
    transform: str = "linear",
    reduction: str = "sum",
    *,
    edge_weights: Tensor | None = None,
) -> Tensor:
    """Fused GNO kernel integral (see the module docstring for the formula).

    Args:
        y: ``(N, d)`` source points (same unit as ``x``).
        x: ``(M, d)`` query points; row ``i`` of the graph belongs to ``x[i]``.
        row_ptr: ``(M + 1,)`` int64 CSR row pointer over the ``E`` edges.
        col: ``(E,)`` int64/int32 indices into ``y``.
        f_y: ``(N, C)`` features at ``y`` (``None`` for ``"linear_kernelonly"``).
        weights: ``(N,)`` quadrature weights at ``y``, or ``None`` for all ones.
        mlp_weights, mlp_biases: the kernel MLP's Linear layers (1 to 4 of them);
            the first takes ``2 d`` inputs (``2 d + C_f`` for the nonlinear
            transforms, ``C_f = f_y.shape[1]``), the last gives ``C`` outputs
            (``C = C_f`` unless the transform is ``"nonlinear_kernelonly"``).
        activation: ``"gelu"`` (exact, erf), ``"relu"``, ``"silu"`` or ``"tanh"``,
            applied after every Linear but the last.
        transform: ``"linear"``, ``"nonlinear"``, ``"linear_kernelonly"`` or
            ``"nonlinear_kernelonly"``.
        reduction: ``"sum"`` or ``"mean"``.
        edge_weights: ``(E,)`` weights per edge (in CSR order), or ``None``.

    Returns:
        ``(M, C)``, float32 or float64 like the inputs (under ``torch.autocast``,
        bf16/fp16 inputs are computed in float32).

    Precision on CUDA follows PyTorch's float32 matmul setting: by default the
    kernels use exact float32 FMA; with ``torch.backends.cuda.matmul.allow_tf32 =
    True`` (or ``torch.set_float32_matmul_precision("high")``) the per-edge MLP runs
    on tensor cores with TF32 products and float32 accumulation (about 1e-3
    relative error, several times faster). float64 is always exact.
    """
    for name, t in (("y", y), ("x", x), ("row_ptr", row_ptr), ("col", col)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    params, dims = pack_mlp(mlp_weights, mlp_biases)
    return _ops.gno_integral(y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform,
                             reduction)


@torch.library.register_fake("pyengine::gno_integral")
def _gno_integral_fake(y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction):
    return y.new_empty((x.shape[0], dims[-1]))


def _gno_setup(ctx, inputs, output):
    y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction = inputs
    ctx.config = (list(dims), activation, transform, reduction)
    ctx.save_for_backward(y, x, row_ptr, col, f_y, weights, edge_weights, params)


def _gno_backward(ctx, grad_out):
    y, x, row_ptr, col, f_y, weights, edge_weights, params = ctx.saved_tensors
    dims, activation, transform, reduction = ctx.config
    ng = ctx.needs_input_grad
    need = [bool(ng[0]), bool(ng[1]), f_y is not None and bool(ng[4]), weights is not None and bool(ng[5]),
            edge_weights is not None and bool(ng[6])]
    g_y, g_x, g_f, g_w, g_ew, g_p = _ops.gno_integral_backward(
        grad_out.contiguous(), y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform,
        reduction, need
    )
    pick = lambda flag, g: g if flag else None  # noqa: E731
    return (
        pick(need[0], g_y),
        pick(need[1], g_x),
        None,
        None,
        pick(need[2], g_f),
        pick(need[3], g_w),
        pick(need[4], g_ew),
        g_p if ng[7] else None,
        None,
        None,
        None,
        None,
    )


torch.library.register_autograd("pyengine::gno_integral", _gno_backward, setup_context=_gno_setup)

# Under torch.autocast (bf16 training) features reach the op in bf16 while the
# coordinates stay float32; the kernels compute in float32 anyway, so autocast
# casts the reduced-precision inputs up (float64 inputs are left alone).
if hasattr(torch.library, "register_autocast"):  # torch >= 2.5
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast("pyengine::gno_integral", _device, torch.float32)


@torch.library.register_fake("pyengine::gno_integral_backward")
def _gno_integral_backward_fake(
    grad_out, y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction, need
):
    def maybe(flag, like, shape):
        return like.new_empty(shape) if flag and like is not None else y.new_empty((0,))

    return (
        maybe(need[0], y, y.shape),
        maybe(need[1], x, x.shape),
        maybe(need[2], f_y, f_y.shape if f_y is not None else (0,)),
        maybe(need[3], weights, weights.shape if weights is not None else (0,)),
        maybe(need[4], edge_weights, edge_weights.shape if edge_weights is not None else (0,)),
        params.new_empty(params.shape),
    )


# Double backward is not implemented: without this registration torch would only warn
# and return wrong (missing) second derivatives, so backpropagating through the
# backward op raises instead.
def _gno_backward_backward(ctx, *grads):
    raise RuntimeError(
        "double backward through pyengine.ops.gno_integral is not supported (the fused kernel has no "
        "second-derivative kernel); use GNOIntegral(..., fused=False) for higher-order gradients"
    )


torch.library.register_autograd("pyengine::gno_integral_backward", _gno_backward_backward)
