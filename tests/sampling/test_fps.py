"""The fps op (csrc/sampling) against a float64 reference loop; opcheck, argument
errors and torch.compile(fullgraph=True). PyG-level behaviour is in tests/pyg."""

from __future__ import annotations

import pytest
import torch

from pyengine.ops import farthest_point_sampling

P = torch.ops.pyengine


def ref_fps(pos, ptr, counts, start):
    pos = pos.double()
    out = []
    for b in range(len(ptr) - 1):
        p0, p1, c = int(ptr[b]), int(ptr[b + 1]), int(counts[b])
        if c == 0:
            continue
        pts = pos[p0:p1]
        cur = int(start[b])
        mind = torch.full((p1 - p0,), float("inf"), dtype=torch.float64)
        out.append(p0 + cur)
        for _ in range(1, c):
            mind = torch.minimum(mind, ((pts - pts[cur]) ** 2).sum(1))
            cur = int(torch.argmax(mind))
            out.append(p0 + cur)
    return torch.tensor(out, dtype=torch.long)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 3, 10])
def test_matches_reference(dtype, d):
    g = torch.Generator().manual_seed(d)
    sizes = torch.tensor([13, 0, 1, 77, 30])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    pos = torch.randn(int(sizes.sum()), d, generator=g, dtype=torch.float64).to(dtype)
    counts = torch.tensor([5, 0, 1, 77, 9])
    start = torch.tensor([3, 0, 0, 50, 29])
    out = farthest_point_sampling(pos, ptr, counts, start)
    assert torch.equal(out, ref_fps(pos, ptr, counts, start))
    assert len(set(out.tolist())) == out.numel()  # distinct points: no repeats while unpicked points are apart


def test_duplicates_take_lowest_index():
    pos = torch.tensor([[0.0], [1.0], [1.0], [0.0], [1.0]])
    out = farthest_point_sampling(pos, torch.tensor([0, 5]), torch.tensor([3]))
    assert out.tolist() == [0, 1, 0]  # all remaining distances 0: the first index wins, as torch.argmax


def test_opcheck_and_compile():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(40, 3, generator=g)
    ptr = torch.tensor([0, 25, 40])
    out_ptr = torch.tensor([0, 10, 14])
    start = torch.tensor([2, 0])
    torch.library.opcheck(P.fps, (pos, ptr, out_ptr, start))

    def f(p):
        return P.fps(p, ptr, out_ptr, start)

    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
        assert torch.equal(compiled(pos), f(pos))


def test_errors():
    pos = torch.randn(10, 3)
    ptr = torch.tensor([0, 4, 10])
    with pytest.raises(ValueError, match="more samples"):
        P.fps(pos, ptr, torch.tensor([0, 5, 6]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="start"):
        P.fps(pos, ptr, torch.tensor([0, 2, 3]), torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="out_ptr must have length"):
        P.fps(pos, ptr, torch.tensor([0, 2]), torch.tensor([0, 0]))
    with pytest.raises(TypeError, match="float32 or float64"):
        P.fps(pos.long(), ptr, torch.tensor([0, 2, 3]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="ptr"):
        P.fps(pos, torch.tensor([0, 4, 9]), torch.tensor([0, 2, 3]), torch.tensor([0, 0]))
