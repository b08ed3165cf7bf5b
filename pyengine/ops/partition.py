"""Spatial domain decomposition: balanced k-d subdomains with halos.

Large meshes are processed in bounded-memory chunks: each leaf of a k-d split
of the points is one chunk, and its halo (the points outside the leaf within a
radius of the leaf's box) carries what a kernel of that radius needs from the
neighboring chunks. The same leaves are the NUNO-style subdomains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .neighbors import KDTree
from .segment import row_index


@dataclass
class Partition:
    """Leaves of a k-d split of ``N`` points (shapes in parentheses; ``L`` leaves).

    Attributes:
        perm: ``(N,)`` point indices grouped by leaf; leaf ``i`` holds
            ``perm[leaf_ptr[i]:leaf_ptr[i + 1]]``.
        leaf_ptr: ``(L + 1,)`` int64 offsets into ``perm``.
        boxes: ``(L, 2, d)`` tight bounding box of each leaf (min row, max row).
        halo_ptr, halo_idx: CSR over leaves of the points *outside* each leaf within
            ``halo_radius`` of its box (sorted by point index), or ``None`` without a radius.
        halo_radius: the radius the halos were built for, or ``None``.
    """

    perm: Tensor
    leaf_ptr: Tensor
    boxes: Tensor
    halo_ptr: Tensor | None = None
    halo_idx: Tensor | None = None
    halo_radius: float | None = None

    @property
    def num_leaves(self) -> int:
        return self.leaf_ptr.shape[0] - 1

    def leaf(self, i: int) -> Tensor:
        """Point indices of leaf ``i``."""
        return self.perm[self.leaf_ptr[i]:self.leaf_ptr[i + 1]]

    def halo(self, i: int) -> Tensor:
        """Point indices in the halo of leaf ``i`` (requires ``halo_radius``)."""
        if self.halo_ptr is None:
            raise ValueError("this partition was built without halo_radius")
        return self.halo_idx[self.halo_ptr[i]:self.halo_ptr[i + 1]]


def kd_partition(points: Tensor, max_leaf_points: int | None = None, n_parts: int | None = None,
                 halo_radius: float | None = None) -> Partition:
    """Split ``points (N, d)`` into balanced spatial leaves, optionally with halos.

    Give exactly one of ``max_leaf_points`` (leaves of at most that many points) or
    ``n_parts`` (leaves of at most ``ceil(N / n_parts)`` points, so at least ``n_parts``
    leaves; median splits keep sibling leaves within one point of each other).
    ``halo_radius`` (same unit as the points) adds each leaf's halo.
    """
    if (max_leaf_points is None) == (n_parts is None):
        raise ValueError("give exactly one of max_leaf_points and n_parts")
    n = points.shape[0] if isinstance(points, Tensor) and points.dim() >= 1 else 0
    if n_parts is not None:
        if int(n_parts) != n_parts or n_parts < 1:
            raise ValueError(f"n_parts must be an integer >= 1, got {n_parts!r}")
        max_leaf_points = max(1, math.ceil(n / n_parts))
    if int(max_leaf_points) != max_leaf_points or max_leaf_points < 1:
        raise ValueError(f"max_leaf_points must be an integer >= 1, got {max_leaf_points!r}")
    tree = KDTree(points, leaf_size=int(max_leaf_points))
    is_leaf = tree.nodes[:, 2] < 0
    leaves = torch.nonzero(is_leaf).flatten()
    begins = tree.nodes[leaves, 0]
    order = torch.argsort(begins)  # leaves in tree order cover [0, N) contiguously
    leaves, begins = leaves[order], begins[order]
    leaf_ptr = torch.cat([begins, begins.new_tensor([n])]) if n else begins.new_zeros(1)
    part = Partition(perm=tree.perm, leaf_ptr=leaf_ptr, boxes=tree.bounds[leaves])
    if halo_radius is not None:
        part.halo_ptr, part.halo_idx = _halos(tree, part, float(halo_radius))
        part.halo_radius = float(halo_radius)
    return part


def _halos(tree: KDTree, part: Partition, radius: float) -> tuple[Tensor, Tensor]:
    """Points outside each leaf within ``radius`` of its box, as CSR over leaves."""
    if not radius >= 0.0 or radius == float("inf"):
        raise ValueError(f"halo_radius must be finite and >= 0, got {radius}")
    boxes = part.boxes
    centers = boxes.mean(dim=1)
    # Candidates: the ball around the box center that contains the box grown by radius
    # (a kernel query); the exact point-to-box test below keeps the true halo.
    reach = 0.5 * (boxes[:, 1] - boxes[:, 0]).norm(dim=1) + radius
    reach = reach * (1 + 1e-6) + 1e-12  # the ball must not lose points to rounding
    row_ptr, col = tree.radius(centers.contiguous(), reach)
    leaf_of_edge = row_index(row_ptr, col.shape[0])
    p = tree.points[col]
    lo, hi = boxes[leaf_of_edge, 0], boxes[leaf_of_edge, 1]
    gap = (p - p.clamp(min=lo, max=hi)).norm(dim=1)
    leaf_of_point = torch.empty_like(part.perm)
    leaf_of_point[part.perm] = row_index(part.leaf_ptr, part.perm.shape[0])
    keep = (gap <= radius) & (leaf_of_point[col] != leaf_of_edge)
    halo_idx = col[keep]
    counts = torch.bincount(leaf_of_edge[keep], minlength=part.num_leaves)
    halo_ptr = torch.zeros(part.num_leaves + 1, dtype=torch.long, device=col.device)
    torch.cumsum(counts, 0, out=halo_ptr[1:])
    return halo_ptr, halo_idx
