"""The CUDA kernels of the local basis-sum op (``local_basis_aggregate``), run on the CPU SIMT emulator.

Compared with the CPU kernels, which tests/local/test_local.py checks against plain references, on the
layouts of tests/emulated_layouts.py (rows and columns longer than ``kChunk`` edges included).
"""

from __future__ import annotations

import pytest
import torch

from emulated_layouts import N_SRC, TOL, f32, f64, i32, i64, make_layout

pytestmark = pytest.mark.emulated


@pytest.mark.parametrize("layout", ["random", "one_huge", "two_huge", "huge_col", "no_edges"])
@pytest.mark.parametrize("dtype,weights,index", [(f64, True, i64), (f32, False, i32)],
                         ids=lambda x: str(x).replace("torch.", ""))
def test_local_matches_cpu(emu, make_csr, layout, dtype, weights, index):
    g = torch.Generator().manual_seed(1)
    row_ptr, col = make_layout(make_csr, layout, g)
    M, E, B, C = row_ptr.numel() - 1, int(row_ptr[-1]), 7, 5

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    psi, f, grad_out = randn(E, B), randn(N_SRC, C), randn(M, B, C)
    w = torch.rand(N_SRC, generator=g, dtype=torch.float64).to(dtype) if weights else None
    col = col.to(index)
    row_ptr_t, col_t, perm = torch.ops.pyengine.csr_transpose(row_ptr, col, N_SRC)
    results = []
    for ops in (torch.ops.pyengine, emu):
        out = ops.local_basis_aggregate(row_ptr, col, psi, f, w)
        grads = ops.local_basis_aggregate_backward(grad_out, row_ptr, col, row_ptr_t, col_t, perm, psi, f, w, True,
                                                   True, weights)
        results.append(dict(zip(("out", "grad_psi", "grad_f", "grad_weights"), (out, *grads))))
    ref, res = results
    for name, expected in ref.items():
        torch.testing.assert_close(res[name], expected, **TOL[dtype], msg=lambda m: f"{name}: {m}")
