"""The segment ops' CUDA kernels, run on the CPU SIMT emulator (tests/simt), against the CPU kernels.

``torch.ops.pyengine_emu.*`` are the CUDA entry points of csrc/segment/segment_cuda.cu
(the warp-per-item CSR engine, its split-row merge kernel and the ATen-built
transpose) executed thread by thread on CPU tensors. Layouts include rows longer
than the engine's 1024-edge pieces, which take the split-and-merge path. Sums
agree to accumulation order, max/min (values and winning edges) and the
transpose exactly.
"""

from __future__ import annotations

import pytest
import torch


pytestmark = pytest.mark.emulated
P = torch.ops.pyengine

LAYOUTS = {
    "small": dict(M=37, max_deg=9, empty_frac=0.25),
    "split_rows": dict(lens=[3, 0, 2500, 1024, 1025, 0, 7]),  # pieces of 1024, merged by a second kernel
    "no_edges": dict(lens=[0, 0, 0]),
}
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 2e-2}


def close(a, b, dtype):
    if b.is_floating_point():
        scale = max(1.0, float(b.double().abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(a.double(), b.double(), rtol=TOL[dtype], atol=TOL[dtype] * scale)
    else:
        assert torch.equal(a, b)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_segment_reduce_and_backward(emu, make_csr, layout, reduce, dtype):
    row_ptr = make_csr(**LAYOUTS[layout])
    E = int(row_ptr[-1])
    src = torch.randn(E, 5, dtype=torch.float64).to(dtype)
    got, got_arg = emu.segment_reduce(src, row_ptr, reduce, True)
    ref, ref_arg = P.segment_reduce(src, row_ptr, reduce, True)
    close(got, ref, dtype)
    close(got_arg, ref_arg, dtype)
    # the values-only path (no arg-extremum, as forward without grad takes) is its own kernel instance
    values_only, _ = emu.segment_reduce(src, row_ptr, reduce, False)
    close(values_only, ref, dtype)
    g = torch.randn_like(ref)
    close(emu.segment_reduce_backward(g, row_ptr, ref_arg, reduce, E),
          P.segment_reduce_backward(g, row_ptr, ref_arg, reduce, E), dtype)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_segment_softmax_and_backward(emu, make_csr, layout, dtype):
    row_ptr = make_csr(**LAYOUTS[layout])
    E = int(row_ptr[-1])
    scores = 3 * torch.randn(E, 3, dtype=dtype)
    if E > 5:
        scores[:4] = -torch.inf  # masked edges, a fully masked row among them
    got, ref = emu.segment_softmax(scores, row_ptr), P.segment_softmax(scores, row_ptr)
    close(got, ref, dtype)
    g = torch.randn_like(ref)
    close(emu.segment_softmax_backward(g, ref, row_ptr), P.segment_softmax_backward(g, ref, row_ptr), dtype)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("col_dtype", [torch.int64, torch.int32], ids=str)
def test_spmm_sddmm_transpose(emu, make_csr, layout, col_dtype):
    row_ptr = make_csr(**LAYOUTS[layout])
    M, E, N = row_ptr.numel() - 1, int(row_ptr[-1]), 29
    col = torch.randint(0, N, (E,))
    col[::4] = 0  # a hub column: a long row of the transpose
    col = col.to(col_dtype)
    x, values = torch.randn(N, 6, dtype=torch.float64), torch.randn(E, dtype=torch.float64)
    for v in (None, values):
        close(emu.spmm(row_ptr, col, v, x), P.spmm(row_ptr, col, v, x), torch.float64)
    a, b = torch.randn(M, 6, dtype=torch.float64), torch.randn(N, 6, dtype=torch.float64)
    close(emu.csr_sddmm(row_ptr, col, a, b), P.csr_sddmm(row_ptr, col, a, b), torch.float64)
    for got, ref in zip(emu.csr_transpose(row_ptr, col, N), P.csr_transpose(row_ptr, col, N)):
        assert torch.equal(got, ref)
