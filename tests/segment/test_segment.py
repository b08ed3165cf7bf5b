"""CPU tests of the CSR segment op family (pyengine.ops / torch.ops.pyengine).

Every op is compared with an independent float64 reference written here in numpy
(segment reductions with ``np.*.reduceat`` over the non-empty rows), never with
pyengine itself.

Tolerances follow the error model of the kernels: values are accumulated in the
accumulator type (float64 for float64, float32 otherwise) and rounded once to the
output dtype. A sum is allowed ``2 * u_out * |ref| + K * u_acc * sqrt(sum_k S_k^2)``
where ``S_k`` are the reference's running partial sums along the row (the
random-rounding error model of recursive summation, with a safety factor ``K``).
Max/min and the gradients of sum/max/min involve no arithmetic and are compared
exactly, in every dtype.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyengine import ops

from segment_helpers import COMMON_CASES, FLOATS, INDEX_DTYPES, K_SUM, REDUCES, Layouts, dtype_id, heads_id
from segment_helpers import acc_unit, out_unit, random_col, random_scores, random_src, softmax_rel_tol, subnormal

P = torch.ops.pyengine

LOW_PRECISION = (torch.float16, torch.bfloat16)
CHANNELS = [1, 3, 33, 64]


# Non-empty CSR layouts of awkward sizes. The huge ones have rows longer than the
# CPU engine's split threshold (max(E / num_blocks + 1, 4096) edges), so those rows
# are cut into pieces that are reduced in parallel and merged.
CASES = {
    **COMMON_CASES,
    "one_huge_row": dict(M=1, pattern="huge", huge=30_000),
    "huge_among_small": dict(M=300, pattern="one_huge", huge=20_000, empty_frac=0.3),
    "two_huge": dict(M=50, pattern="two_huge", huge=10_000),
    "split_boundaries": dict(lens=[3, 4095, 0, 4096, 4097, 1, 8193, 0, 2]),
}
HUGE_CASES = ["one_huge_row", "huge_among_small", "two_huge", "split_boundaries"]
# (case, channels) pairs: every case and every channel count, without the full product
CASE_CHANNELS = [
    ("M1", 1), ("M1", 64), ("37rows", 3), ("37rows", 33), ("1000rows_30pct_empty", 1),
    ("1000rows_30pct_empty", 64), ("one_huge_row", 3), ("huge_among_small", 1), ("huge_among_small", 33),
    ("two_huge", 3), ("split_boundaries", 1), ("37rows", 130),  # C > 64: several channel tiles
]  # fmt: skip

LAYOUTS = Layouts(CASES, HUGE_CASES)
csr, csr_and_col, num_cols_for = LAYOUTS.csr, LAYOUTS.csr_and_col, LAYOUTS.num_cols_for


def cpu_split_threshold(row_ptr):
    """The CPU engine's long-row threshold (csrc/common/csr_engine_cpu.h)."""
    M, E = row_ptr.numel() - 1, int(row_ptr[-1])
    num_blocks = max(1, min(torch.get_num_threads() * 8, (M + E) // 2048 + 1))
    return max(E // num_blocks + 1, 4096)


# --------------------------------------------------------------------------- references (numpy, float64)


def np64(t):
    """float64 numpy copy of a tensor, flattened to (len, -1)."""
    t = t.detach().cpu().double()
    return t.reshape(t.shape[0], -1).numpy() if t.dim() != 1 else t.numpy()[:, None]


class Rows:
    """Row structure of a CSR row pointer, for numpy segment reductions."""

    def __init__(self, row_ptr):
        self.rp = row_ptr.cpu().numpy().astype(np.int64)
        self.M, self.E = len(self.rp) - 1, int(self.rp[-1])
        self.lens = np.diff(self.rp)
        self.rows = np.repeat(np.arange(self.M), self.lens)  # row of every edge
        self.nonempty = self.lens > 0
        self.starts = self.rp[:-1][self.nonempty]

    def _reduceat(self, ufunc, x, empty_value=0.0):
        out = np.full((self.M,) + x.shape[1:], empty_value, dtype=x.dtype)
        if self.E:
            out[self.nonempty] = ufunc.reduceat(x, self.starts, axis=0)
        return out

    def sum(self, x):
        return self._reduceat(np.add, x)

    def max(self, x):  # NaN propagates
        return self._reduceat(np.maximum, x)

    def min(self, x):
        return self._reduceat(np.minimum, x)

    def first(self, mask):
        """Lowest edge index per (row, channel) where mask holds, -1 if none."""
        idx = np.where(mask, np.arange(self.E)[:, None], self.E)
        out = self._reduceat(np.minimum, idx, empty_value=self.E)
        return np.where(out == self.E, -1, out)

    def partial_sum_scale(self, x):
        """sqrt(sum_k S_k^2) per row, S_k the running sums of x along the row (error scale of a sum)."""
        cs = np.cumsum(x, axis=0)
        base = np.concatenate([np.zeros((1,) + x.shape[1:]), cs])[self.rp[:-1][self.rows]]
        return np.sqrt(self.sum((cs - base) ** 2))


def ref_reduce(src, row_ptr, reduce):
    """(out (M, F), arg (M, F): winning edge or -1, scale (M, F)); ties -> lowest edge, NaN wins."""
    R, x = Rows(row_ptr), np64(src)
    arg = np.full((R.M, x.shape[1]), -1)
    scale = np.zeros((R.M, x.shape[1]))
    if reduce in ("sum", "mean"):
        out, scale = R.sum(x), R.partial_sum_scale(x)
        if reduce == "mean":
            n = np.maximum(R.lens, 1)[:, None]
            out, scale = out / n, scale / n
    else:
        out = R.max(x) if reduce == "max" else R.min(x)
        at_row = out[R.rows]
        arg = R.first((x == at_row) | (np.isnan(x) & np.isnan(at_row)))
    return out, arg, scale


def ref_reduce_grad(grad_out, row_ptr, reduce, arg):
    """d <out, grad_out> / d src per the documented rules (max/min: the winning edge only)."""
    R, g = Rows(row_ptr), np64(grad_out)
    if reduce == "sum":
        return g[R.rows]
    if reduce == "mean":
        return g[R.rows] / R.lens[R.rows][:, None]
    res = np.zeros((R.E, g.shape[1]))
    r, c = np.nonzero(arg >= 0)
    res[arg[r, c], c] = g[r, c]
    return res


def ref_softmax(scores, row_ptr):
    """Softmax per row and column; rows of only -inf give 0, NaN propagates. Returns (out, row length per edge)."""
    R, x = Rows(row_ptr), np64(scores)
    m = R.max(x)
    m = np.where(np.isneginf(m), 0.0, m)
    with np.errstate(invalid="ignore"):
        ex = np.exp(x - m[R.rows])
        den = R.sum(ex)[R.rows]
        out = np.where(den > 0, ex / np.where(den > 0, den, 1.0), np.where(np.isnan(den), np.nan, 0.0))
    return out, R.lens[R.rows][:, None].astype(np.float64)


def ref_softmax_grad(grad_out, y, row_ptr):
    """y * (g - sum_row(g y)), and the scale y * (|g| + sum_row |g y|) of its rounding error."""
    R, g, y = Rows(row_ptr), np64(grad_out), np64(y)
    dot, adot = R.sum(g * y)[R.rows], R.sum(np.abs(g * y))[R.rows]
    return y * (g - dot), np.abs(y) * (np.abs(g) + adot)


def ref_spmm(row_ptr, col, values, x):
    """(out (M, F), scale (M, F)) of out[i] = sum_e values[e] x[col[e]]."""
    R = Rows(row_ptr)
    v = np.ones((R.E, 1)) if values is None else np64(values)
    terms = v * np64(x)[col.long().numpy()]
    return R.sum(terms), R.partial_sum_scale(terms)


def ref_dot_rows(a, b):
    """Row-wise dot products (E,) of (E, C) arrays and their error scale."""
    prod = a * b
    return prod.sum(1), np.sqrt((np.cumsum(prod, axis=1) ** 2).sum(1))


def ref_sddmm(row_ptr, col, a, b):
    R = Rows(row_ptr)
    return ref_dot_rows(np64(a)[R.rows], np64(b)[col.long().numpy()])


def ref_transpose(row_ptr, col, num_cols):
    c = col.long().numpy()
    perm = np.argsort(c, kind="stable")
    row_ptr_t = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=num_cols))])
    col_t = Rows(row_ptr).rows[perm]
    return [torch.from_numpy(a.astype(np.int64)) for a in (row_ptr_t, col_t, perm)]


