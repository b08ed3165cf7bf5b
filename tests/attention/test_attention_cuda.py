"""CUDA parity tests of the fused attention and local basis-sum ops and their layers.

Marked ``cuda`` (skipped without a CUDA device or without pyengine's CUDA kernels;
see conftest.py). Inputs are made on the CPU; every forward output and gradient of
the CUDA kernels is compared with the CPU kernels, which tests/attention/test_attention.py and
tests/local/test_local.py check against plain references. float64 must agree to
rounding; float32 within accumulation-order tolerance (both accumulate in float32).
"""

from __future__ import annotations

import pytest
import torch

from pyengine import ops
from pyengine.nn import AttentionAggregation, LocalIntegral

pytestmark = pytest.mark.cuda
DEV = torch.device("cuda")
TOL = {torch.float64: dict(atol=1e-11, rtol=1e-10), torch.float32: dict(atol=2e-5, rtol=2e-4)}

LAYOUTS = {
    "random": dict(M=500, max_deg=40, empty_frac=0.2),
    "one_huge": dict(M=300, pattern="one_huge", huge=20_000, empty_frac=0.3),
    "no_edges": dict(lens=[0, 0, 0, 0]),
}


def run_attention(dev, q, k, v, b, row_ptr, col, w):
    args = [t.to(dev).requires_grad_(True) if t is not None else None for t in (q, k, v, b)]
    out, lse = ops.csr_attention(*args[:3], row_ptr.to(dev), col.to(dev), bias=args[3], return_lse=True)
    (out * w.to(dev)).sum().backward()
    return [out, lse] + [a.grad for a in args if a is not None]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("H,Dk,Dv,bias", [(1, 8, 8, False), (4, 16, 24, True), (2, 48, 100, True)])
def test_attention_parity(make_csr, layout, dtype, H, Dk, Dv, bias):
    row_ptr = make_csr(**LAYOUTS[layout])
    g = torch.Generator().manual_seed(0)
    M, E, N = row_ptr.numel() - 1, int(row_ptr[-1]), 400
    col = torch.randint(0, N, (E,), generator=g)
    q, k = torch.randn(M, H, Dk, generator=g, dtype=dtype), torch.randn(N, H, Dk, generator=g, dtype=dtype)
    v = torch.randn(N, H, Dv, generator=g, dtype=dtype)
    b = torch.randn(E, H, generator=g, dtype=dtype) if bias else None
    if b is not None and E > 10:
        b[:5] = -torch.inf
    w = torch.randn(M, H, Dv, generator=g, dtype=dtype)
    cpu = run_attention("cpu", q, k, v, b, row_ptr, col, w)
    gpu = run_attention(DEV, q, k, v, b, row_ptr, col, w)
    for a, c in zip(gpu, cpu):
        torch.testing.assert_close(a.cpu(), c, **TOL[dtype])


def test_attention_half_types_and_int32(make_csr):
    row_ptr = make_csr(M=200, max_deg=30)
    g = torch.Generator().manual_seed(1)
    E = int(row_ptr[-1])
    col = torch.randint(0, 150, (E,), generator=g, dtype=torch.int32)
    q, k, v = torch.randn(200, 2, 32, generator=g), torch.randn(150, 2, 32, generator=g), torch.randn(150, 2, 32, generator=g)
    ref = ops.csr_attention(q, k, v, row_ptr, col)
    for dtype in (torch.float16, torch.bfloat16):
        out = ops.csr_attention(q.to(DEV, dtype), k.to(DEV, dtype), v.to(DEV, dtype), row_ptr.to(DEV), col.to(DEV))
        torch.testing.assert_close(out.float().cpu(), ref, atol=5e-2, rtol=5e-2)


def test_attention_head_dim_limit_is_a_clear_error():
    row_ptr, col = torch.tensor([0, 1], device=DEV), torch.tensor([0], device=DEV)
    q = torch.randn(1, 1, 129, device=DEV)
    with pytest.raises(ValueError, match="head dims up to 128"):
        ops.csr_attention(q, q, q, row_ptr, col)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_local_parity(make_csr, layout, dtype):
    row_ptr = make_csr(**LAYOUTS[layout])
    g = torch.Generator().manual_seed(2)
    E, N, B, C = int(row_ptr[-1]), 300, 7, 33
    col = torch.randint(0, N, (E,), generator=g)
    psi, f = torch.randn(E, B, generator=g, dtype=dtype), torch.randn(N, C, generator=g, dtype=dtype)
    wts = torch.rand(N, generator=g, dtype=dtype)
    gw = torch.randn(row_ptr.numel() - 1, B, C, generator=g, dtype=dtype)
    res = []
    for dev in ("cpu", DEV):
        args = [t.to(dev).requires_grad_(True) for t in (psi, f, wts)]
        out = ops.local_basis_aggregate(args[0], args[1], row_ptr.to(dev), col.to(dev), args[2])
        (out * gw.to(dev)).sum().backward()
        res.append([out] + [a.grad for a in args])
    for a, c in zip(res[1], res[0]):
        torch.testing.assert_close(a.cpu(), c, **TOL[dtype])


def test_layers_parity():
    torch.manual_seed(3)
    y, x = torch.rand(2000, 3, dtype=torch.float64), torch.rand(500, 3, dtype=torch.float64)
    f = torch.randn(2000, 6, dtype=torch.float64)
    row_ptr, col = ops.radius_search(y, x, 0.15)
    for layer in (AttentionAggregation(6, 8, 3, heads=4).double(), LocalIntegral(6, 8, 3, radius=0.15, angular_order=2).double()):
        ref = layer(y, x, row_ptr, col, f)
        out = layer.to(DEV)(y.to(DEV), x.to(DEV), row_ptr.to(DEV), col.to(DEV), f.to(DEV))
        torch.testing.assert_close(out.cpu(), ref, atol=1e-10, rtol=1e-9)
        layer.cpu()
