"""CPU tests of the fused CSR attention op (pyengine.ops.csr_attention).

The CPU kernels cut rows (and, in backward, columns) longer than
max(E / blocks + 1, 4096) edges into pieces merged afterwards; the huge layouts
below exercise that path.

Forward, lse and every gradient are compared with a plain gather -> softmax ->
scatter reference (tests/attention_reference.py) differentiated by autograd, in
float64; plus gradcheck, opcheck, awkward graphs, masking and bad inputs.
"""

from __future__ import annotations

import pytest
import torch

from pyengine import ops

from attention_reference import attention_ref, lse_ref

P = torch.ops.pyengine


def make_inputs(row_ptr, N, H, Dk, Dv, dtype=torch.float64, bias=False, index_dtype=torch.int64, seed=0):
    g = torch.Generator().manual_seed(seed)
    M, E = row_ptr.numel() - 1, int(row_ptr[-1])
    col = torch.randint(0, max(N, 1), (E,), generator=g).to(index_dtype)
    q = torch.randn(M, H, Dk, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(N, H, Dk, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(N, H, Dv, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(E, H, generator=g, dtype=torch.float64).to(dtype) if bias else None
    return q, k, v, col, b


def leaves(*ts):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in ts]


def check_against_reference(row_ptr, N, H, Dk, Dv, bias, index_dtype=torch.int64, atol=1e-10):
    q, k, v, col, b = make_inputs(row_ptr, N, H, Dk, Dv, bias=bias, index_dtype=index_dtype)
    ours = leaves(q, k, v, b)
    ref = leaves(q, k, v, b)
    out, lse = ops.csr_attention(ours[0], ours[1], ours[2], row_ptr, col, bias=ours[3], return_lse=True)
    out_ref = attention_ref(ref[0], ref[1], ref[2], row_ptr, col, bias=ref[3])
    torch.testing.assert_close(out, out_ref, atol=atol, rtol=1e-9)
    if row_ptr.numel() <= 400:
        torch.testing.assert_close(lse, lse_ref(q, k, row_ptr, col, b), atol=atol, rtol=1e-9)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (out_ref * w).sum().backward()
    for name, a, r in zip(("q", "k", "v", "bias"), ours, ref):
        if a is not None:
            torch.testing.assert_close(a.grad, r.grad, atol=atol, rtol=1e-9, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize(
    "layout,N,H,Dk,Dv,bias",
    [
        (dict(M=37, max_deg=9, empty_frac=0.2), 23, 1, 8, 8, False),
        (dict(M=37, max_deg=9, empty_frac=0.2), 23, 3, 5, 7, True),
        (dict(M=300, max_deg=40, empty_frac=0.3), 150, 4, 16, 16, True),
        (dict(M=1, max_deg=1, empty_frac=0.0), 1, 2, 3, 1, False),
        (dict(lens=[0, 0, 0]), 5, 2, 4, 4, True),  # no edges at all
        (dict(lens=[3, 0, 5000, 0, 1, 2]), 900, 2, 8, 5, True),  # one huge row among small and empty ones
        # rows and columns (2 sources) longer than the CPU split threshold (4096): folded in pieces, merged
        (dict(lens=[3000, 0, 9000, 5, 0]), 2, 2, 4, 3, True),
    ],
)
def test_matches_reference(make_csr, layout, N, H, Dk, Dv, bias):
    check_against_reference(make_csr(**layout), N, H, Dk, Dv, bias)


@pytest.mark.parametrize("layout", [dict(M=300, max_deg=40, empty_frac=0.3), dict(lens=[3000, 0, 9000, 5, 0])])
def test_backward_without_kept_edge_terms(make_csr, layout, monkeypatch):
    """Graphs whose per-edge softmax terms exceed the kernel's memory limit recompute them in the
    column pass; a limit of 0 bytes takes that path here (the default keeps them)."""
    monkeypatch.setenv("PYENGINE_ATTENTION_EDGE_TERMS_LIMIT", "0")
    check_against_reference(make_csr(**layout), 150 if "M" in layout else 2, 2, 8, 5, bias=True)


def test_int32_col_and_many_heads(make_csr):
    check_against_reference(make_csr(M=50, max_deg=12), 40, 8, 4, 6, bias=True, index_dtype=torch.int32)


def test_zero_rows_and_zero_sources():
    row_ptr = torch.zeros(1, dtype=torch.long)
    q, k, v = torch.zeros(0, 2, 4), torch.zeros(0, 2, 4), torch.zeros(0, 2, 3)
    out = ops.csr_attention(q, k, v, row_ptr, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 2, 3)
    # rows but no sources: every row is empty -> zeros
    row_ptr = torch.zeros(4, dtype=torch.long)
    q = torch.randn(3, 2, 4, requires_grad=True)
    out, lse = ops.csr_attention(q, k, v, row_ptr, torch.zeros(0, dtype=torch.long), return_lse=True)
    assert torch.equal(out, torch.zeros(3, 2, 3)) and torch.isneginf(lse).all()
    out.sum().backward()
    assert torch.equal(q.grad, torch.zeros_like(q))


def test_masked_edges_and_fully_masked_rows(make_csr):
    row_ptr = make_csr(lens=[4, 3, 0, 6])
    q, k, v, col, b = make_inputs(row_ptr, 7, 2, 4, 4, bias=True)
    b[4:7, :] = -torch.inf  # row 1 fully masked in both heads
    b[0, 0] = -torch.inf  # one masked edge in row 0, head 0
    b[8, 1] = -torch.inf
    ours, ref = leaves(q, k, v, b), leaves(q, k, v, b)
    out = ops.csr_attention(*ours[:3], row_ptr, col, bias=ours[3])
    out_ref = attention_ref(*ref[:3], row_ptr, col, bias=ref[3])
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros_like(out[1])) and torch.equal(out[2], torch.zeros_like(out[2]))
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=1e-10)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (out_ref * w).sum().backward()
    for a, r in zip(ours, ref):
        assert torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, r.grad, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("nan_edges", [slice(6, 7), slice(4099, 5003)], ids=["one_pass", "whole_last_piece"])
def test_nan_scores_propagate(make_csr, nan_edges):
    """NaN scores give NaN outputs, whether the row is folded in one pass or in pieces:
    a piece whose scores are all NaN (the 5000-edge row is cut after 4096) must not be
    mistaken for an empty one when the pieces merge."""
    row_ptr = make_csr(lens=[3, 5000, 2])
    q, k, v, col, b = make_inputs(row_ptr, 50, 1, 4, 4, bias=True)
    b[nan_edges] = torch.nan
    out, lse = ops.csr_attention(q, k, v, row_ptr, col, bias=b, return_lse=True)
    assert out[1].isnan().all() and lse[1].isnan().all()
    assert torch.isfinite(out[[0, 2]]).all() and torch.isfinite(lse[[0, 2]]).all()


def test_float32_and_half_types_accumulate_accurately(make_csr):
    row_ptr = make_csr(M=200, max_deg=30)
    q, k, v, col, b = make_inputs(row_ptr, 120, 2, 16, 8, bias=True)
    ref = attention_ref(q, k, v, row_ptr, col, bias=b)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 5e-3)):
        out = ops.csr_attention(q.to(dtype), k.to(dtype), v.to(dtype), row_ptr, col, bias=b.to(dtype))
        assert out.dtype == dtype
        # inputs rounded to dtype: compare with the reference on the rounded inputs
        r = attention_ref(q.to(dtype).double(), k.to(dtype).double(), v.to(dtype).double(), row_ptr, col,
                          bias=b.to(dtype).double())
        torch.testing.assert_close(out.double(), r, atol=tol * 4, rtol=tol)
        assert (out.double() - ref).abs().max() < 0.5