def ref_spmm_grads(row_ptr, col, values, x, grad_out):
    """(grad_x, its scale, grad_values, its scale) of spmm for a float64 grad_out."""
    R, g, xf = Rows(row_ptr), np64(grad_out), np64(x)
    c = col.long().numpy()
    v = np.ones((R.E, 1)) if values is None else np64(values)
    contrib = v * g[R.rows]  # message of edge e to column col[e]
    perm = np.argsort(c, kind="stable")  # column-major order, edges of a column in row order
    Rt = Rows(torch.from_numpy(np.concatenate([[0], np.cumsum(np.bincount(c, minlength=xf.shape[0]))])))
    gx, gx_scale = Rt.sum(contrib[perm]), Rt.partial_sum_scale(contrib[perm])
    gv, gv_scale = ref_dot_rows(g[R.rows], xf[c])
    return gx, gx_scale, gv, gv_scale


# --------------------------------------------------------------------------- comparison helpers


def sum_tol(ref, scale, dtype):
    """Rounding to dtype (2 half-ulps) + K_SUM * u_acc * scale of the accumulated sum."""
    return 2 * out_unit(dtype) * np.abs(ref) + K_SUM * acc_unit(dtype) * scale + subnormal(dtype)


def assert_within(got, ref, tol, what="result"):
    """Elementwise |got - ref| <= tol in float64; NaN and inf must match exactly."""
    got = np64(got)
    ref = np.asarray(ref, dtype=np.float64)
    ref = ref[:, None] if ref.ndim == 1 else ref.reshape(ref.shape[0], -1)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    tol = np.asarray(tol, dtype=np.float64)
    tol = np.broadcast_to(tol.reshape(tol.shape[0], -1) if tol.ndim else tol, ref.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
        ok = err <= tol
    if ok.all():
        return
    bad = ~(ok | (got == ref) | (np.isnan(got) & np.isnan(ref)))
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {ref.size} entries out of tolerance; first at {list(i)}: "
            f"got {got[i]!r}, expected {ref[i]!r}, tol {tol[i]:.3g}"
        )


def assert_exact(got, ref, what="result"):
    assert_within(got, ref, 0.0, what)


# --------------------------------------------------------------------------- guards on the test data


@pytest.mark.parametrize("case", HUGE_CASES)
def test_huge_cases_exercise_the_cpu_split_path(make_csr, case):
    row_ptr, _, _ = csr(make_csr, case)
    assert int(row_ptr.diff().max()) > cpu_split_threshold(row_ptr), "no row of this case is split any more"


def test_cases_have_empty_rows(make_csr):
    for case in ["37rows", "1000rows_30pct_empty", "huge_among_small", "two_huge", "split_boundaries"]:
        row_ptr, _, _ = csr(make_csr, case)
        assert int((row_ptr.diff() == 0).sum()) > 0, case
    row_ptr, _, _ = csr(make_csr, "1000rows_30pct_empty")
    assert 0.2 < float((row_ptr.diff() == 0).double().mean()) < 0.4


def test_reference_sanity():
    """The references themselves, on a hand-computed example."""
    row_ptr = torch.tensor([0, 2, 2, 5])
    src = torch.tensor([[1.0], [-2.0], [4.0], [float("nan")], [4.0]])
    assert np.array_equal(ref_reduce(src, row_ptr, "sum")[0][[0, 1]], [[-1.0], [0.0]])
    out, arg, _ = ref_reduce(src, row_ptr, "max")
    assert out[0, 0] == 1.0 and out[1, 0] == 0.0 and np.isnan(out[2, 0])
    assert arg.tolist() == [[0], [-1], [3]]
    assert ref_reduce(src[[0, 1, 2, 4, 2]], row_ptr, "min")[1].tolist() == [[1], [-1], [2]]
    sm, _ = ref_softmax(torch.tensor([0.0, math.log(3.0), -float("inf")]), torch.tensor([0, 2, 3]))
    assert np.allclose(sm[:, 0], [0.25, 0.75, 0.0])


