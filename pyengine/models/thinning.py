"""Training-time thinning: the inputs are a random subset of a known, fixed discretization.

``TrainConfig.resample`` (issue 17) trains on a different subset of every geometry's points
each step. Rebuilt from scratch, the per-geometry structures of a family (token box,
neighbourhood graphs, geometry statistics) cost more than the step's forward and backward
(GAOT-fast with quadrature: about a third of a step on 2 CPU cores). When a family knows the
subset's parent, it builds them once from the parent, cached across steps, and per step only
filters the graphs to the kept points: exact for the graphs (a ball of the subset is the
parent's ball restricted to the kept points) and for their quadrature weights (a kept point
stands for ``1 / keep probability`` times its parent weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Thinning", "filter_csr"]


@dataclass(frozen=True)
class Thinning:
    """The input points are ``points[index]``, each kept with probability ``1 / inverse_keep``.

    Passed as ``model(..., thinning=)`` by the Trainer's resampling; families whose ``encode``
    takes it (today GAOT-fast with ``quadrature``) build their structures from the parent.

    Attributes:
        points: (N_parent, d) the parent discretization (the same tensor every step, so that
            per-geometry caches hit).
        weights: (N_parent,) the parent's quadrature weights, or None (the family's own density
            estimate of the parent).
        index: (N,) int64, the kept parent points, increasing.
        inverse_keep: (N,) the inverse keep probability of each kept point (>= 1): the factor on
            its parent quadrature weight that keeps every weighted sum unbiased.
    """

    points: Tensor
    weights: Tensor | None
    index: Tensor
    inverse_keep: Tensor

    def check(self, points: Tensor) -> None:
        """Raise ``ValueError`` unless this describes ``points`` (N, d) (shapes only: no device sync)."""
        n, d = points.shape
        if self.points.dim() != 2 or self.points.shape[1] != d:
            raise ValueError(f"thinning.points must be (N_parent, {d}), got {tuple(self.points.shape)}")
        if self.index.shape != (n,) or self.index.dtype != torch.int64:
            raise ValueError(f"thinning.index must be ({n},) int64, got {tuple(self.index.shape)} {self.index.dtype}")
        if self.inverse_keep.shape != (n,):
            raise ValueError(f"thinning.inverse_keep must be ({n},), got {tuple(self.inverse_keep.shape)}")
        if self.weights is not None and self.weights.shape != (self.points.shape[0],):
            raise ValueError(f"thinning.weights must be ({self.points.shape[0]},), got {tuple(self.weights.shape)}")

    def kept_weights(self, parent_weights: Tensor) -> Tensor:
        """(N,) quadrature weights of the kept points: parent weight times ``inverse_keep``."""
        return parent_weights.index_select(0, self.index) * self.inverse_keep.to(parent_weights.dtype)

    def new_index(self) -> Tensor:
        """(N_parent,) int64: each parent point's row among the kept points, -1 where dropped."""
        out = torch.full((self.points.shape[0],), -1, dtype=torch.int64, device=self.index.device)
        return out.index_put_((self.index,), torch.arange(self.index.shape[0], device=self.index.device))


def filter_csr(row_ptr: Tensor, col: Tensor, new_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A CSR graph over parent sources restricted to the kept ones.

    Args:
        row_ptr: (M + 1,) int64; col: (E,) parent source of each edge.
        new_index: (N_parent,) int64 from :meth:`Thinning.new_index` (-1: dropped).
    Returns ``(row_ptr', col', kept)``: the graph over the kept sources (their new indices, in
    the parent's edge order) and ``kept`` (E',) the parent edge ids it keeps, to gather per-edge data.
    """
    mapped = new_index.index_select(0, col.long())
    mask = mapped >= 0
    csum = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    torch.cumsum(mask, 0, out=csum[1:])
    kept = torch.nonzero(mask)[:, 0]
    return csum.index_select(0, row_ptr), mapped.index_select(0, kept).to(col.dtype), kept
