"""CUDA tests of the fused GNO kernel integral: parity with the CPU kernel, forward and all gradients.

Marked ``cuda`` (skipped without a GPU or without pyengine's CUDA kernels). Inputs
are generated on the CPU; the CPU kernel is checked against an independent
float64 reference in tests/gno/test_gno.py. float64 must agree to ~1e-10 (only the
summation order differs); float32 within 1e-4 relative (the CUDA v1 kernel uses
FP32 FMA, no TF32/bf16 tensor cores, so that tolerance is not loosened for them).
"""

from __future__ import annotations

import pytest
import torch

from pyengine import ops

from test_gno import in_width, random_graph, random_lens, random_mlp

pytestmark = pytest.mark.cuda
DEV = torch.device("cuda")


def run(graph, Ws, bs, act, transform, reduction, device, dtype):
    y, x, row_ptr, col, f, w = graph
    f_in = None if transform == "linear_kernelonly" else f
    leaves = [t.to(device, dtype).requires_grad_(True) for t in [y, x, w] + ([f_in] if f_in is not None else [])]
    ws = [W.to(device, dtype).requires_grad_(True) for W in Ws]
    b_ = [b.to(device, dtype).requires_grad_(True) for b in bs]
    yy, xx, ww = leaves[:3]
    ff = leaves[3] if f_in is not None else None
    out = ops.gno_integral(yy, xx, row_ptr.to(device), col.to(device), ff, ww, ws, b_, act, transform, reduction)
    g = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape).to(device)
    grads = torch.autograd.grad(out, leaves + ws + b_, g)
    return [out.cpu().double()] + [t.cpu().double() for t in grads]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("transform", ["linear", "nonlinear", "linear_kernelonly"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
# one_huge_row: 3000 edges > 1024, so the CUDA kernels cut it into pieces that add into the row with atomics.
@pytest.mark.parametrize(
    "lens", [None, [0, 0, 3000, 0, 7], [0, 0, 0]], ids=["random", "one_huge_row", "zero_edges"]
)
def test_cuda_matches_cpu(dtype, tol, transform, reduction, lens):
    lens = random_lens(200, max_deg=40) if lens is None else lens
    graph = random_graph(lens, N=150, d=3, C=40)
    Ws, bs = random_mlp([in_width(3, 40, transform), 64, 32, 40])
    cpu = run(graph, Ws, bs, "gelu", transform, reduction, "cpu", torch.float64)
    gpu = run(graph, Ws, bs, "gelu", transform, reduction, DEV, dtype)
    for k, (a, b) in enumerate(zip(gpu, cpu)):
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale, msg=lambda m: f"output {k}: {m}")


@pytest.mark.parametrize("act", ["relu", "silu", "tanh"])
@pytest.mark.parametrize("hidden", [(), (16,), (8, 9, 7)])
def test_cuda_activations_depths_int32(act, hidden):
    graph = random_graph(random_lens(90), N=70, d=2, C=300 if hidden == () else 5, col_dtype=torch.int32)
    C = graph[4].shape[1]
    Ws, bs = random_mlp([4, *hidden, C])
    cpu = run(graph, Ws, bs, act, "linear", "mean", "cpu", torch.float64)
    if C > 256:
        with pytest.raises(ValueError, match="at most 256 channels"):
            run(graph, Ws, bs, act, "linear", "mean", DEV, torch.float64)
        return
    gpu = run(graph, Ws, bs, act, "linear", "mean", DEV, torch.float64)
    for a, b in zip(gpu, cpu):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_cuda_bad_col_raises():
    y, x, row_ptr, col, f, w = random_graph([2, 3], N=4, d=2, C=3)
    Ws, bs = random_mlp([4, 5, 3])
    col = col.clone()
    col[0] = 4
    to = lambda ts: [t.to(DEV) for t in ts]  # noqa: E731
    with pytest.raises(ValueError, match="col has entries"):
        ops.gno_integral(*to([y, x, row_ptr, col, f, w]), to(Ws), to(bs))