# --------------------------------------------------------------------------- segment_reduce


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("case,C", CASE_CHANNELS)
def test_segment_reduce_matches_reference(make_csr, case, C, reduce, dtype):
    row_ptr, M, E = csr(make_csr, case)
    src = random_src((E, C), dtype).requires_grad_()
    out = ops.segment_reduce(src, row_ptr, reduce)
    assert out.dtype == dtype and out.shape == (M, C)
    ref, arg, scale = ref_reduce(src, row_ptr, reduce)
    if reduce in ("max", "min"):
        assert_exact(out, ref, f"{reduce} forward")
    else:
        assert_within(out, ref, sum_tol(ref, scale, dtype), f"{reduce} forward")

    grad_out = random_src((M, C), dtype)
    (grad_src,) = torch.autograd.grad(out, src, grad_out)
    assert grad_src.dtype == dtype and grad_src.shape == src.shape
    grad_ref = ref_reduce_grad(grad_out, row_ptr, reduce, arg)
    if reduce == "mean":  # g / len, computed in the accumulator and rounded
        assert_within(grad_src, grad_ref, 2 * out_unit(dtype) * np.abs(grad_ref) + subnormal(dtype), "mean grad")
    else:
        assert_exact(grad_src, grad_ref, f"{reduce} grad")


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_reduce_raw_op_arg(make_csr, reduce):
    """The raw op's second output: winning edge per (row, channel) for max/min, empty for sum/mean."""
    row_ptr, M, E = csr(make_csr, "huge_among_small")
    src = random_src((E, 5), torch.float32)
    out, arg = P.segment_reduce(src, row_ptr, reduce)
    ref, ref_arg, scale = ref_reduce(src, row_ptr, reduce)
    assert out.shape == (M, 5)
    assert_within(out, ref, sum_tol(ref, scale, torch.float32))
    if reduce in ("max", "min"):
        assert arg.dtype == torch.int64 and arg.shape == (M, 5)
        nonempty = Rows(row_ptr).nonempty
        assert np.array_equal(arg.numpy()[nonempty], ref_arg[nonempty])
    else:
        assert arg.numel() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("case", ["37rows", "split_boundaries"])
