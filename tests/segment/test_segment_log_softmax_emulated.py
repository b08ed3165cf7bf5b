"""segment_log_softmax's CUDA entry points (csrc/segment/segment_cuda.cu with log = true, the
warp-per-item CSR engine) on the CPU SIMT emulator, against the CPU kernels, including
rows split into 1024-edge pieces and merged."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.emulated
P = torch.ops.pyengine
LENS = {"small": [0, 3, 1, 0, 9, 30], "split_rows": [3, 0, 2500, 1025, 0, 7], "no_edges": [0, 0]}
TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


@pytest.mark.parametrize("layout", list(LENS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_forward_backward(emu, layout, dtype):
    lens = torch.tensor(LENS[layout])
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)])
    E = int(row_ptr[-1])
    scores = 3 * torch.randn(E, 2, dtype=dtype)
    got = emu.segment_log_softmax(scores, row_ptr)
    ref = P.segment_log_softmax(scores, row_ptr)
    torch.testing.assert_close(got, ref, rtol=TOL[dtype], atol=TOL[dtype] * 10)
    g = torch.randn_like(ref)
    torch.testing.assert_close(emu.segment_log_softmax_backward(g, ref, row_ptr),
                               P.segment_log_softmax_backward(g, ref, row_ptr), rtol=TOL[dtype], atol=TOL[dtype] * 10)