def test_gradcheck(make_csr):
    row_ptr = make_csr(lens=[3, 0, 5, 1, 2])
    q, k, v, col, b = make_inputs(row_ptr, 6, 2, 3, 2, bias=True)
    args = leaves(q, k, v, b)
    torch.autograd.gradcheck(lambda q, k, v, b: ops.csr_attention(q, k, v, row_ptr, col, bias=b, scale=0.7),
                             args, atol=1e-8)
    # through lse as well (its gradient is the softmax itself)
    torch.autograd.gradcheck(
        lambda q, k, v, b: [t.nan_to_num(neginf=0.0) for t in
                            ops.csr_attention(q, k, v, row_ptr, col, bias=b, return_lse=True)],
        args, atol=1e-8)


def test_gradcheck_without_bias(make_csr):
    row_ptr = make_csr(lens=[2, 4, 0, 3])
    q, k, v, col, _ = make_inputs(row_ptr, 5, 1, 4, 3)
    torch.autograd.gradcheck(lambda q, k, v: ops.csr_attention(q, k, v, row_ptr, col), leaves(q, k, v), atol=1e-8)


def test_opcheck(make_csr):
    row_ptr = make_csr(lens=[3, 0, 4, 2])
    q, k, v, col, b = make_inputs(row_ptr, 5, 2, 4, 3, bias=True)
    torch.library.opcheck(P.csr_attention, (row_ptr, col, *leaves(q, k, v, b), 0.5))
    torch.library.opcheck(P.csr_attention, (row_ptr, col, q, k, v, None, 0.5))
    out, lse = P.csr_attention(row_ptr, col, q, k, v, b, 0.5)
    g = torch.randn_like(out)
    delta = (g * out).sum(-1)
    row_ptr_t, col_t, perm = ops.csr_transpose(row_ptr, col, k.shape[0])
    torch.library.opcheck(P.csr_attention_backward,
                          (g, row_ptr, col, row_ptr_t, col_t, perm, q, k, v, b, lse, delta, 0.5))