def test_segment_reduce_trailing_dims(make_csr, case, reduce, dtype):
    row_ptr, M, E = csr(make_csr, case)
    src = random_src((E, 2, 3), dtype).requires_grad_()
    out = ops.segment_reduce(src, row_ptr, reduce)
    assert out.shape == (M, 2, 3)
    ref, arg, scale = ref_reduce(src, row_ptr, reduce)
    assert_within(out, ref, sum_tol(ref, scale, dtype), f"{reduce} forward")
    grad_out = random_src((M, 2, 3), dtype)
    (grad_src,) = torch.autograd.grad(out, src, grad_out)
    assert grad_src.shape == (E, 2, 3)
    grad_ref = ref_reduce_grad(grad_out, row_ptr, reduce, arg)
    assert_within(grad_src, grad_ref, 2 * out_unit(dtype) * np.abs(grad_ref), f"{reduce} grad")


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_reduce_one_dim_src(make_csr, reduce):
    row_ptr, M, E = csr(make_csr, "37rows")
    src = random_src((E,), torch.float64)
    out = ops.segment_reduce(src, row_ptr, reduce)
    assert out.shape == (M,)
    ref, _, scale = ref_reduce(src, row_ptr, reduce)
    assert_within(out, ref, sum_tol(ref, scale, torch.float64))


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_reduce_non_contiguous(make_csr, reduce):
    row_ptr, M, E = csr(make_csr, "huge_among_small")
    src = random_src((E, 8), torch.float64)[:, ::3]  # (E, 3), strided
    rp = torch.stack([row_ptr, row_ptr], 1)[:, 0]  # strided row_ptr
    assert not src.is_contiguous() and not rp.is_contiguous()
    out = ops.segment_reduce(src, rp, reduce)
    ref, _, scale = ref_reduce(src, row_ptr, reduce)
    assert_within(out, ref, sum_tol(ref, scale, torch.float64))


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_reduce_small_exact(reduce):
    row_ptr = torch.tensor([0, 0, 2, 2, 2, 3, 3])  # rows 0, 2, 3, 5 empty
    src = torch.tensor([[5.0, -7.0], [6.0, -8.0], [-1.0, 4.0]], requires_grad=True)
    out = ops.segment_reduce(src, row_ptr, reduce)
    assert torch.equal(out[[0, 2, 3, 5]], torch.zeros(4, 2))  # empty rows give 0
    expected = {
        "sum": [[11.0, -15.0], [-1.0, 4.0]],
        "mean": [[5.5, -7.5], [-1.0, 4.0]],
        "max": [[6.0, -7.0], [-1.0, 4.0]],
        "min": [[5.0, -8.0], [-1.0, 4.0]],
    }[reduce]
    assert torch.equal(out[[1, 4]], torch.tensor(expected))
    (g,) = torch.autograd.grad(out, src, torch.arange(1.0, 13.0).reshape(6, 2))
    expected_grad = {
        "sum": [[3.0, 4.0], [3.0, 4.0], [9.0, 10.0]],
        "mean": [[1.5, 2.0], [1.5, 2.0], [9.0, 10.0]],
        "max": [[0.0, 4.0], [3.0, 0.0], [9.0, 10.0]],
        "min": [[3.0, 0.0], [0.0, 4.0], [9.0, 10.0]],
    }[reduce]
    assert torch.equal(g, torch.tensor(expected_grad))


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduce", ["max", "min"])
def test_extremum_ties_go_to_lowest_edge(reduce, dtype):
    # row 0 small; row 1 huge (split into pieces) with its extremum repeated in several
    # pieces, the first copy not in the first piece; row 2 entirely tied
    row_ptr = torch.tensor([0, 5, 30_005, 30_008])
    sign = 1.0 if reduce == "max" else -1.0
    src = torch.rand(30_008, 2, dtype=torch.float64) * sign  # |values| < 1
    src[[1, 3, 4], 0] = 2.0 * sign
    src[[1, 2], 1] = 2.0 * sign
    src[[5 + 4100, 5 + 9000, 5 + 4100 + 4096, 5 + 29_999], 0] = 3.0 * sign
    src[[5 + 20_000, 5 + 29_000], 1] = 3.0 * sign
    src[30_005:] = 1.5 * sign
    src = src.to(dtype).requires_grad_()
    out = ops.segment_reduce(src, row_ptr, reduce)
    assert torch.equal(out.double(), torch.tensor([[2.0, 2.0], [3.0, 3.0], [1.5, 1.5]], dtype=torch.float64) * sign)
    (g,) = torch.autograd.grad(out, src, torch.ones(3, 2, dtype=dtype))
    expected = torch.zeros(30_008, 2, dtype=dtype)
    for e, c in [(1, 0), (1, 1), (5 + 4100, 0), (5 + 20_000, 1), (30_005, 0), (30_005, 1)]:
        expected[e, c] = 1
    assert torch.equal(g, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("reduce", ["max", "min"])
def test_extremum_wide_channels_huge_rows(make_csr, reduce, dtype):
    """Many channels (several tiles of the CPU max/min fold) on split rows, with ties and NaN."""
    row_ptr, M, E = csr(make_csr, "two_huge")
    src = random_src((E, 70), dtype)
    src[::97, ::3] = 0.5  # plenty of ties
    src[5000, 66] = float("nan")
    src = src.requires_grad_()
    out = ops.segment_reduce(src, row_ptr, reduce)
    ref, arg, _ = ref_reduce(src, row_ptr, reduce)
    assert_exact(out, ref)
    grad_out = random_src((M, 70), dtype)
    (g,) = torch.autograd.grad(out, src, grad_out)
    assert_exact(g, ref_reduce_grad(grad_out, row_ptr, reduce, arg))


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduce", ["max", "min"])
def test_extremum_nan_propagates(reduce, dtype):
    row_ptr = torch.tensor([0, 4, 8, 30_008])
    src = random_src((30_008, 2), dtype)
    src[2, 0] = float("nan")  # small row, channel 0 only
    src[[25_000, 27_000], 1] = float("nan")  # huge row, channel 1, late pieces: the first NaN wins
    src.requires_grad_()
    out = ops.segment_reduce(src, row_ptr, reduce)
    ref, _, _ = ref_reduce(src, row_ptr, reduce)
    assert_exact(out, ref)
    assert out.isnan().tolist() == [[True, False], [False, False], [False, True]]
    (g,) = torch.autograd.grad(out, src, torch.ones(3, 2, dtype=dtype))
    assert g[2, 0] == 1 and g[25_000, 1] == 1 and g[27_000, 1] == 0
    assert int((g != 0).sum()) == 6


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_extremum_of_infinite_rows(dtype):
    inf = float("inf")
    row_ptr = torch.tensor([0, 3, 3, 5, 20_005])  # row 1 empty; row 3 huge
    src = torch.full((20_005, 1), -inf, dtype=dtype)
    src[3:5] = inf
    out_max = ops.segment_reduce(src, row_ptr, "max")
    out_min = ops.segment_reduce(-src, row_ptr, "min")
    # a row of only -inf gives -inf for max (not the 0 of an empty row)
    assert out_max.flatten().tolist() == [-inf, 0.0, inf, -inf]
    assert out_min.flatten().tolist() == [inf, 0.0, -inf, inf]
    s = src.clone().requires_grad_()
    (g,) = torch.autograd.grad(ops.segment_reduce(s, row_ptr, "max"), s, torch.ones(4, 1, dtype=dtype))
    assert g.flatten().nonzero().flatten().tolist() == [0, 3, 5]  # ties: first edge of each row


def test_segment_reduce_thread_count_independent(make_csr):
    """One thread (another block / piece layout) and the default thread count both match the reference."""
    row_ptr, M, E = csr(make_csr, "huge_among_small")
    src = random_src((E, 3), torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = {r: ops.segment_reduce(src, row_ptr, r) for r in REDUCES}
    finally:
        torch.set_num_threads(before)
    for r in REDUCES:
        ref, _, scale = ref_reduce(src, row_ptr, r)
        assert_within(one[r], ref, sum_tol(ref, scale, torch.float64), r)
        assert_within(ops.segment_reduce(src, row_ptr, r), ref, sum_tol(ref, scale, torch.float64), r)


# --------------------------------------------------------------------------- segment_softmax


SOFTMAX_CASES = [
    ("M1", None), ("37rows", None), ("37rows", 4), ("1000rows_30pct_empty", 33), ("1000rows_30pct_empty", None),
    ("one_huge_row", None), ("huge_among_small", 4), ("two_huge", 1), ("split_boundaries", None),
]  # fmt: skip


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("case,heads", SOFTMAX_CASES, ids=heads_id)
def test_segment_softmax_matches_reference(make_csr, case, heads, dtype):
    row_ptr, M, E = csr(make_csr, case)
    shape = (E,) if heads is None else (E, heads)
    scores = random_scores(shape, dtype).requires_grad_()
    out = ops.segment_softmax(scores, row_ptr)
    assert out.dtype == dtype and out.shape == shape
    ref, lens = ref_softmax(scores, row_ptr)
    rel = softmax_rel_tol(lens, dtype)
    assert_within(out, ref, rel * ref + subnormal(dtype), "softmax forward")

    grad_out = random_src(shape, dtype)
    (grad,) = torch.autograd.grad(out, scores, grad_out)
    assert grad.dtype == dtype and grad.shape == shape
    # the backward works from the stored (dtype-rounded) output, so this reference does too
    grad_ref, scale = ref_softmax_grad(grad_out, out, row_ptr)
    assert_within(grad, grad_ref, 2 * rel * scale + subnormal(dtype), "softmax grad")
    if dtype == torch.float64:  # and fully independently, from the float64 reference output
        grad_ref, scale = ref_softmax_grad(grad_out, torch.from_numpy(ref), row_ptr)
        assert_within(grad, grad_ref, 2 * rel * scale, "softmax grad vs float64 reference")


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("case", ["1000rows_30pct_empty", "two_huge"])
def test_segment_softmax_rows_sum_to_one(make_csr, case, dtype):
    row_ptr, M, E = csr(make_csr, case)
    out = ops.segment_softmax((5 * torch.randn(E, 4)).to(dtype), row_ptr)
    R = Rows(row_ptr)
    sums = R.sum(np64(out))
    # each output has a small relative error and the outputs add up to 1
    tol = softmax_rel_tol(R.lens[R.nonempty][:, None], dtype)
    assert (np.abs(sums[R.nonempty] - 1) <= tol).all(), np.abs(sums[R.nonempty] - 1).max()
    assert (sums[~R.nonempty] == 0).all()
    assert bool((out >= 0).all()) and bool((out <= 1).all())


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_segment_softmax_large_magnitude_scores(dtype):
    row_ptr = torch.tensor([0, 3, 7, 7, 20_007])
    scores = torch.empty(20_007, dtype=torch.float64)
    scores[0:3] = torch.tensor([1e4, 1e4 - 1.0, -1e4], dtype=torch.float64)
    scores[3:7] = torch.tensor([-1e4, -1e4 + 2.0, -1e4 + 2.0, -1e4], dtype=torch.float64)
    scores[7:] = 1e4 - torch.rand(20_000, dtype=torch.float64) * 8
    scores[15_000] = 1e4  # the winner, far into the huge row
    scores = scores.to(dtype)
    out = ops.segment_softmax(scores, row_ptr)
    assert bool(torch.isfinite(out).all())
    ref, lens = ref_softmax(scores, row_ptr)
    assert_within(out, ref, softmax_rel_tol(lens, dtype) * ref + subnormal(dtype))
    if dtype not in LOW_PRECISION:  # 1e4 - 1 is not representable in float16 / bfloat16
        e = math.exp(-1.0)
        expected = np.array([1 / (1 + e), e / (1 + e), 0.0])
        assert_within(out[:3], expected, 4 * out_unit(dtype) * expected)


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_segment_softmax_masked_rows(dtype):
    inf = float("inf")
    # row 0: fully masked; row 1: partly masked; row 2: empty;
    # row 3: huge, fully masked; row 4: huge, masked except one edge in a late piece
    row_ptr = torch.tensor([0, 3, 6, 6, 10_006, 30_006])
    scores = torch.full((30_006, 2), -inf, dtype=torch.float64)
    scores[3:6, 0] = torch.tensor([0.0, -inf, math.log(3.0)], dtype=torch.float64)
    scores[3:6, 1] = torch.tensor([-inf, -inf, 7.0], dtype=torch.float64)
    scores[10_006 + 17_000] = torch.tensor([-50.0, 3.0], dtype=torch.float64)
    scores = scores.to(dtype).requires_grad_()
    out = ops.segment_softmax(scores, row_ptr)
    expected = np.zeros((30_006, 2))
    expected[3:6, 0] = [0.25, 0.0, 0.75]
    expected[5, 1] = 1.0
    expected[10_006 + 17_000] = 1.0
    assert_within(out, expected, 4 * out_unit(dtype) * expected)  # also: no NaN anywhere
    (g,) = torch.autograd.grad(out, scores, random_src((30_006, 2), dtype))
    assert not bool(g.isnan().any())
    assert not bool(g[:3].any()) and not bool(g[6:10_006].any())  # fully masked rows: zero gradient


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_segment_softmax_nan_propagates(dtype):
    row_ptr = torch.tensor([0, 4, 8, 8, 25_008])
    scores = random_src((25_008, 2), dtype)
    scores[1, 0] = float("nan")  # row 0, head 0
    scores[8 + 24_000, 1] = float("nan")  # huge row, head 1, in a late piece
    out = ops.segment_softmax(scores, row_ptr)
    assert bool(out[0:4, 0].isnan().all()) and not bool(out[0:4, 1].isnan().any())
    assert not bool(out[4:8].isnan().any())
    assert bool(out[8:, 1].isnan().all()) and not bool(out[8:, 0].isnan().any())


@pytest.mark.parametrize("case", ["37rows", "split_boundaries"])
def test_segment_softmax_non_contiguous(make_csr, case):
    row_ptr, M, E = csr(make_csr, case)
    scores = torch.randn(3, E, dtype=torch.float64).t()  # (E, 3), column-major
    assert not scores.is_contiguous()
    out = ops.segment_softmax(scores, row_ptr)
    ref, lens = ref_softmax(scores, row_ptr)
    assert_within(out, ref, softmax_rel_tol(lens, torch.float64) * ref)


# --------------------------------------------------------------------------- spmm


def spmm_check(row_ptr, col, values, x, dtype):
    """Forward and both gradients of ops.spmm against the numpy references."""
    M = row_ptr.numel() - 1
    feat = tuple(x.shape[1:])
    x = x.clone().requires_grad_()
    if values is not None:
        values = values.clone().requires_grad_()
    out = ops.spmm(row_ptr, col, values, x)
    assert out.dtype == dtype and out.shape == (M,) + feat
    ref, scale = ref_spmm(row_ptr, col, values, x)
    assert_within(out, ref, sum_tol(ref, scale, dtype), "spmm forward")

    grad_out = random_src((M,) + feat, dtype)
    inputs = (x,) if values is None else (x, values)
    grads = torch.autograd.grad(out, inputs, grad_out)
    gx, gx_scale, gv, gv_scale = ref_spmm_grads(row_ptr, col, values, x, grad_out)
    assert grads[0].dtype == dtype and grads[0].shape == x.shape
    assert_within(grads[0], gx, sum_tol(gx, gx_scale, dtype), "spmm grad x")
    if values is not None:
        assert grads[1].dtype == dtype and grads[1].shape == values.shape
        assert_within(grads[1], gv, sum_tol(gv, gv_scale, dtype), "spmm grad values")


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("with_values", [True, False], ids=["values", "no_values"])
@pytest.mark.parametrize("case", list(CASES))
def test_spmm_matches_reference(make_csr, case, with_values, dtype):
    row_ptr, M, E = csr(make_csr, case)
    N = num_cols_for(case)
    col_dtype = INDEX_DTYPES[list(CASES).index(case) % 2]  # both index dtypes over the cases
    values = random_src((E,), dtype) if with_values else None
    C = 3 if case in HUGE_CASES else 33
    spmm_check(row_ptr, random_col(E, N, col_dtype), values, random_src((N, C), dtype), dtype)


@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("C", CHANNELS)
@pytest.mark.parametrize("case", ["1000rows_30pct_empty", "huge_among_small"])
def test_spmm_channels_and_index_dtypes(make_csr, case, C, col_dtype):
    row_ptr, M, E, N, col = csr_and_col(make_csr, case, col_dtype)
    dtype = torch.float32
    spmm_check(row_ptr, col, random_src((E,), dtype), random_src((N, C), dtype), dtype)


@pytest.mark.parametrize("case", ["37rows", "two_huge"])
def test_spmm_trailing_dims(make_csr, case):
    row_ptr, M, E = csr(make_csr, case)
    N = num_cols_for(case)
    x = random_src((N, 2, 3), torch.float64)
    spmm_check(row_ptr, random_col(E, N, torch.int32), random_src((E,), torch.float64), x, torch.float64)


def test_spmm_non_contiguous(make_csr):
    row_ptr, M, E = csr(make_csr, "huge_among_small")
    N = 97
    col = torch.stack([random_col(E, N, torch.int64)] * 2, 1)[:, 1]
    values = torch.randn(E, 2, dtype=torch.float64)[:, 0]
    x = torch.randn(5, N, dtype=torch.float64).t()
    assert not (col.is_contiguous() or values.is_contiguous() or x.is_contiguous())
    out = ops.spmm(row_ptr, col, values, x)
    ref, scale = ref_spmm(row_ptr, col, values, x)
    assert_within(out, ref, sum_tol(ref, scale, torch.float64))


def test_spmm_small_exact():
    # 3 x 5 pattern; columns 1 and 4 are never referenced
    row_ptr = torch.tensor([0, 2, 2, 4])
    col = torch.tensor([0, 3, 3, 2])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    x = torch.arange(10.0).reshape(5, 2).requires_grad_()
    out = ops.spmm(row_ptr, col, values, x)
    assert torch.equal(out.detach(), torch.tensor([[12.0, 15.0], [0.0, 0.0], [34.0, 41.0]]))
    gx, gv = torch.autograd.grad(out, (x, values), torch.tensor([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]]))
    assert torch.equal(gx, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 4.0], [2.0, 3.0], [0.0, 0.0]]))
    assert torch.equal(gv, torch.tensor([0.0, 6.0, 7.0, 5.0]))
    unweighted = ops.spmm(row_ptr, col.int(), None, x).detach()
    assert torch.equal(unweighted, torch.tensor([[6.0, 8.0], [0.0, 0.0], [10.0, 12.0]]))


