"""knn_bruteforce's CUDA kernel (csrc/bruteforce/knn_bruteforce_cuda.cu) on the CPU SIMT
emulator (tests/simt), against the CPU kernel and the float64 reference.

Layouts cross the kernel's tiles: clouds that start and end inside a 32-point
tile, blocks of 128 queries spanning several clouds, an empty cloud with
queries, dimensions that are not multiples of the 32-coordinate chunk, k larger
than a cloud (padded rows)."""

from __future__ import annotations

import pytest
import torch

from test_knn_bruteforce import check, ptr_of, reference

pytestmark = pytest.mark.emulated
P = torch.ops.pyengine

CASES = {
    "one_cloud": ([70], [20], 1, 5),
    "batched": ([37, 0, 5, 90, 1], [50, 9, 3, 80, 2], 3, 7),  # 144 queries: two blocks across clouds
    "wide": ([45, 20], [30, 12], 33, 4),  # two coordinate chunks, the second partial
    "k_above_cloud": ([3, 6], [4, 5], 2, 9),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("cosine", [False, True])
def test_matches_cpu_and_reference(emu, case, dtype, cosine):
    sp, sq, d, k = CASES[case]
    g = torch.Generator().manual_seed(len(case) + d)
    pts = torch.randn(sum(sp), d, generator=g, dtype=torch.float64).to(dtype)
    qs = torch.randn(sum(sq), d, generator=g, dtype=torch.float64).to(dtype)
    pptr, qptr = ptr_of(sp), ptr_of(sq)
    dist, idx = emu.knn_bruteforce(pts, qs, pptr, qptr, k, cosine)
    exact = dtype == torch.float64 and not (cosine and d == 1)  # d = 1 cosine: all ties (0 or 2)
    check(dist, idx, *reference(pts, qs, pptr, qptr, k, cosine), exact=exact)
    cpu_dist, cpu_idx = P.knn_bruteforce(pts, qs, pptr, qptr, k, cosine)
    if exact:
        assert torch.equal(idx, cpu_idx)
    torch.testing.assert_close(dist, cpu_dist, rtol=1e-5, atol=1e-6)


def test_ties_and_no_queries(emu):
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    qs = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    dist, idx = emu.knn_bruteforce(pts, qs, ptr_of([4]), ptr_of([2]), 3, False)
    assert idx.tolist() == [[0, 2, 1], [1, 3, 0]]
    d0, i0 = emu.knn_bruteforce(pts, qs[:0], ptr_of([4]), ptr_of([0]), 3, False)
    assert d0.shape == (0, 3) and i0.shape == (0, 3)
