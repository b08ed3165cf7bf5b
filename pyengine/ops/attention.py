"""Fused CSR attention: softmax-weighted aggregation over each row's neighbors.

For a CSR neighbor structure (``row_ptr`` ``(M + 1,)`` int64, ``col`` ``(E,)``
int64/int32 in ``[0, N)``, e.g. from :func:`pyengine.ops.radius_search`), every
query row ``i`` and head ``h``::

    s_e          = scale * <q[i, h], k[col_e, h]> + bias[e, h]        (bias optional)
    out[i, h, :] = sum_{e in row i} softmax_e(s)[e] * v[col_e, h, :]

Keys and values are given per *source point* ``(N, H, D)``, never per edge, so
the op reads O(E) indices and O((M + N) H D) features and writes O(M H D): no
``E x H x D`` tensor exists in forward or backward. A per-edge relative-position
term that is linear in ``y_j - x_i`` folds into per-source keys and values
exactly (see :class:`pyengine.nn.AttentionAggregation`); arbitrary per-edge
scores (masks, distance penalties) go through ``bias``.

Forward is one pass with an online softmax; backward recomputes the
probabilities from the saved per-row log-sum-exp (as flash attention does) in a
row pass (``grad_q``, ``grad_bias``) and a pass over the transposed CSR
(``grad_k``, ``grad_v``), both gathers, so results are deterministic.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def csr_attention(q: Tensor, k: Tensor, v: Tensor, row_ptr: Tensor, col: Tensor, bias: Tensor | None = None,
                  scale: float | None = None, return_lse: bool = False):
    """Multi-head softmax attention of each query over its CSR neighbors.

    Args:
        q: ``(M, H, Dk)`` queries, one per CSR row.
        k: ``(N, H, Dk)`` keys, one per source point.
        v: ``(N, H, Dv)`` values, one per source point.
        row_ptr: ``(M + 1,)`` int64 CSR row pointer.
        col: ``(E,)`` int64/int32 source index of every edge.
        bias: optional ``(E, H)`` additive score per edge and head; ``-inf`` masks an edge.
        scale: score scale, default ``1 / sqrt(Dk)``.
        return_lse: also return the per-row log-sum-exp ``(M, H)`` (float32, or
            float64 for float64 inputs).

    Returns:
        ``out`` ``(M, H, Dv)`` (and ``lse`` if asked). Rows without edges, or
        whose edges are all masked, give zeros (and ``lse = -inf``), not NaN.
        Differentiable in ``q``, ``k``, ``v``, ``bias`` (and through ``lse``).
        float32/float64/float16/bfloat16 (half types accumulate in float32).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(f"{name} must be 3-D (rows, heads, dim), got shape {tuple(t.shape)}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[2]) if q.shape[2] > 0 else 1.0
    out, lse = _ops.csr_attention(row_ptr, col, q, k, v, bias, float(scale))
    return (out, lse) if return_lse else out


@torch.library.register_fake("pyengine::csr_attention")
def _csr_attention_fake(row_ptr, col, q, k, v, bias, scale):
    M, H = q.shape[0], q.shape[1]
    return q.new_empty((M, H, v.shape[2])), q.new_empty((M, H), dtype=_acc_dtype(q.dtype))


def _csr_attention_setup(ctx, inputs, output):
    row_ptr, col, q, k, v, bias, scale = inputs
    out, lse = output
    ctx.scale = scale
    ctx.save_for_backward(row_ptr, col, q, k, v, bias, out, lse)


def _csr_attention_backward(ctx, grad_out, grad_lse):
    row_ptr, col, q, k, v, bias, out, lse = ctx.saved_tensors
    acc = _acc_dtype(q.dtype)
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    grad_out = grad_out.contiguous()
    # delta_i = <dO_i, O_i> - dL/dlse_i: the softmax backward's per-row term.
    delta = (grad_out.to(acc) * out.to(acc)).sum(-1)
    if grad_lse is not None:
        delta = delta - torch.where(torch.isfinite(lse), grad_lse.to(acc), torch.zeros_like(delta))
    row_ptr_t, col_t, perm = _ops.csr_transpose(row_ptr, col, k.shape[0])
    gq, gk, gv, gb = _ops.csr_attention_backward(grad_out, row_ptr, col, row_ptr_t, col_t, perm, q, k, v, bias,
                                                 lse, delta.contiguous(), ctx.scale)
    return None, None, gq, gk, gv, (gb if bias is not None else None), None


torch.library.register_autograd("pyengine::csr_attention", _csr_attention_backward,
                                setup_context=_csr_attention_setup)


@torch.library.register_fake("pyengine::csr_attention_backward")
def _csr_attention_backward_fake(grad_out, row_ptr, col, row_ptr_t, col_t, perm, q, k, v, bias, lse, delta, scale):
    gb = torch.empty_like(bias) if bias is not None else q.new_empty((0,))
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), gb


def _no_double_backward(ctx, *grads):
    raise NotImplementedError("double backward (create_graph=True) through csr_attention is not supported")


# Registered so that differentiating the backward raises instead of silently giving zeros.
torch.library.register_autograd("pyengine::csr_attention_backward", _no_double_backward,
                                setup_context=lambda ctx, inputs, output: None)