# --------------------------------------------------------------------------- sddmm


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case,C", CASE_CHANNELS)
def test_sddmm_matches_reference(make_csr, case, C, col_dtype, dtype):
    row_ptr, M, E, N, col = csr_and_col(make_csr, case, col_dtype)
    a = random_src((M, C), dtype).requires_grad_()
    b = random_src((N, C), dtype).requires_grad_()
    out = ops.sddmm(row_ptr, col, a, b)
    assert out.dtype == dtype and out.shape == (E,)
    ref, scale = ref_sddmm(row_ptr, col, a, b)
    assert_within(out, ref, sum_tol(ref, scale, dtype), "sddmm")

    # documented as differentiable in a and b
    grad_out = random_src((E,), dtype)
    ga, gb = torch.autograd.grad(out, (a, b), grad_out)
    assert ga.dtype == gb.dtype == dtype and ga.shape == a.shape and gb.shape == b.shape
    R, g = Rows(row_ptr), np64(grad_out)
    ga_terms = g * np64(b)[col.long().numpy()]  # d out[e] / d a[row(e)], summed over the row
    ga_ref = R.sum(ga_terms)
    assert_within(ga, ga_ref, sum_tol(ga_ref, R.partial_sum_scale(ga_terms), dtype), "sddmm grad a")
    gb_terms = (g * np64(a)[R.rows])[np.argsort(col.long().numpy(), kind="stable")]  # grouped by column
    Rt = Rows(ref_transpose(row_ptr, col, N)[0])
    gb_ref = Rt.sum(gb_terms)
    assert_within(gb, gb_ref, sum_tol(gb_ref, Rt.partial_sum_scale(gb_terms), dtype), "sddmm grad b")


