"""index_softmax's CUDA kernels (csrc/segment/index_softmax_cuda.cu: atomicMax on ordered bit
images, atomicAdd sums) on the CPU SIMT emulator, against the CPU kernels."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.emulated
P = torch.ops.pyengine
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 2e-3}


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
@pytest.mark.parametrize("E,N,C", [(0, 4, 2), (300, 13, 3), (1500, 2, 1)])
def test_forward_backward(emu, log, dtype, E, N, C):
    g = torch.Generator().manual_seed(E + C)
    index = torch.randint(0, N, (E,), generator=g)
    src = (3 * torch.randn(E, C, generator=g)).to(dtype)
    if E:
        src[index == index[0]] = float("-inf")  # a fully masked group
        src[5, 0] = float("-inf")
        src[7] = -src[7].abs() - 1e4  # far below its group's max
    ref = P.index_softmax(src, index, N, log)
    got = emu.index_softmax(src, index, N, log)
    tol = TOL[dtype]
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    grad = torch.randn(E, C, generator=g).to(dtype)
    y = ref.double().clamp(min=-50).to(dtype) if log else ref
    torch.testing.assert_close(emu.index_softmax_backward(grad, y, index, N, log),
                               P.index_softmax_backward(grad, y, index, N, log), rtol=tol, atol=tol * 10)


def test_nan_sticks(emu):
    src = torch.tensor([[1.0], [float("nan")], [2.0], [0.5]])
    index = torch.tensor([1, 0, 1, 0])
    got = emu.index_softmax(src, index, 2, False)
    assert torch.isnan(got[[1, 3]]).all()
    torch.testing.assert_close(got, P.index_softmax(src, index, 2, False), equal_nan=True)
