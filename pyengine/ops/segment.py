"""CSR segment ops: reductions, softmax and sparse-dense products.

A CSR structure over ``M`` rows and ``E`` edges is ``row_ptr``: int64, shape
``(M + 1,)``, ``row_ptr[0] == 0``, non-decreasing, ``row_ptr[-1] == E``; row ``i``
owns edges ``row_ptr[i]:row_ptr[i + 1]``. Graph ops in pyengine return neighbor
lists in this form, sorted by query (row). Column indices ``col`` are int64 or
int32, shape ``(E,)``.

Values may be float32 or float64 (and float16 / bfloat16, accumulated in float32),
on CPU or CUDA. Extra trailing feature dimensions are allowed: ``src`` of shape
``(E, *F)`` reduces to ``(M, *F)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine
_REDUCTIONS = ("sum", "mean", "max", "min")


def _flatten_features(t: Tensor, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 0:
        raise ValueError(f"{name} must have a leading edge dimension, got a scalar")
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))  # explicit: -1 is ambiguous when E == 0


# --------------------------------------------------------------------------- segment_reduce


def segment_reduce(src: Tensor, row_ptr: Tensor, reduce: str = "sum", *,
                   return_arg: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Reduce per-edge values over each CSR row.

    Args:
        src: ``(E, *F)`` values, one per edge; with a batched ``row_ptr`` ``(B, M + 1)``,
            ``(B, E, *F)`` (torch_scatter's ``segment_csr`` over the leading dimensions).
        row_ptr: ``(M + 1,)`` int64 CSR row pointer, ``row_ptr[-1] == E``, or ``(B, M + 1)``
            with every row starting at 0 and ending at ``E``. An empty ``row_ptr`` (no rows)
            on an empty ``src`` gives an empty ``(0, *F)`` result.
        reduce: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.
        return_arg: for ``"max"`` / ``"min"``, also return the winning edge of every output
            entry (int64, the shape of the output; ``E`` for empty rows, as torch_scatter).

    Returns:
        ``(M, *F)`` (or ``(B, M, *F)``), and the arg tensor with ``return_arg``. Empty rows
        give 0. Integer sums are exact modulo 2^64 and stored in ``src``'s dtype, so a row
        whose sum leaves the dtype's range wraps around (two's complement), as ``torch.sum``
        of int64 and ``scatter_add_`` of int32 do; they never raise. Differentiable in
        floating ``src``: sum and mean broadcast the gradient over the row; max and min
        route it to the winning edge (the lowest edge index on ties; NaN wins, as in
        ``torch.max``).
    """
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    if return_arg and reduce not in ("max", "min"):
        raise ValueError(f"return_arg needs reduce='max' or 'min', got {reduce!r}")
    if isinstance(row_ptr, Tensor) and row_ptr.dim() == 2:
        return _segment_reduce_batched(src, row_ptr, reduce, return_arg)
    if (isinstance(row_ptr, Tensor) and row_ptr.dim() == 1 and row_ptr.numel() == 0
            and isinstance(src, Tensor) and src.dim() >= 1 and src.shape[0] == 0):
        out = src.new_zeros((0,) + tuple(src.shape[1:]))
        return (out, out.new_zeros(out.shape, dtype=torch.long)) if return_arg else out
    flat = _flatten_features(src, "src")
    # The winning edges are kept (an (M, *F) int64 tensor) only when backward will need them.
    need_arg = return_arg or (torch.is_grad_enabled() and src.requires_grad)
    out, arg = _ops.segment_reduce(flat, row_ptr, reduce, need_arg)
    out = out.reshape((out.shape[0],) + tuple(src.shape[1:]))
    if not return_arg:
        return out
    arg = torch.where(arg < 0, torch.full_like(arg, flat.shape[0]), arg)
    return out, arg.reshape(out.shape)