def test_sddmm_non_contiguous(make_csr):
    row_ptr, M, E = csr(make_csr, "37rows")
    col = torch.stack([random_col(E, 41, torch.int64)] * 2, 1)[:, 0]
    a = torch.randn(7, M, dtype=torch.float64).t()
    b = torch.randn(41, 14, dtype=torch.float64)[:, ::2]
    out = ops.sddmm(row_ptr, col, a, b)
    ref, scale = ref_sddmm(row_ptr, col, a, b)
    assert_within(out, ref, sum_tol(ref, scale, torch.float64))


def test_sddmm_small_exact():
    row_ptr = torch.tensor([0, 2, 2, 3])
    col = torch.tensor([1, 0, 1], dtype=torch.int32)
    a = torch.tensor([[1.0, 2.0], [9.0, 9.0], [-1.0, 3.0]])
    b = torch.tensor([[5.0, 7.0], [2.0, -1.0]])
    assert ops.sddmm(row_ptr, col, a, b).tolist() == [0.0, 19.0, -5.0]


# --------------------------------------------------------------------------- csr_transpose / index_to_row_ptr


@pytest.mark.parametrize("extra_cols", [0, 5])
@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", list(CASES))
def test_csr_transpose_matches_reference(make_csr, case, col_dtype, extra_cols):
    row_ptr, M, E, _, col = csr_and_col(make_csr, case, col_dtype)
    num_cols = int(col.max()) + 1 + extra_cols
    got = ops.csr_transpose(row_ptr, col, num_cols)
    for g, r, name in zip(got, ref_transpose(row_ptr, col, num_cols), ("row_ptr_t", "col_t", "perm")):
        assert g.dtype == torch.int64, name
        assert torch.equal(g, r), name


