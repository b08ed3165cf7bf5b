"""CUDA tests of the CSR segment op family: parity with the CPU path, edge cases, device errors.

Every test is marked ``cuda`` (skipped without a CUDA device or without pyengine's
CUDA kernels, see conftest.py). Inputs are generated on the CPU, copied to the GPU,
and every op's forward and backward are compared with the CPU kernels, which
tests/segment/test_segment.py checks against float64 references.

Both devices accumulate in float32 (float64 for float64) in different orders, so
sums agree within twice the error model of test_segment.py:
``2 * (2 * u_out * |x| + K * u_acc * sqrt(sum_k S_k^2))``. Max/min (values, winning
edges, hence gradients) and csr_transpose must agree exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyengine import ops

from segment_helpers import COMMON_CASES, FLOATS, INDEX_DTYPES, K_SUM, REDUCES, Layouts, dtype_id, heads_id
from segment_helpers import acc_unit, out_unit, random_scores, random_src, softmax_rel_tol, subnormal

pytestmark = pytest.mark.cuda

P = torch.ops.pyengine
DEV = torch.device("cuda")


# Layouts. The CUDA engine cuts rows longer than kChunk = 1024 edges into pieces
# reduced by separate warps and merged by a second kernel (the split-row path).
# Of the common ones, 1000rows_30pct_empty has E > 1024 but no row > 1024.
CASES = {
    **COMMON_CASES,
    "huge_100k": dict(M=1, pattern="huge", huge=100_000),
    "huge_among_small": dict(M=400, pattern="one_huge", huge=50_000, empty_frac=0.3),
    "chunk_boundaries": dict(lens=[1023, 1024, 0, 1025, 2047, 2048, 2049, 1, 0, 5000, 3]),
}
HUGE_CASES = ["huge_100k", "huge_among_small", "chunk_boundaries"]
CASE_CHANNELS = [
    ("M1", 1), ("37rows", 3), ("37rows", 64), ("1000rows_30pct_empty", 33), ("1000rows_30pct_empty", 1),
    ("huge_100k", 1), ("huge_100k", 33), ("huge_among_small", 3), ("huge_among_small", 64), ("chunk_boundaries", 5),
]  # fmt: skip
# (case, heads) pairs of the softmax tests; heads None: 1-D scores
SOFTMAX_CASES = [
    ("M1", None), ("37rows", 4), ("1000rows_30pct_empty", None), ("1000rows_30pct_empty", 33),
    ("huge_100k", None), ("huge_100k", 8), ("huge_among_small", 1), ("chunk_boundaries", 3),
]  # fmt: skip

LAYOUTS = Layouts(CASES, HUGE_CASES)
csr, csr_and_col = LAYOUTS.csr, LAYOUTS.csr_and_col


def dev(t, requires_grad=None):
    """A copy of t on DEV (a new leaf; requires_grad as t unless given)."""
    if t is None:
        return None
    rg = t.requires_grad if requires_grad is None else requires_grad
    return t.detach().to(DEV).requires_grad_(rg)


# --------------------------------------------------------------------------- tolerance helpers (CPU, float64)


def edge_rows(row_ptr):
    return torch.repeat_interleave(torch.arange(row_ptr.numel() - 1), row_ptr.diff())


def row_scale(terms, row_ptr):
    """sqrt(sum_k S_k^2) per row for the running sums S_k of terms (E, F) along each row."""
    rows = edge_rows(row_ptr)
    cs = terms.cumsum(0)
    base = torch.cat([torch.zeros(1, terms.shape[1], dtype=torch.float64), cs])[row_ptr[:-1][rows]]
    sq = torch.zeros(row_ptr.numel() - 1, terms.shape[1], dtype=torch.float64)
    return sq.index_add_(0, rows, (cs - base) ** 2).sqrt()


def column_scale(contrib, col, num_cols):
    """row_scale of the contributions (E, F) gathered per column, edges of a column in edge order."""
    perm = torch.sort(col.long(), stable=True).indices
    row_ptr_t = torch.zeros(num_cols + 1, dtype=torch.long)
    row_ptr_t[1:] = torch.bincount(col.long(), minlength=num_cols).cumsum(0)
    return row_scale(contrib[perm], row_ptr_t)


def dot_scale(a, b):
    """Error scale of the row-wise dot products of (E, C) arrays."""
    return (a * b).cumsum(1).pow(2).sum(1).sqrt()


def flat64(t):
    t = t.detach().cpu().double()
    return t.reshape(t.shape[0], -1)


def parity_tol(cpu, scale, dtype):
    """Two devices, each within 2 * u_out * |x| + K * u_acc * scale of the exact result."""
    return 2 * (2 * out_unit(dtype) * flat64(cpu).abs() + K_SUM * acc_unit(dtype) * scale) + subnormal(dtype)


def assert_parity(got, cpu, tol=0.0, what="result"):
    """got (on DEV) matches cpu (CPU) elementwise within tol; NaN / inf patterns must match exactly."""
    assert got.device.type == DEV.type, f"{what}: result on {got.device}, expected {DEV.type}"
    assert got.dtype == cpu.dtype, f"{what}: dtype {got.dtype} != {cpu.dtype}"
    assert got.shape == cpu.shape, f"{what}: shape {tuple(got.shape)} != {tuple(cpu.shape)}"
    g, c = flat64(got), flat64(cpu)
    tol = torch.as_tensor(tol, dtype=torch.float64)
    tol = tol.reshape(tol.shape[0], -1).expand_as(c) if tol.dim() else tol.expand_as(c)
    assert torch.equal(g.isnan(), c.isnan()), f"{what}: NaN pattern differs"
    same = (g == c) | (g.isnan() & c.isnan())
    bad = ~same & ~((g - c).abs() <= tol)
    if bool(bad.any()):
        i = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {c.numel()} entries differ; first at {list(i)}: "
            f"{DEV.type} {g[i].item()!r}, cpu {c[i].item()!r}, tol {tol[i].item():.3g}"
        )


# --------------------------------------------------------------------------- segment_reduce


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("case,C", CASE_CHANNELS)
def test_segment_reduce_parity(make_csr, case, C, reduce, dtype):
    row_ptr, M, E = csr(make_csr, case)
    src = random_src((E, C), dtype)
    grad_out = random_src((M, C), dtype)
    src.requires_grad_()
    out = ops.segment_reduce(src, row_ptr, reduce)
    (grad,) = torch.autograd.grad(out, src, grad_out)

    src_d = dev(src)
    out_d = ops.segment_reduce(src_d, dev(row_ptr), reduce)
    (grad_d,) = torch.autograd.grad(out_d, src_d, dev(grad_out))
    if reduce in ("max", "min"):
        assert_parity(out_d, out, 0.0, f"{reduce} forward")
        assert_parity(grad_d, grad, 0.0, f"{reduce} grad")  # same winning edges
        _, arg = P.segment_reduce(src.detach(), row_ptr, reduce)
        _, arg_d = P.segment_reduce(src_d.detach(), dev(row_ptr), reduce)
        assert torch.equal(arg_d.cpu(), arg)
    else:
        scale = row_scale(flat64(src), row_ptr)
        if reduce == "mean":
            scale = scale / row_ptr.diff().clamp_min(1)[:, None]
        assert_parity(out_d, out, parity_tol(out, scale, dtype), f"{reduce} forward")
        grad_tol = 0.0 if reduce == "sum" else 4 * out_unit(dtype) * flat64(grad).abs() + subnormal(dtype)
        assert_parity(grad_d, grad, grad_tol, f"{reduce} grad")  # sum: copies of grad_out


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_reduce_trailing_dims_cuda(make_csr, reduce):
    row_ptr, M, E = csr(make_csr, "chunk_boundaries")
    src = random_src((E, 2, 3), torch.float64)
    out = ops.segment_reduce(src, row_ptr, reduce)
    out_d = ops.segment_reduce(dev(src), dev(row_ptr), reduce)
    assert out_d.shape == (M, 2, 3)
    assert_parity(out_d, out, 1e-12 * (1 + flat64(out).abs()) * math.sqrt(E))


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduce", ["max", "min"])
def test_extremum_ties_and_nan_cuda(reduce, dtype):
    # a 100k-edge row (many pieces) with its extremum tied across pieces, a NaN row, an all-tied row
    n = 100_000
    row_ptr = torch.tensor([0, 5, 5 + n, 5 + n + 3, 2 * n + 8])
    sign = 1.0 if reduce == "max" else -1.0
    src = torch.rand(2 * n + 8, 2, dtype=torch.float64) * sign
    tied = [5 + 1500, 5 + 1024 * 7, 5 + 50_000, 5 + n - 1]
    src[tied, 0] = 3.0 * sign
    src[[5 + 99_000, 5 + 2000], 1] = 3.0 * sign
    src[5 + n : 5 + n + 3] = 1.5 * sign
    src[[5 + n + 3 + 70_000, 5 + n + 3 + 90_000], 0] = float("nan")  # last row, channel 0: first NaN wins
    src = src.to(dtype).requires_grad_()
    src_d = dev(src)
    out_d = ops.segment_reduce(src_d, dev(row_ptr), reduce)
    out = out_d.detach().cpu()
    assert out[1].tolist() == [3.0 * sign, 3.0 * sign] and out[2].tolist() == [1.5 * sign, 1.5 * sign]
    assert bool(out[3, 0].isnan()) and not bool(out[3, 1].isnan())
    (g,) = torch.autograd.grad(out_d, src_d, torch.ones(4, 2, dtype=dtype, device=DEV))
    g = g.cpu()
    assert g[5 + 1500, 0] == 1 and g[5 + 2000, 1] == 1 and g[5 + n, 0] == 1 and g[5 + n, 1] == 1
    assert g[5 + n + 3 + 70_000, 0] == 1 and g[5 + n + 3 + 90_000, 0] == 0
    assert int((g != 0).sum()) == 8
    # and the CPU path agrees exactly
    out_cpu = ops.segment_reduce(src.detach(), row_ptr, reduce)
    assert_parity(out_d, out_cpu, 0.0)


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_extremum_of_infinite_rows_cuda(dtype):
    inf = float("inf")
    row_ptr = torch.tensor([0, 3, 3, 5, 5000], device=DEV)
    src = torch.full((5000, 1), -inf, dtype=dtype, device=DEV)
    src[3:5] = inf
    assert ops.segment_reduce(src, row_ptr, "max").flatten().tolist() == [-inf, 0.0, inf, -inf]
    assert ops.segment_reduce(-src, row_ptr, "min").flatten().tolist() == [inf, 0.0, -inf, inf]


# --------------------------------------------------------------------------- segment_softmax


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("case,heads", SOFTMAX_CASES, ids=heads_id)
def test_segment_softmax_parity(make_csr, case, heads, dtype):
    row_ptr, M, E = csr(make_csr, case)
    shape = (E,) if heads is None else (E, heads)
    scores = random_scores(shape, dtype)
    scores[::7] = -float("inf")  # partly masked rows
    scores.requires_grad_()
    grad_out = random_src(shape, dtype)
    out = ops.segment_softmax(scores, row_ptr)
    (grad,) = torch.autograd.grad(out, scores, grad_out)

    scores_d = dev(scores)
    out_d = ops.segment_softmax(scores_d, dev(row_ptr))
    (grad_d,) = torch.autograd.grad(out_d, scores_d, dev(grad_out))
    lens = row_ptr.diff().double()[edge_rows(row_ptr)][:, None]
    rel = softmax_rel_tol(lens, dtype)
    assert_parity(out_d, out, 2 * rel * flat64(out).abs() + subnormal(dtype), "softmax forward")
    y, g = flat64(out), flat64(grad_out)
    rows = edge_rows(row_ptr)
    adot = torch.zeros(M, y.shape[1], dtype=torch.float64).index_add_(0, rows, (g * y).abs())[rows]
    scale = y.abs() * (g.abs() + adot)
    assert_parity(grad_d, grad, 4 * rel * scale + 2 * subnormal(dtype), "softmax grad")


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_segment_softmax_edge_cases_cuda(dtype):
    inf, nan = float("inf"), float("nan")
    n = 100_000
    # row 0: fully masked; row 1: NaN in head 0; row 2: empty; row 3: huge, masked except one late edge;
    # row 4: huge with large-magnitude scores
    row_ptr = torch.tensor([0, 3, 6, 6, 6 + n, 6 + 2 * n])
    scores = torch.full((6 + 2 * n, 2), -inf, dtype=torch.float64)
    scores[3:6] = torch.tensor([[0.0, 1.0], [nan, 2.0], [1.0, 3.0]], dtype=torch.float64)
    scores[6 + 77_777] = torch.tensor([-40.0, 5.0], dtype=torch.float64)
    scores[6 + n :] = 1e4 - torch.rand(n, 2, dtype=torch.float64) * 8
    scores = scores.to(dtype)
    out = ops.segment_softmax(dev(scores), dev(row_ptr)).cpu()
    assert not bool(out[0:3].any())
    assert bool(out[3:6, 0].isnan().all()) and not bool(out[3:6, 1].isnan().any())
    assert out[6 + 77_777].tolist() == [1.0, 1.0] and int((out[6 : 6 + n] != 0).sum()) == 2
    tail = out[6 + n :].double()
    assert bool(torch.isfinite(tail).all())
    assert bool(((tail.sum(0) - 1).abs() < 1e-2).all())
    cpu = ops.segment_softmax(scores, row_ptr)
    rel = softmax_rel_tol(torch.tensor(float(n), dtype=torch.float64), dtype)
    assert_parity(ops.segment_softmax(dev(scores), dev(row_ptr)), cpu, 2 * rel * flat64(cpu).abs() + subnormal(dtype))


# --------------------------------------------------------------------------- spmm / sddmm / transpose


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("with_values", [True, False], ids=["values", "no_values"])
@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", list(CASES))
def test_spmm_parity(make_csr, case, col_dtype, with_values, dtype):
    row_ptr, M, E, N, col = csr_and_col(make_csr, case, col_dtype)
    C = 3 if case in HUGE_CASES else 33
    values = random_src((E,), dtype).requires_grad_() if with_values else None
    x = random_src((N, C), dtype).requires_grad_()
    grad_out = random_src((M, C), dtype)
    inputs = (x,) if values is None else (x, values)
    out = ops.spmm(row_ptr, col, values, x)
    grads = torch.autograd.grad(out, inputs, grad_out)

    values_d, x_d = dev(values), dev(x)
    inputs_d = (x_d,) if values is None else (x_d, values_d)
    out_d = ops.spmm(dev(row_ptr), dev(col), values_d, x_d)
    grads_d = torch.autograd.grad(out_d, inputs_d, dev(grad_out))

    rows = edge_rows(row_ptr)
    v = torch.ones(E, 1, dtype=torch.float64) if values is None else flat64(values)
    xf, g = flat64(x), flat64(grad_out)
    scale = row_scale(v * xf[col.long()], row_ptr)
    assert_parity(out_d, out, parity_tol(out, scale, dtype), "spmm forward")
    gx_scale = column_scale(v * g[rows], col, N)
    assert_parity(grads_d[0], grads[0], parity_tol(grads[0], gx_scale, dtype), "spmm grad x")
    if values is not None:
        gv_scale = dot_scale(g[rows], xf[col.long()])
        assert_parity(grads_d[1], grads[1], parity_tol(grads[1], gv_scale[:, None], dtype), "spmm grad values")


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case,C", CASE_CHANNELS)
def test_sddmm_parity(make_csr, case, C, col_dtype, dtype):
    row_ptr, M, E, N, col = csr_and_col(make_csr, case, col_dtype)
    a, b = random_src((M, C), dtype), random_src((N, C), dtype)
    out = ops.sddmm(row_ptr, col, a, b)
    out_d = ops.sddmm(dev(row_ptr), dev(col), dev(a), dev(b))
    scale = dot_scale(flat64(a)[edge_rows(row_ptr)], flat64(b)[col.long()])
    assert_parity(out_d, out, parity_tol(out, scale[:, None], dtype), "sddmm")


@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", list(CASES))
def test_csr_transpose_parity(make_csr, case, col_dtype):
    row_ptr, M, E, _, col = csr_and_col(make_csr, case, col_dtype)
    num_cols = int(col.max()) + 4  # some trailing empty columns
    expected = ops.csr_transpose(row_ptr, col, num_cols)
    got = ops.csr_transpose(dev(row_ptr), dev(col), num_cols)
    for g, e, name in zip(got, expected, ("row_ptr_t", "col_t", "perm")):
        assert g.device.type == DEV.type and g.dtype == torch.int64, name
        assert torch.equal(g.cpu(), e), name


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=dtype_id)
def test_index_to_row_ptr_cuda(make_csr, index_dtype):
    row_ptr, M, E = csr(make_csr, "huge_among_small")
    index = edge_rows(row_ptr).to(index_dtype)
    got = ops.index_to_row_ptr(index.to(DEV), M + 2)
    assert got.device.type == DEV.type and got.dtype == torch.int64
    assert torch.equal(got.cpu(), torch.cat([row_ptr, row_ptr[-1:], row_ptr[-1:]]))


# --------------------------------------------------------------------------- zero rows / zero edges


@pytest.mark.parametrize("M", [0, 4])
def test_zero_edges_cuda(M):
    row_ptr = torch.zeros(M + 1, dtype=torch.long, device=DEV)
    for reduce in REDUCES:
        src = torch.empty(0, 3, device=DEV, requires_grad=True)
        out = ops.segment_reduce(src, row_ptr, reduce)
        assert out.device.type == DEV.type and torch.equal(out.cpu(), torch.zeros(M, 3))
        (g,) = torch.autograd.grad(out, src, torch.ones_like(out))
        assert g.shape == (0, 3) and g.device.type == DEV.type
    scores = torch.empty(0, 2, device=DEV, requires_grad=True)
    out = ops.segment_softmax(scores, row_ptr)
    assert out.shape == (0, 2)
    (g,) = torch.autograd.grad(out, scores, torch.ones_like(out))
    assert g.shape == (0, 2)
    col = torch.empty(0, dtype=torch.int32, device=DEV)
    x = torch.randn(5, 3, device=DEV, requires_grad=True)
    values = torch.empty(0, device=DEV, requires_grad=True)
    out = ops.spmm(row_ptr, col, values, x)
    assert torch.equal(out.cpu(), torch.zeros(M, 3))
    gx, gv = torch.autograd.grad(out, (x, values), torch.ones(M, 3, device=DEV))
    assert torch.equal(gx.cpu(), torch.zeros(5, 3)) and gv.shape == (0,)
    assert ops.sddmm(row_ptr, col, torch.randn(M, 3, device=DEV), x.detach()).shape == (0,)
    row_ptr_t, col_t, perm = ops.csr_transpose(row_ptr, col, 5)
    assert row_ptr_t.tolist() == [0] * 6 and col_t.numel() == 0 and perm.numel() == 0


def test_all_rows_empty_but_many_cuda():
    row_ptr = torch.zeros(3001, dtype=torch.long, device=DEV)
    out, arg = P.segment_reduce(torch.empty(0, 2, device=DEV), row_ptr, "max")
    assert torch.equal(out.cpu(), torch.zeros(3000, 2)) and bool((arg.cpu() == -1).all())


# --------------------------------------------------------------------------- devices, streams, checks


def _mismatch_calls():
    row_ptr = torch.tensor([0, 2, 3])
    col = torch.tensor([0, 1, 1])
    src = torch.randn(3, 2)
    x = torch.randn(2, 2)
    v = torch.randn(3)
    arg = P.segment_reduce(src, row_ptr, "max")[1]
    return {
        "segment_reduce src": lambda: ops.segment_reduce(src.to(DEV), row_ptr, "sum"),
        "segment_reduce row_ptr": lambda: ops.segment_reduce(src, row_ptr.to(DEV), "max"),
        "segment_softmax": lambda: ops.segment_softmax(src.to(DEV), row_ptr),
        "spmm x": lambda: ops.spmm(row_ptr, col, v, x.to(DEV)),
        "spmm col": lambda: ops.spmm(row_ptr.to(DEV), col, v.to(DEV), x.to(DEV)),
        "spmm values": lambda: ops.spmm(row_ptr.to(DEV), col.to(DEV), v, x.to(DEV)),
        "sddmm a": lambda: ops.sddmm(row_ptr.to(DEV), col.to(DEV), torch.randn(2, 2), x.to(DEV)),
        "sddmm b": lambda: ops.sddmm(row_ptr.to(DEV), col.to(DEV), torch.randn(2, 2, device=DEV), x),
        "csr_transpose": lambda: ops.csr_transpose(row_ptr, col.to(DEV), 2),
        "segment_reduce_backward arg": lambda: P.segment_reduce_backward(
            torch.randn(2, 2, device=DEV), row_ptr.to(DEV), arg, "max", 3
        ),
        "segment_softmax_backward": lambda: P.segment_softmax_backward(
            torch.randn(3, 2, device=DEV), torch.rand(3, 2), row_ptr
        ),
    }


MISMATCH_CASES = [
    "segment_reduce src", "segment_reduce row_ptr", "segment_softmax", "spmm x", "spmm col", "spmm values",
    "sddmm a", "sddmm b", "csr_transpose", "segment_reduce_backward arg", "segment_softmax_backward",
]  # fmt: skip


@pytest.mark.parametrize("which", MISMATCH_CASES)
def test_device_mismatch_raises(which):
    call = _mismatch_calls()[which]
    with pytest.raises(ValueError, match=r"is on .* but .* is on .*same device"):
        call()


def test_input_checks_on_cuda():
    src = torch.randn(4, 2, device=DEV)
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.segment_reduce(src, torch.tensor([0, 3, 2, 4], device=DEV), "sum")
    with pytest.raises(ValueError, match=r"row_ptr\[-1\]"):
        ops.segment_reduce(src, torch.tensor([0, 3], device=DEV), "sum")
    with pytest.raises(ValueError, match=r"row_ptr\[0\]"):
        ops.segment_reduce(src, torch.tensor([1, 4], device=DEV), "sum")
    row_ptr = torch.tensor([0, 2, 4], device=DEV)
    x = torch.randn(3, 2, device=DEV)
    with pytest.raises(ValueError, match="col has entries >="):
        ops.spmm(row_ptr, torch.tensor([0, 1, 3, 2], device=DEV), None, x)
    with pytest.raises(ValueError, match="col has negative"):
        ops.spmm(row_ptr, torch.tensor([0, -1, 2, 2], device=DEV, dtype=torch.int32), None, x)
    with pytest.raises(TypeError, match="row_ptr must be int64"):
        ops.segment_reduce(src, torch.tensor([0, 4], device=DEV, dtype=torch.int32), "sum")
    with ops.input_checks(False):
        out = ops.spmm(row_ptr, torch.tensor([0, 1, 2, 2], device=DEV), None, x)
    assert ops.set_input_checks(True) is True  # restored
    assert torch.allclose(out.cpu(), torch.stack([x[0] + x[1], 2 * x[2]]).cpu())


def test_side_stream_cuda(make_csr):
    row_ptr, M, E = csr(make_csr, "huge_among_small")
    src = torch.randn(E, 4)
    expected = ops.segment_reduce(src, row_ptr, "sum")
    stream = torch.cuda.Stream()
    src_d, row_ptr_d = src.to(DEV), row_ptr.to(DEV)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = ops.segment_reduce(src_d, row_ptr_d, "sum")
        soft = ops.segment_softmax(src_d, row_ptr_d)
    torch.cuda.current_stream().wait_stream(stream)
    scale = row_scale(src.double(), row_ptr)
    assert_parity(out, expected, parity_tol(expected, scale, torch.float32))
    assert_parity(soft, ops.segment_softmax(src, row_ptr), 1e-4 * ops.segment_softmax(src, row_ptr).abs() + 1e-12)


OPCHECK_CASES = ["segment_reduce-sum", "segment_reduce-max", "segment_softmax", "spmm", "csr_sddmm", "csr_transpose"]


@pytest.mark.parametrize("which", OPCHECK_CASES)
def test_opcheck_cuda(which):
    row_ptr = torch.tensor([0, 3, 3, 4, 8, 8, 10], device=DEV)
    col = torch.tensor([0, 4, 0, 2, 1, 1, 4, 0, 2, 4], device=DEV)
    src = torch.randn(10, 3, dtype=torch.float64, device=DEV)
    x = torch.randn(5, 3, dtype=torch.float64, device=DEV)
    op, _, variant = which.partition("-")
    args = {
        "segment_reduce": lambda: (src.requires_grad_(), row_ptr, variant),
        "segment_softmax": lambda: (src.requires_grad_(), row_ptr),
        "spmm": lambda: (row_ptr, col.int(), torch.randn(10, dtype=torch.float64, device=DEV, requires_grad=True),
                         x.requires_grad_()),
        "csr_sddmm": lambda: (row_ptr, col, torch.randn(6, 3, dtype=torch.float64, device=DEV), x),
        "csr_transpose": lambda: (row_ptr, col.int(), 6),
    }[op]()  # fmt: skip
    torch.library.opcheck(getattr(P, op).default, args)
