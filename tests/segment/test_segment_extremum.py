"""Max/min specifics: the CPU's branch-free fold (value and winning edge in one
pass, channels in tiles of 64), long rows split into pieces, and need_arg=False
(no winning edges kept when no gradient is needed)."""

import pytest
import torch

from pyengine import ops

_raw = torch.ops.pyengine.segment_reduce


def _one_row(length):
    return torch.tensor([0, length], dtype=torch.long)


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_ties_and_nan_in_a_long_row(reduce):
    n, C = 1000, 3
    sign = 1.0 if reduce == "max" else -1.0
    src = torch.zeros(n, C)
    src[300, 0] = src[700, 0] = 5.0 * sign  # tie: the first wins
    src[600, 1] = float("nan")
    src[900, 1] = float("nan")  # first NaN wins
    src[:, 2] = -torch.inf * sign  # all equal to the identity-like value
    out, arg = _raw(src, _one_row(n), reduce, True)
    assert out[0, 0] == 5.0 * sign and torch.isnan(out[0, 1]) and out[0, 2] == -torch.inf * sign
    assert arg[0].tolist() == [300, 600, 0]


@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize("lengths", [[0, 3, 257, 0, 513, 1], [30_000], [1] * 50, [5000, 7, 20_000]])
def test_value_only_path_matches_tracked_path(reduce, lengths):
    torch.manual_seed(0)
    row_ptr = torch.zeros(len(lengths) + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(torch.tensor(lengths), 0)
    src = torch.randn(int(row_ptr[-1]), 70)
    src[::97] = float("nan")
    with_arg, arg = _raw(src, row_ptr, reduce, True)
    values_only, no_arg = _raw(src, row_ptr, reduce, False)
    assert no_arg.shape == (0,) and arg.shape == with_arg.shape
    torch.testing.assert_close(values_only, with_arg, equal_nan=True, rtol=0, atol=0)
    # the recorded winners hold the reduced values
    nonempty = arg >= 0
    picked = torch.gather(src, 0, arg.clamp(min=0))
    torch.testing.assert_close(picked[nonempty], with_arg[nonempty], equal_nan=True, rtol=0, atol=0)


def test_public_api_tracks_arg_only_when_grad_is_needed():
    row_ptr = _one_row(4)
    src = torch.tensor([[1.0], [3.0], [3.0], [2.0]], requires_grad=True)
    ops.segment_reduce(src, row_ptr, "max").sum().backward()
    assert src.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    with torch.no_grad():
        assert ops.segment_reduce(src, row_ptr, "max").item() == 3.0


def test_backward_without_arg_raises_clearly():
    src = torch.randn(4, 2, requires_grad=True)
    out, _ = _raw(src, _one_row(4), "max", False)
    with pytest.raises(RuntimeError, match="need_arg=False"):
        out.sum().backward()


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_large_outputs_advised_huge_pages_match_reference(reduce):
    """Outputs above 34 MiB get huge-page advice before their first write (the arg tensor
    here, 36 MB of int64): values and winners still match an independent reference
    (scatter_reduce, and the lowest edge holding the extremum)."""
    g = torch.Generator().manual_seed(3)
    M, C = 70_001, 64
    lengths = torch.randint(0, 4, (M,), generator=g)
    row_ptr = torch.zeros(M + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(lengths, 0)
    E = int(row_ptr[-1])
    src = torch.randint(-3, 4, (E, C), generator=g).float()  # small integers: many ties
    out, arg = _raw(src, row_ptr, reduce, True)
    assert arg.nbytes >= 34 << 20
    index = torch.repeat_interleave(torch.arange(M), lengths)
    ref = torch.zeros(M, C).scatter_reduce(0, index[:, None].expand(E, C), src,
                                           "amax" if reduce == "max" else "amin", include_self=False)
    assert torch.equal(out, ref)
    # the first edge of each row that holds the extremum, or -1 for an empty row
    hit = src == ref[index]
    edge = torch.arange(E)[:, None].expand(E, C)
    first = torch.full((M, C), E).scatter_reduce(0, index[:, None].expand(E, C),
                                                 torch.where(hit, edge, torch.full_like(edge, E)), "amin")
    assert torch.equal(arg, torch.where(lengths[:, None] > 0, first, torch.full_like(first, -1)))