def _segment_reduce_batched(src: Tensor, indptr: Tensor, reduce: str, return_arg: bool):
    """segment_reduce over B independent CSR structures (B, M + 1) on src (B, E, *F): one flat call."""
    if not isinstance(src, Tensor) or src.dim() < 2:
        raise ValueError("row_ptr of shape (B, M + 1) needs src of shape (B, E, *F)")
    b, m1 = indptr.shape
    if src.shape[0] != b:
        raise ValueError(f"row_ptr of shape (B, M + 1) = {tuple(indptr.shape)} needs src of shape (B, E, *F) "
                         f"with B = {b}, got {tuple(src.shape)}")
    if m1 < 1:
        raise ValueError("row_ptr must have shape (B, M + 1) with M + 1 >= 1")
    e = src.shape[1]
    if indptr.dtype != torch.int64:
        raise TypeError(f"row_ptr must be int64, got {indptr.dtype}")
    if m1 == 1:  # no rows
        out = src.new_zeros((b, 0) + tuple(src.shape[2:]))
        return (out, out.new_zeros(out.shape, dtype=torch.long)) if return_arg else out
    if not torch.compiler.is_compiling() and b:
        if bool((indptr[:, 0] != 0).any()) or bool((indptr[:, -1] != e).any()):
            raise ValueError(f"every row of a batched row_ptr must start at 0 and end at E = {e}")
    offsets = torch.arange(b, device=indptr.device).unsqueeze(1) * e
    flat_ptr = torch.cat([(indptr[:, :-1] + offsets).reshape(-1), indptr.new_full((1,), b * e)])
    res = segment_reduce(src.reshape((b * e,) + tuple(src.shape[2:])), flat_ptr, reduce, return_arg=return_arg)
    shape = (b, m1 - 1) + tuple(src.shape[2:])
    if not return_arg:
        return res.reshape(shape)
    out, arg = res
    arg = arg.reshape(shape)
    # global edge -> edge within its batch; empty rows (b * E) -> E
    local = arg - offsets.reshape((b,) + (1,) * (arg.dim() - 1))
    return out.reshape(shape), torch.where(arg >= b * e, torch.full_like(arg, e), local)


@torch.library.register_fake("pyengine::segment_reduce")
def _segment_reduce_fake(src, row_ptr, reduce, need_arg=True):
    num_rows = row_ptr.shape[0] - 1
    out = src.new_empty((num_rows, src.shape[1]))
    arg_shape = (num_rows, src.shape[1]) if need_arg and reduce in ("max", "min") else (0,)
    return out, src.new_empty(arg_shape, dtype=torch.long)


def _segment_reduce_setup(ctx, inputs, output):
    src, row_ptr, reduce = inputs[:3]
    ctx.reduce = reduce
    ctx.num_edges = src.shape[0]
    ctx.save_for_backward(row_ptr, output[1])


def _segment_reduce_backward(ctx, grad_out, _grad_arg):
    row_ptr, arg = ctx.saved_tensors
    if ctx.reduce in ("max", "min") and arg.dim() == 1 and grad_out.numel() > 0:
        raise RuntimeError(
            f"segment_reduce(reduce={ctx.reduce!r}) was run with need_arg=False, so it kept no winning "
            "edges to route the gradient to; call it with need_arg=True (pyengine.ops.segment_reduce "
            "does this whenever src requires grad)"
        )
    grad_src = _ops.segment_reduce_backward(grad_out.contiguous(), row_ptr, arg, ctx.reduce, ctx.num_edges)
    return grad_src, None, None, None


torch.library.register_autograd(
    "pyengine::segment_reduce", _segment_reduce_backward, setup_context=_segment_reduce_setup
)


@torch.library.register_fake("pyengine::segment_reduce_backward")
def _segment_reduce_backward_fake(grad_out, row_ptr, arg, reduce, num_edges):
    return grad_out.new_empty((num_edges, grad_out.shape[1]))


# segment_reduce_backward is linear in grad_out; its adjoint gives double backward.
def _segment_reduce_backward_setup(ctx, inputs, output):
    _grad_out, row_ptr, arg, reduce, _num_edges = inputs
    ctx.reduce = reduce
    ctx.save_for_backward(row_ptr, arg)


def _segment_reduce_backward_backward(ctx, grad_grad_src):
    row_ptr, arg = ctx.saved_tensors
    if ctx.reduce in ("sum", "mean"):
        grad_grad_out, _ = _ops.segment_reduce(grad_grad_src.contiguous(), row_ptr, ctx.reduce)
    elif grad_grad_src.shape[0] == 0:
        grad_grad_out = grad_grad_src.new_zeros(arg.shape)
    else:
        picked = torch.gather(grad_grad_src, 0, arg.clamp(min=0))
        grad_grad_out = torch.where(arg >= 0, picked, torch.zeros_like(picked))
    return grad_grad_out, None, None, None, None


