"""segment_reduce on int32 / int64 src (sum, min, max; CPU, and CUDA when present) against a
torch reference: exact sums wrapped to the dtype (two's complement), extrema with their edges."""

from __future__ import annotations

import pytest
import torch

from pyengine.ops import segment_reduce

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and hasattr(torch.ops.pyengine, "segment_reduce") else [])


def reference(src, row_ptr, reduce):
    M = row_ptr.numel() - 1
    out = torch.zeros((M,) + src.shape[1:], dtype=src.dtype)
    arg = torch.full((M,) + src.shape[1:], src.shape[0], dtype=torch.long)
    for r in range(M):
        a, b = int(row_ptr[r]), int(row_ptr[r + 1])
        if a == b:
            continue
        seg = src[a:b]
        if reduce == "sum":
            # exact in Python ints, wrapped to the dtype
            bits = 32 if src.dtype == torch.int32 else 64
            tot = [sum(int(v) for v in seg[:, c]) for c in range(seg.shape[1])]
            wrapped = [((t + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)) for t in tot]
            out[r] = torch.tensor(wrapped, dtype=src.dtype)
        else:
            v, i = (seg.max(0) if reduce == "max" else seg.min(0))
            out[r], arg[r] = v, i + a
    return out, arg


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("reduce", ["sum", "min", "max"])
def test_matches_reference(device, dtype, reduce):
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([0, 3, 1, 0, 2500, 7, 1100])
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)])
    info = torch.iinfo(dtype)
    src = torch.randint(-50, 50, (int(row_ptr[-1]), 3), generator=g, dtype=torch.long)
    src[5:9, 0] = info.max  # overflowing sums in row 4
    src[10:14, 1] = info.min
    src[20:23, 2] = 7  # ties: the lowest edge wins
    src = src.to(dtype)
    ref_out, ref_arg = reference(src, row_ptr, reduce)
    if reduce == "sum":
        got = segment_reduce(src.to(device), row_ptr.to(device), "sum").cpu()
        assert got.dtype == dtype
        assert torch.equal(got, ref_out)
    else:
        got, arg = segment_reduce(src.to(device), row_ptr.to(device), reduce, return_arg=True)
        assert got.dtype == dtype
        assert torch.equal(got.cpu(), ref_out) and torch.equal(arg.cpu(), ref_arg)


def test_batched_and_errors():
    src = torch.arange(12, dtype=torch.int32).reshape(2, 6)
    indptr = torch.tensor([[0, 2, 6], [0, 0, 6]])
    assert segment_reduce(src, indptr, "sum").tolist() == [[1, 14], [0, 51]]
    with pytest.raises(TypeError, match="mean"):
        segment_reduce(src[0], torch.tensor([0, 6]), "mean")
    with pytest.raises(TypeError, match="int32 or int64"):
        segment_reduce(src[0].to(torch.int16), torch.tensor([0, 6]), "sum")
    # an empty row_ptr on an empty src
    assert segment_reduce(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.long), "max").shape == (0, 2)


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64], ids=str)
def test_cuda_kernels_emulated(emu, dtype):
    # the warp-per-item CUDA engine, including a row split into 1024-edge pieces
    lens = torch.tensor([0, 3, 2500, 1, 0, 40])
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)])
    src = torch.randint(-9, 9, (int(row_ptr[-1]), 2), dtype=torch.long)
    src[:4, 0] = torch.iinfo(dtype).max
    src = src.to(dtype)
    for reduce in ("sum", "min", "max"):
        got = emu.segment_reduce(src, row_ptr, reduce, True)
        ref = torch.ops.pyengine.segment_reduce(src, row_ptr, reduce, True)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
