"""The fps CUDA kernel (csrc/sampling/fps_cuda.cu) on the CPU SIMT emulator (tests/simt),
against the CPU kernel and the float64 reference loop: one block per cloud,
strided point ownership, the two-level (warp, block) arg-max with lowest-index ties."""

from __future__ import annotations

import pytest
import torch

from test_fps import ref_fps

pytestmark = pytest.mark.emulated
P = torch.ops.pyengine


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("d", [2, 5])
def test_matches_cpu_and_reference(emu, dtype, d):
    g = torch.Generator().manual_seed(d)
    sizes = torch.tensor([600, 0, 1, 37])  # 600 > 512 threads: some threads own two points
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    pos = torch.randn(int(sizes.sum()), d, generator=g, dtype=torch.float64).to(dtype)
    counts = torch.tensor([40, 0, 1, 37])
    out_ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
    start = torch.tensor([599, 0, 0, 5])
    got = emu.fps(pos, ptr, out_ptr, start)
    assert torch.equal(got, P.fps(pos, ptr, out_ptr, start))
    assert torch.equal(got, ref_fps(pos, ptr, counts, start))


def test_ties_lowest_index(emu):
    pos = torch.tensor([[0.0], [1.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    got = emu.fps(pos, torch.tensor([0, 5]), torch.tensor([0, 4]), torch.tensor([0]))
    assert got.tolist() == [0, 1, 0, 0]