def test_backward_is_deterministic(make_csr):
    row_ptr = make_csr(M=400, max_deg=25)
    q, k, v, col, b = make_inputs(row_ptr, 60, 2, 8, 8, dtype=torch.float32, bias=True)
    grads = []
    for _ in range(2):
        args = leaves(q, k, v, b)
        ops.csr_attention(*args[:3], row_ptr, col, bias=args[3]).square().sum().backward()
        grads.append([a.grad for a in args])
    for a, b_ in zip(*grads):
        assert torch.equal(a, b_)


class TestBadInputs:
    def setup_method(self):
        self.row_ptr = torch.tensor([0, 2, 3])
        self.col = torch.tensor([0, 1, 1])
        self.q, self.k, self.v = torch.randn(2, 2, 4), torch.randn(3, 2, 4), torch.randn(3, 2, 5)

    def call(self, **kw):
        a = dict(q=self.q, k=self.k, v=self.v, row_ptr=self.row_ptr, col=self.col)
        a.update(kw)
        return ops.csr_attention(a["q"], a["k"], a["v"], a["row_ptr"], a["col"], bias=a.get("bias"))

    def test_col_out_of_range(self):
        with pytest.raises(ValueError, match="col has entries >= the number of source points"):
            self.call(col=torch.tensor([0, 3, 1]))
        with pytest.raises(ValueError, match="col has negative entries"):
            self.call(col=torch.tensor([0, -1, 1]))

    def test_mismatched_lengths(self):
        with pytest.raises(ValueError, match="row_ptr\\[-1\\] must equal the length of col"):
            self.call(col=torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="q must have one row per CSR row"):
            self.call(q=torch.randn(3, 2, 4))
        with pytest.raises(ValueError, match="k must have shape"):
            self.call(k=torch.randn(3, 2, 3))
        with pytest.raises(ValueError, match="v must have shape"):
            self.call(v=torch.randn(4, 2, 5))
        with pytest.raises(ValueError, match="bias must have shape"):
            self.call(bias=torch.randn(3, 1))
        with pytest.raises(ValueError, match="row_ptr must be non-decreasing"):
            self.call(row_ptr=torch.tensor([0, 4, 3]))

    def test_types(self):
        with pytest.raises(TypeError, match="k has dtype"):
            self.call(k=self.k.double())
        with pytest.raises(TypeError, match="q must be float32"):
            self.call(q=self.q.long(), k=self.k.long(), v=self.v.long())
        with pytest.raises(TypeError, match="row_ptr must be int64"):
            self.call(row_ptr=self.row_ptr.int())
        with pytest.raises(ValueError, match="q must be 3-D"):
            self.call(q=self.q[:, 0])
        with pytest.raises(TypeError, match="q must be a torch.Tensor"):
            self.call(q=[1.0])


def test_double_backward_raises_clearly(make_csr):
    row_ptr = make_csr(lens=[2, 3])
    q, k, v, col, _ = make_inputs(row_ptr, 4, 1, 2, 2)
    q, k, v = leaves(q, k, v)
    (gq,) = torch.autograd.grad(ops.csr_attention(q, k, v, row_ptr, col).sum(), q, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gq.sum().backward()