def test_csr_transpose_small_exact():
    # rows: 0 -> {2, 0}, 1 -> {}, 2 -> {2, 2, 1}   (3 x 4 pattern, column 3 unused)
    row_ptr = torch.tensor([0, 2, 2, 5])
    col = torch.tensor([2, 0, 2, 2, 1], dtype=torch.int32)
    row_ptr_t, col_t, perm = ops.csr_transpose(row_ptr, col, 4)
    assert row_ptr_t.tolist() == [0, 1, 2, 5, 5]
    assert col_t.tolist() == [0, 2, 0, 2, 2]
    assert perm.tolist() == [1, 4, 0, 2, 3]  # stable: equal columns keep the edge order


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", ["M1", "37rows", "1000rows_30pct_empty", "two_huge"])
def test_index_to_row_ptr_matches_reference(make_csr, case, index_dtype):
    row_ptr, M, E = csr(make_csr, case)
    index = torch.from_numpy(Rows(row_ptr).rows).to(index_dtype)
    for num_rows in (M, M + 3):
        got = ops.index_to_row_ptr(index, num_rows)
        expected = np.searchsorted(index.long().numpy(), np.arange(num_rows + 1), side="left")
        assert got.dtype == torch.int64
        assert np.array_equal(got.numpy(), expected)


def test_index_to_row_ptr_small():
    assert ops.index_to_row_ptr(torch.tensor([1, 1, 3]), 5).tolist() == [0, 0, 2, 2, 3, 3]
    assert ops.index_to_row_ptr(torch.tensor([], dtype=torch.long), 3).tolist() == [0, 0, 0, 0]
    assert ops.index_to_row_ptr(torch.tensor([], dtype=torch.int32), 0).tolist() == [0]


# --------------------------------------------------------------------------- zero rows / zero edges


EMPTY_GRAPHS = {"M0": torch.zeros(1, dtype=torch.long), "M4_all_rows_empty": torch.zeros(5, dtype=torch.long)}


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("graph", list(EMPTY_GRAPHS))
def test_raw_ops_zero_edges(graph, reduce):
    row_ptr = EMPTY_GRAPHS[graph]
    M = row_ptr.numel() - 1
    src = torch.empty(0, 3)
    out, _ = P.segment_reduce(src, row_ptr, reduce)
    assert torch.equal(out, torch.zeros(M, 3))
    assert P.segment_softmax(src, row_ptr).shape == (0, 3)
    col = torch.empty(0, dtype=torch.long)
    assert torch.equal(P.spmm(row_ptr, col, None, torch.randn(4, 3)), torch.zeros(M, 3))
    assert P.csr_sddmm(row_ptr, col, torch.randn(M, 3), torch.randn(4, 3)).shape == (0,)


@pytest.mark.parametrize("feat", [(), (3,), (2, 3)], ids=["1d", "C3", "2x3"])
@pytest.mark.parametrize("graph", list(EMPTY_GRAPHS))
def test_segment_reduce_zero_edges(graph, feat):
    row_ptr = EMPTY_GRAPHS[graph]
    M = row_ptr.numel() - 1
    src = torch.empty((0,) + feat, requires_grad=True)
    for reduce in REDUCES:
        out = ops.segment_reduce(src, row_ptr, reduce)
        assert torch.equal(out, torch.zeros((M,) + feat)), reduce
        (g,) = torch.autograd.grad(out, src, torch.ones_like(out))
        assert g.shape == src.shape


@pytest.mark.parametrize("heads", [None, 4], ids=["1d", "H4"])
@pytest.mark.parametrize("graph", list(EMPTY_GRAPHS))
def test_segment_softmax_zero_edges(graph, heads):
    shape = (0,) if heads is None else (0, heads)
    scores = torch.empty(shape, requires_grad=True)
    out = ops.segment_softmax(scores, EMPTY_GRAPHS[graph])
    assert out.shape == shape
    (g,) = torch.autograd.grad(out, scores, torch.ones_like(out))
    assert g.shape == shape


@pytest.mark.parametrize("N", [0, 4])
@pytest.mark.parametrize("graph", list(EMPTY_GRAPHS))
def test_spmm_sddmm_transpose_zero_edges(graph, N):
    row_ptr = EMPTY_GRAPHS[graph]
    M = row_ptr.numel() - 1
    col = torch.empty(0, dtype=torch.int32)
    x = torch.randn(N, 3, requires_grad=True)
    values = torch.empty(0, requires_grad=True)
    out = ops.spmm(row_ptr, col, values, x)
    assert torch.equal(out, torch.zeros(M, 3))
    gx, gv = torch.autograd.grad(out, (x, values), torch.ones(M, 3))
    assert torch.equal(gx, torch.zeros(N, 3)) and gv.shape == (0,)
    assert ops.sddmm(row_ptr, col, torch.randn(M, 3), torch.randn(N, 3)).shape == (0,)
    row_ptr_t, col_t, perm = ops.csr_transpose(row_ptr, col, N)
    assert row_ptr_t.tolist() == [0] * (N + 1) and col_t.numel() == 0 and perm.numel() == 0


# --------------------------------------------------------------------------- gradcheck (float64, small)


def small_csr():
    return torch.tensor([0, 3, 3, 4, 8, 8, 10])  # 6 rows, two empty, E = 10


SMALL_COL = [0, 4, 0, 2, 1, 1, 4, 0, 2, 4]  # 5 columns, column 3 unused