torch.library.register_autograd(
    "pyengine::segment_reduce_backward",
    _segment_reduce_backward_backward,
    setup_context=_segment_reduce_backward_setup,
)


# --------------------------------------------------------------------------- (log-)softmax


def segment_softmax(scores: Tensor, row_ptr: Tensor) -> Tensor:
    """Softmax of per-edge scores within each CSR row (numerically stable).

    Args:
        scores: ``(E,)`` or ``(E, H)`` (e.g. one column per attention head).
        row_ptr: ``(M + 1,)`` int64 CSR row pointer.

    Returns:
        The same shape as ``scores``; each row's entries sum to 1 per head. A row
        whose scores are all ``-inf`` (fully masked) gives zeros, not NaN.
    """
    flat = _flatten_features(scores, "scores")
    return _ops.segment_softmax(flat, row_ptr).reshape(scores.shape)


def segment_log_softmax(scores: Tensor, row_ptr: Tensor) -> Tensor:
    """Log-softmax of per-edge scores within each CSR row (numerically stable).

    Args:
        scores: ``(E, *H)``.
        row_ptr: ``(M + 1,)`` int64 CSR row pointer.

    Returns:
        The same shape as ``scores``: ``scores - max_row - log(sum_row exp(scores - max_row))``.
        A row whose scores are all ``-inf`` gives ``-inf`` (the log of
        :func:`segment_softmax`'s zeros). Differentiable twice in ``scores``.
    """
    flat = _flatten_features(scores, "scores")
    return _ops.segment_log_softmax(flat, row_ptr).reshape(scores.shape)


def index_softmax(src: Tensor, index: Tensor, num_nodes: int, *, log: bool = False) -> Tensor:
    """(Log-)softmax of ``src`` over the groups of an unsorted ``index``, without sorting.

    Args:
        src: ``(E, *H)`` floating values.
        index: ``(E,)`` int64 (or int32) group of every entry, in ``[0, num_nodes)``, any order.
        num_nodes: number of groups.
        log: log-softmax instead of softmax.

    Returns:
        The shape of ``src``. Same values and conventions as :func:`segment_softmax` /
        :func:`segment_log_softmax` on the sorted form (a group of only ``-inf`` gives 0 /
        ``-inf``). Three passes over the entries (group maxima, sums, outputs): no argsort.
        Differentiable twice in ``src``.
    """
    flat = _flatten_features(src, "src")
    if not isinstance(index, Tensor):
        raise TypeError(f"index must be a torch.Tensor, got {type(index).__name__}")
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"index must be int64 or int32, got {index.dtype}")
    return _ops.index_softmax(flat, index.long(), int(num_nodes), bool(log)).reshape(src.shape)


# Both layouts (CSR rows, or an unsorted index) and both flavours share one autograd
# formula. With y the output, g its gradient and S(v) the group sum of v broadcast to the
# group's entries:
#   softmax:      grad = y (g - S(g y));  d/dg: y (gg - S(gg y)),  d/dy: gg (g - S(g y)) - g S(gg y)
#   log-softmax:  grad = g - e^y S(g);    d/dg: gg - S(e^y gg),    d/dy: -gg e^y S(g)
def _expand_rows(row_values: Tensor, row_ptr: Tensor, num_edges: int) -> Tensor:
    """Broadcast per-row values (M, C) to the rows' edges (E, C) (the adjoint of a segment sum)."""
    no_arg = row_ptr.new_empty((0,))
    return _ops.segment_reduce_backward(row_values.contiguous(), row_ptr, no_arg, "sum", num_edges)


def _csr_group_sum(v: Tensor, row_ptr: Tensor) -> Tensor:
    s, _ = _ops.segment_reduce(v.contiguous(), row_ptr, "sum")
    return _expand_rows(s, row_ptr, v.shape[0])


