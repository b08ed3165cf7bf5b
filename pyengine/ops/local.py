"""Fused basis-weighted neighbor sums for local (DISCO-style) integral kernels.

For a CSR neighbor structure (``row_ptr`` ``(M + 1,)``, ``col`` ``(E,)``), per-edge
basis values ``psi`` ``(E, B)``, source features ``f`` ``(N, C)`` and optional
quadrature weights ``w`` ``(N,)``::

    a[i, b, :] = sum_{e in row i} psi[e, b] * w[col_e] * f[col_e, :]      -> (M, B, C)

A local integral layer then contracts ``a`` with its learned coefficients
``theta`` ``(B, C, C_out)`` in one dense matmul. The op never forms the per-edge
``(E, C)`` messages (or ``(E, B, C)``), forward or backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine


def local_basis_aggregate(psi: Tensor, f: Tensor, row_ptr: Tensor, col: Tensor, weights: Tensor | None = None) -> Tensor:
    """Per-row basis-weighted sums of gathered source features.

    Args:
        psi: ``(E, B)`` basis values per edge (same dtype as ``f``).
        f: ``(N, C)`` source features.
        row_ptr: ``(M + 1,)`` int64 CSR row pointer; col: ``(E,)`` int64/int32 in ``[0, N)``.
        weights: optional ``(N,)`` quadrature weight per source point (e.g. cell
            area or volume); ``None`` means all ones.

    Returns:
        ``(M, B, C)``; rows without edges give zeros. Differentiable in ``psi``,
        ``f`` and ``weights``.
    """
    for name, t in (("psi", psi), ("f", f)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return _ops.local_basis_aggregate(row_ptr, col, psi, f, weights)


@torch.library.register_fake("pyengine::local_basis_aggregate")
def _local_fake(row_ptr, col, psi, f, weights):
    return f.new_empty((row_ptr.shape[0] - 1, psi.shape[1], f.shape[1]))


def _local_setup(ctx, inputs, output):
    row_ptr, col, psi, f, weights = inputs
    ctx.save_for_backward(row_ptr, col, psi, f, weights)


def _local_backward(ctx, grad_out):
    row_ptr, col, psi, f, weights = ctx.saved_tensors
    need_psi, need_f = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
    need_w = weights is not None and ctx.needs_input_grad[4]
    row_ptr_t, col_t, perm = _ops.csr_transpose(row_ptr, col, f.shape[0])
    gpsi, gf, gw = _ops.local_basis_aggregate_backward(grad_out.contiguous(), row_ptr, col, row_ptr_t, col_t, perm,
                                                       psi, f, weights, need_psi, need_f, need_w)
    return None, None, (gpsi if need_psi else None), (gf if need_f else None), (gw if need_w else None)


torch.library.register_autograd("pyengine::local_basis_aggregate", _local_backward, setup_context=_local_setup)


@torch.library.register_fake("pyengine::local_basis_aggregate_backward")
def _local_backward_fake(grad_out, row_ptr, col, row_ptr_t, col_t, perm, psi, f, weights, need_psi, need_f,
                         need_weights):
    need_weights = need_weights and weights is not None
    return (
        psi.new_empty((psi.shape[0] if need_psi else 0, psi.shape[1])),
        f.new_empty((f.shape[0] if need_f else 0, f.shape[1])),
        f.new_empty((f.shape[0] if need_weights else 0,)),
    )


def _no_double_backward(ctx, *grads):
    raise NotImplementedError("double backward (create_graph=True) through local_basis_aggregate is not supported")


# Registered so that differentiating the backward raises instead of silently giving zeros.
torch.library.register_autograd("pyengine::local_basis_aggregate_backward", _no_double_backward,
                                setup_context=lambda ctx, inputs, output: None)