@pytest.mark.parametrize("reduce", REDUCES)
def test_gradcheck_segment_reduce(reduce):
    row_ptr = small_csr()
    if reduce in ("max", "min"):  # distinct values: the arg-extremum is locally constant
        src = (torch.randperm(30).double() / 3).reshape(10, 3)
    else:
        src = torch.randn(10, 3, dtype=torch.float64)
    src.requires_grad_()
    assert torch.autograd.gradcheck(lambda s: ops.segment_reduce(s, row_ptr, reduce), (src,))


def test_gradcheck_segment_reduce_trailing_dims():
    row_ptr = small_csr()
    src = torch.randn(10, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: ops.segment_reduce(s, row_ptr, "mean"), (src,))


@pytest.mark.parametrize("heads", [None, 3], ids=["1d", "H3"])
def test_gradcheck_segment_softmax(heads):
    row_ptr = small_csr()
    shape = (10,) if heads is None else (10, heads)
    scores = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: ops.segment_softmax(s, row_ptr), (scores,))


@pytest.mark.parametrize("col_dtype", INDEX_DTYPES, ids=dtype_id)
def test_gradcheck_spmm(col_dtype):
    row_ptr = small_csr()
    col = torch.tensor(SMALL_COL, dtype=col_dtype)
    values = torch.randn(10, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, xx: ops.spmm(row_ptr, col, v, xx), (values, x))
    assert torch.autograd.gradcheck(lambda xx: ops.spmm(row_ptr, col, None, xx), (x,))
    assert torch.autograd.gradcheck(lambda v: ops.spmm(row_ptr, col, v, x.detach()), (values,))


# --------------------------------------------------------------------------- opcheck (schemas, fake kernels, autograd)


def _opcheck_case(which):
    row_ptr, E, M = small_csr(), 10, 6
    col = torch.tensor(SMALL_COL)
    src = torch.randn(E, 3, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    v = torch.randn(E, dtype=torch.float64)
    op, _, variant = which.partition("-")
    if op == "segment_reduce":
        return P.segment_reduce.default, (src.requires_grad_(), row_ptr, variant)
    if op == "segment_reduce_backward":
        arg = P.segment_reduce(src, row_ptr, variant)[1]
        return P.segment_reduce_backward.default, (torch.randn(M, 3, dtype=torch.float64), row_ptr, arg, variant, E)
    if op == "segment_softmax":
        return P.segment_softmax.default, (src.requires_grad_(), row_ptr)
    if op == "segment_softmax_backward":
        grad, y = torch.randn(E, 3, dtype=torch.float64), P.segment_softmax(src, row_ptr)
        return P.segment_softmax_backward.default, (grad, y, row_ptr)
    if op == "spmm":
        values = {"values": v.requires_grad_(), "no_values": None, "no_grad": v}[variant]
        col = col.int() if variant == "no_values" else col
        return P.spmm.default, (row_ptr, col, values, x.requires_grad_(variant != "no_grad"))
    if op == "csr_sddmm":
        a = torch.randn(M, 3, dtype=torch.float64)
        if variant == "grad":  # differentiable in a and b since the double-backward change
            return P.csr_sddmm.default, (row_ptr, col, a.requires_grad_(), x.requires_grad_())
        return P.csr_sddmm.default, (row_ptr, col.int(), a, x)
    if op == "csr_transpose":
        return P.csr_transpose.default, (row_ptr, col.to(torch.int32 if variant == "int32" else torch.int64), 7)
    raise AssertionError(which)


OPCHECK_CASES = (
    [f"segment_reduce-{r}" for r in REDUCES]
    + [f"segment_reduce_backward-{r}" for r in REDUCES]
    + ["segment_softmax", "segment_softmax_backward", "spmm-values", "spmm-no_values", "spmm-no_grad"]
    + ["csr_sddmm", "csr_sddmm-grad", "csr_transpose-int64", "csr_transpose-int32"]
)


@pytest.mark.parametrize("which", OPCHECK_CASES)
def test_opcheck(which):
    op, args = _opcheck_case(which)
    torch.library.opcheck(op, args)


# --------------------------------------------------------------------------- torch.compile


def test_torch_compile_fullgraph_matches_eager():
    import torch._dynamo

    torch._dynamo.reset()
    row_ptr = small_csr()
    col = torch.tensor(SMALL_COL)

    def f(scores, x, src):
        att = ops.segment_softmax(scores, row_ptr)
        msg = ops.spmm(row_ptr, col, att, x)
        return msg * ops.segment_reduce(src, row_ptr, "max") + ops.segment_reduce(src, row_ptr, "mean")

    scores = torch.randn(10, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    src = (torch.randperm(30).double() / 7).reshape(10, 3).requires_grad_()
    eager = f(scores, x, src)
    g_eager = torch.autograd.grad(eager.sum(), (scores, x, src))
    graphs = []
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def backend(gm, example_inputs):  # aot_eager, recording what dynamo traced
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    compiled = torch.compile(f, fullgraph=True, backend=backend)
    out = compiled(scores, x, src)
    g_comp = torch.autograd.grad(out.sum(), (scores, x, src))
    assert len(graphs) == 1
    traced = {str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"}
    for op in ("pyengine.segment_softmax", "pyengine.spmm", "pyengine.segment_reduce"):
        assert any(op in t for t in traced), (op, traced)
    torch.testing.assert_close(out.detach(), eager.detach())
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b)
    # and eager is right: an independent float64 reference of the same function
    att, _ = ref_softmax(scores, row_ptr)
    msg, _ = ref_spmm(row_ptr, col, torch.from_numpy(att[:, 0]), x)
    ref = msg * ref_reduce(src, row_ptr, "max")[0] + ref_reduce(src, row_ptr, "mean")[0]
    assert np.allclose(eager.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_row_index_inverts_index_to_row_ptr():
    from pyengine.ops import index_to_row_ptr, row_index

    index = torch.tensor([0, 0, 2, 2, 2, 5])
    row_ptr = index_to_row_ptr(index, 7)
    assert torch.equal(row_index(row_ptr), index)
    assert torch.equal(row_index(row_ptr, 6), index)
    assert row_index(torch.zeros(4, dtype=torch.long)).numel() == 0
