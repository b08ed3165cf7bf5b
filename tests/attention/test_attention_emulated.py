"""The CUDA kernels of the fused attention op, run on the CPU SIMT emulator.

``cuda_emulation.emulated_ops()`` compiles ``attention_cuda.cu``
as host C++ against tests/simt (one fiber per CUDA thread,
missing barriers and shared-memory misuse show up as wrong results or errors)
and exposes them as ``torch.ops.pyengine_emu``; every output here is compared
with the CPU kernels (``torch.ops.pyengine``), which tests/attention/test_attention.py and
tests/local/test_local.py check against plain references. This is what covers
the CUDA code on machines without a GPU, in particular the paths a GPU test
needs large inputs for: rows and columns longer than ``cuda::kChunk`` (1024)
edges, which are cut into pieces whose partial results a second kernel merges.

The emulator costs about a microsecond per warp shuffle and thread switch, so
inputs are small (tens of rows, huge rows of ~2500 edges), and the wide head
dims / many heads run on the short-row layouts while the huge layouts use
cheaper lane layouts (D = 8: four edges per warp step).
"""

from __future__ import annotations

import pytest
import torch

from emulated_layouts import N_SRC, TOL, bf16, f16, f32, f64, i32, i64, make_layout

pytestmark = pytest.mark.emulated


def run_attention(ops, row_ptr, col, q, k, v, bias, grad_out, delta, scale):
    """Forward (out, lse) and every backward output of one op namespace."""
    out, lse = ops.csr_attention(row_ptr, col, q, k, v, bias, scale)
    row_ptr_t, col_t, perm = torch.ops.pyengine.csr_transpose(row_ptr, col, k.shape[0])
    grads = ops.csr_attention_backward(grad_out, row_ptr, col, row_ptr_t, col_t, perm, q, k, v, bias, lse, delta,
                                       scale)
    return dict(zip(("out", "lse", "grad_q", "grad_k", "grad_v", "grad_bias"), (out, lse, *grads)))


# (layout, dtype, heads, dk, dv, bias, col dtype)
ATTENTION_CASES = [
    ("random", f64, 1, 8, 8, False, i64),
    ("random", f64, 4, 16, 24, True, i64),
    ("random", f64, 4, 48, 100, True, i64),
    ("random", f32, 1, 8, 8, False, i32),
    ("random", f32, 4, 16, 24, True, i64),
    ("random", f32, 4, 48, 100, True, i64),
    ("random", f16, 1, 16, 24, True, i64),
    ("one_huge", f64, 4, 8, 8, True, i64),
    ("one_huge", f32, 1, 48, 100, True, i32),
    ("one_huge", f32, 4, 16, 24, True, i64),
    ("one_huge", bf16, 1, 8, 8, True, i64),
    ("two_huge", f64, 1, 16, 24, True, i64),
    ("two_huge", f32, 4, 8, 8, False, i64),
    ("huge_col", f64, 4, 8, 8, True, i64),
    ("huge_col", f32, 1, 16, 24, True, i32),
    ("huge_col", f16, 1, 8, 8, True, i64),
    ("no_edges", f32, 4, 16, 24, True, i64),
]


@pytest.mark.parametrize("layout,dtype,H,Dk,Dv,bias,index", ATTENTION_CASES,
                         ids=lambda x: str(x).replace("torch.", ""))
def test_attention_matches_cpu(emu, make_csr, layout, dtype, H, Dk, Dv, bias, index):
    g = torch.Generator().manual_seed(0)
    row_ptr, col = make_layout(make_csr, layout, g)
    M, E = row_ptr.numel() - 1, int(row_ptr[-1])

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    q, k, v, grad_out = randn(M, H, Dk), randn(N_SRC, H, Dk), randn(N_SRC, H, Dv), randn(M, H, Dv)
    b = None
    if bias:
        b = randn(E, H)
        if E > 0:
            b[torch.rand(E, H, generator=g) < 0.1] = -torch.inf  # masked edges
            longest = int((row_ptr[1:] - row_ptr[:-1]).argmax())
            b[row_ptr[longest]:row_ptr[longest + 1], 0] = -torch.inf  # a fully masked (row, head)
    col = col.to(index)
    scale = Dk ** -0.5
    # delta = <grad_out, out> (no grad_lse) from the CPU forward, the same for both backward ops.
    out_cpu, _ = torch.ops.pyengine.csr_attention(row_ptr, col, q, k, v, b, scale)
    acc = torch.float64 if dtype == f64 else torch.float32
    delta = (grad_out.to(acc) * out_cpu.to(acc)).sum(-1).contiguous()
    ref = run_attention(torch.ops.pyengine, row_ptr, col, q, k, v, b, grad_out, delta, scale)
    res = run_attention(emu, row_ptr, col, q, k, v, b, grad_out, delta, scale)
    for name, expected in ref.items():
        torch.testing.assert_close(res[name], expected, **TOL[dtype], msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("layout", ["lane_group", "piece"])
def test_attention_nan_score_propagates(emu, make_csr, layout):
    """A NaN score gives NaN outputs, as in the CPU's single-pass fold, even when it is the
    only unmasked score of a lane group (D = 8: four groups per warp) or of a row's piece:
    such a partial state has m = -inf, like an empty one, but l = NaN."""
    g = torch.Generator().manual_seed(2)
    if layout == "lane_group":  # row 1's second edge, alone in lane group 1
        row_ptr, nan_edge, masked = make_csr(lens=[3, 2, 4]), 3 + 1, slice(0, 0)
    else:  # the only unmasked edge of the second 1024-edge piece of a 2500-edge row
        row_ptr, nan_edge, masked = make_csr(lens=[5, 2500, 4]), 5 + 1500, slice(5 + 1024, 5 + 2048)
    M, E = row_ptr.numel() - 1, int(row_ptr[-1])
    col = torch.randint(0, N_SRC, (E,), generator=g)
    q, k, v = (torch.randn(n, 1, 8, generator=g) for n in (M, N_SRC, N_SRC))
    bias = torch.randn(E, 1, generator=g)
    bias[masked] = -torch.inf
    bias[nan_edge] = torch.nan
    ref = torch.ops.pyengine.csr_attention(row_ptr, col, q, k, v, bias, 0.5)
    res = emu.csr_attention(row_ptr, col, q, k, v, bias, 0.5)
    assert ref[0][1].isnan().all() and ref[1][1].isnan().all()  # the reference: row 1 is NaN, the others are not
    for a, b in zip(res, ref):
        torch.testing.assert_close(a, b, equal_nan=True, **TOL[f32])