def _index_group_sum(v: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    # S(v) from the kernel itself: log-softmax's backward with y = 0 is g - S(g)
    return v - _ops.index_softmax_backward(v.contiguous(), torch.zeros_like(v), index, num_nodes, True)


def _softmax_double_backward(g, y, gg, group_sum, log: bool):
    if log:
        p = torch.exp(y)
        return gg - group_sum(p * gg), -gg * p * group_sum(g)
    s_gy, s_ggy = group_sum(g * y), group_sum(gg * y)
    return y * (gg - s_ggy), gg * (g - s_gy) - g * s_ggy


def _register_softmax_autograd(name: str, log: bool | None, csr: bool) -> None:
    """Fake kernels and autograd (twice differentiable) of pyengine::{name} and {name}_backward."""
    op, backward = getattr(_ops, name), getattr(_ops, name + "_backward")

    def fake(src, group, *extra):
        return torch.empty_like(src)

    def setup(ctx, inputs, output):
        ctx.extra = tuple(inputs[2:])
        ctx.save_for_backward(output, inputs[1])

    def grad_fn(ctx, grad_out):
        out, group = ctx.saved_tensors
        return (backward(grad_out.contiguous(), out, group, *ctx.extra), None) + (None,) * len(ctx.extra)

    def backward_fake(grad_out, out, group, *extra):
        return torch.empty_like(out)

    def backward_setup(ctx, inputs, output):
        grad_out, out, group = inputs[:3]
        ctx.extra = tuple(inputs[3:])
        ctx.save_for_backward(grad_out, out, group)

    def backward_grad_fn(ctx, gg):
        g, y, group = ctx.saved_tensors
        if csr:
            def group_sum(v):
                return _csr_group_sum(v, group)
        else:
            def group_sum(v):
                return _index_group_sum(v, group, ctx.extra[0])
        d_g, d_y = _softmax_double_backward(g, y, gg, group_sum, bool(ctx.extra[1]) if log is None else log)
        return (d_g, d_y, None) + (None,) * len(ctx.extra)

    torch.library.register_fake(f"pyengine::{name}", fake)
    torch.library.register_autograd(f"pyengine::{name}", grad_fn, setup_context=setup)
    torch.library.register_fake(f"pyengine::{name}_backward", backward_fake)
    torch.library.register_autograd(f"pyengine::{name}_backward", backward_grad_fn, setup_context=backward_setup)


_register_softmax_autograd("segment_softmax", log=False, csr=True)
_register_softmax_autograd("segment_log_softmax", log=True, csr=True)
_register_softmax_autograd("index_softmax", log=None, csr=False)  # log: the op's own argument


# --------------------------------------------------------------------------- spmm / sddmm / transpose


def spmm(row_ptr: Tensor, col: Tensor, values: Tensor | None, x: Tensor) -> Tensor:
    """Sparse (CSR) times dense: ``out[i] = sum_{e in row i} values[e] * x[col[e]]``.

    The gather-scatter of message passing, without materialising the ``(E, C)``
    messages.

    Args:
        row_ptr: ``(M + 1,)`` int64 CSR row pointer.
        col: ``(E,)`` int64 or int32 column indices in ``[0, N)``.
        values: ``(E,)`` edge weights, or ``None`` for all ones. Same dtype as ``x``.
        x: ``(N, *F)`` dense features.

    Returns:
        ``(M, *F)``. Differentiable in ``values`` and ``x``.
    """
    flat = _flatten_features(x, "x")
    out = _ops.spmm(row_ptr, col, values, flat)
    return out.reshape((out.shape[0],) + tuple(x.shape[1:]))


@torch.library.register_fake("pyengine::spmm")
def _spmm_fake(row_ptr, col, values, x):
    return x.new_empty((row_ptr.shape[0] - 1, x.shape[1]))


def _spmm_transposed(row_ptr, col, num_cols, edge_values, dense):
    """``A^T @ dense`` for the CSR pattern ``(row_ptr, col)`` with edge weights ``edge_values`` (or ones)."""
    row_ptr_t, col_t, perm = _ops.csr_transpose(row_ptr, col, num_cols)
    values_t = None if edge_values is None else edge_values.index_select(0, perm)
    return _ops.spmm(row_ptr_t, col_t, values_t, dense)


def _spmm_setup(ctx, inputs, output):
    row_ptr, col, values, x = inputs
    ctx.num_cols = x.shape[0]
    ctx.save_for_backward(row_ptr, col, values, x)


def _spmm_backward(ctx, grad_out):
    row_ptr, col, values, x = ctx.saved_tensors
    grad_out = grad_out.contiguous()
    grad_values = grad_x = None
    if values is not None and ctx.needs_input_grad[2]:
        grad_values = _ops.csr_sddmm(row_ptr, col, grad_out, x)
    if ctx.needs_input_grad[3]:
        grad_x = _spmm_transposed(row_ptr, col, ctx.num_cols, values, grad_out)
    return None, None, grad_values, grad_x


torch.library.register_autograd("pyengine::spmm", _spmm_backward, setup_context=_spmm_setup)


def sddmm(row_ptr: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Sampled dense-dense product: ``out[e] = <a[row(e)], b[col[e]]>`` for every edge.

    Args:
        row_ptr: ``(M + 1,)`` int64; col: ``(E,)`` int64/int32 in ``[0, N)``.
        a: ``(M, C)``; b: ``(N, C)``, same dtype.

    Returns:
        ``(E,)``. Differentiable in ``a`` and ``b`` (it is also the backward of
        :func:`spmm` in ``values``, so :func:`spmm` supports double backward).
    """
    return _ops.csr_sddmm(row_ptr, col, a, b)


@torch.library.register_fake("pyengine::csr_sddmm")
def _csr_sddmm_fake(row_ptr, col, a, b):
    return b.new_empty((col.shape[0],))


def _csr_sddmm_setup(ctx, inputs, output):
    row_ptr, col, a, b = inputs
    ctx.num_cols = b.shape[0]
    ctx.save_for_backward(row_ptr, col, a, b)


def _csr_sddmm_backward(ctx, grad_out):
    row_ptr, col, a, b = ctx.saved_tensors
    grad_out = grad_out.contiguous()
    grad_a = grad_b = None
    if ctx.needs_input_grad[2]:
        grad_a = _ops.spmm(row_ptr, col, grad_out, b)
    if ctx.needs_input_grad[3]:
        grad_b = _spmm_transposed(row_ptr, col, ctx.num_cols, grad_out, a)
    return None, None, grad_a, grad_b


torch.library.register_autograd("pyengine::csr_sddmm", _csr_sddmm_backward, setup_context=_csr_sddmm_setup)


def csr_transpose(row_ptr: Tensor, col: Tensor, num_cols: int) -> tuple[Tensor, Tensor, Tensor]:
    """Transpose an ``M x num_cols`` CSR pattern.

    Returns:
        ``(row_ptr_t (num_cols + 1,), col_t (E,), perm (E,))``, all int64: the
        transposed pattern, whose edge ``k`` is edge ``perm[k]`` of the input, so
        values transpose as ``values[perm]``. Within a row of the transpose, edges
        keep their original order (stable).
    """
    return _ops.csr_transpose(row_ptr, col, num_cols)


@torch.library.register_fake("pyengine::csr_transpose")
def _csr_transpose_fake(row_ptr, col, num_cols):
    num_edges = col.shape[0]
    return (
        row_ptr.new_empty((num_cols + 1,)),
        row_ptr.new_empty((num_edges,)),
        row_ptr.new_empty((num_edges,)),
    )


def index_to_row_ptr(index: Tensor, num_rows: int) -> Tensor:
    """CSR row pointer ``(num_rows + 1,)`` from a sorted per-edge row index ``(E,)``.

    Raises ``ValueError`` if ``index`` is not sorted or has entries outside ``[0, num_rows)``.
    """
    if index.dim() != 1:
        raise ValueError(f"index must be 1-D, got shape {tuple(index.shape)}")
    if index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"index must be int64 or int32, got {index.dtype}")
    if index.numel():
        if bool((index[1:] < index[:-1]).any()):
            raise ValueError("index must be sorted (non-decreasing); sort edges by row first")
        if int(index[0]) < 0 or int(index[-1]) >= num_rows:
            raise ValueError(f"index has entries outside [0, {num_rows})")
    counts = torch.bincount(index.long(), minlength=num_rows)
    row_ptr = index.new_zeros(num_rows + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=row_ptr[1:])
    return row_ptr


def row_index(row_ptr: Tensor, num_edges: int | None = None) -> Tensor:
    """The row of every CSR edge, ``(E,)`` int64: the inverse of :func:`index_to_row_ptr`.

    ``num_edges`` (``row_ptr[-1]``) avoids a device sync on CUDA when the caller knows it.
    """
    counts = row_ptr[1:] - row_ptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.shape[0], device=row_ptr.device), counts,
                                   output_size=num_edges)
