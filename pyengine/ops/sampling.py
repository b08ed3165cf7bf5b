"""Point sampling: farthest point sampling (FPS) over batched clouds.

PointNet++'s set abstraction, GAOT-style and RIGNO-style regional nodes pick
well-spread subsets of a cloud with FPS: start from one point, then repeatedly
add the point farthest (Euclidean) from all points chosen so far.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._extension import _C  # noqa: F401  (loads torch.ops.pyengine)

_ops = torch.ops.pyengine


def farthest_point_sampling(points: Tensor, ptr: Tensor, counts: Tensor, start: Tensor | None = None) -> Tensor:
    """Farthest point sampling of every cloud.

    Args:
        points: ``(N, d)`` float32/float64, any ``d >= 1``, clouds sorted and contiguous.
        ptr: int64 ``(B + 1,)`` cloud offsets.
        counts: int64 ``(B,)`` samples per cloud, each at most the cloud's size.
        start: int64 ``(B,)`` first sample of each cloud, an index local to the cloud
            (default: 0, i.e. deterministic).

    Returns:
        ``(counts.sum(),)`` int64 global point indices, cloud by cloud, in the order
        they were picked. Ties in the farthest distance go to the lowest index.
    """
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    if not isinstance(counts, Tensor) or counts.dim() != 1:
        raise ValueError("counts must be a 1-D int64 tensor with one entry per cloud")
    out_ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).long()
    if start is None:
        start = torch.zeros_like(out_ptr[1:])
    return _ops.fps(points.contiguous(), ptr, out_ptr, start)


@torch.library.register_fake("pyengine::fps")
def _fps_fake(points, ptr, out_ptr, start):
    total = torch.library.get_ctx().new_dynamic_size()
    return points.new_empty((total,), dtype=torch.long)
