"""The canonical frame every geometry is mapped into before a model sees it.

Training and prediction place each geometry in the same frame: centred on its
bounding-box centre and scaled so the largest box side is 2 (coordinates in
[-1, 1] along that axis). Orientation is kept: flow-aligned fields depend on it,
so meshes are expected in the training's axis convention. The frame statistics
of the training set (sizes and aspect ratios) are stored in the checkpoint; what
``predict`` compares a new geometry against is the training envelope of
:mod:`pyengine.pipeline.envelope` (the frame is scale-free, so raw size is not part of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import Sample

__all__ = ["Frame", "FrameStats", "to_unit_frame"]


@dataclass
class Frame:
    """``unit = (x - center) / scale``; ``center (d,)``, ``scale`` a positive float (length units)."""

    center: Tensor
    scale: float

    @classmethod
    def of(cls, points: Tensor) -> "Frame":
        lo, hi = points.min(dim=0).values, points.max(dim=0).values
        scale = float((hi - lo).max()) / 2
        if not scale > 0:
            raise ValueError("geometry has zero extent: all points coincide")
        return cls((lo + hi) / 2, scale)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.center.to(x)) / self.scale

    def inverse(self, u: Tensor) -> Tensor:
        return u * self.scale + self.center.to(u)


def to_unit_frame(sample: Sample) -> tuple[Sample, Frame]:
    """The sample with points and queries mapped into the unit frame, and that frame.

    Quadrature weights are rescaled to the frame: by ``scale^2`` for a 3-D triangle surface,
    ``scale^d`` otherwise (volumes, clouds).
    """
    frame = Frame.of(sample.points)
    weights = sample.weights
    if weights is not None:
        tris, tets = sample.cells.get("triangle"), sample.cells.get("tetra")
        surface = sample.dim == 3 and tris is not None and tris.numel() > 0 and (tets is None or tets.numel() == 0)
        weights = weights / frame.scale ** (2 if surface else sample.dim)
    moved = Sample(points=frame.forward(sample.points), features=sample.features,
                   queries=None if sample.queries is None else frame.forward(sample.queries),
                   fields=dict(sample.fields), cells=dict(sample.cells),
                   metadata={**sample.metadata, "frame_center": frame.center.tolist(), "frame_scale": frame.scale},
                   weights=weights, query_features=sample.query_features)  # directions and scalars: frame-free
    return moved, frame


def _descriptor(points: Tensor) -> tuple[float, Tensor]:
    """Largest box side and the box sides relative to it (all 0 for coincident points, not 0/0)."""
    ext = (points.max(dim=0).values - points.min(dim=0).values).double()
    size = float(ext.max())
    return size, (ext / size if size > 0 else torch.zeros_like(ext))


@dataclass
class FrameStats:
    """Ranges of size (largest box side) and aspect (box sides / largest side) over a training set."""

    size_min: float
    size_max: float
    aspect_min: list[float]
    aspect_max: list[float]

    @classmethod
    def of(cls, samples) -> "FrameStats":
        sizes, aspects = zip(*(_descriptor(s.points) for s in samples))
        a = torch.stack(aspects)
        return cls(min(sizes), max(sizes), a.min(0).values.tolist(), a.max(0).values.tolist())
