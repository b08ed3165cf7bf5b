"""Coordinate frames for file datasets: per geometry, or one for the whole dataset.

* ``"unit"``: each geometry centred on its bounding-box centre and scaled so its largest
  side spans [-1, 1] (as :mod:`pyengine.pipeline.frame` does for the generated datasets).
  Size is normalised away: a car and its half-scale copy look the same to the model.
* ``"dataset"``: one centre and one scale, from the bounding box of all training
  geometries. Relative size and position are kept, which matters in real CFD where the
  absolute size changes the answer (Reynolds number, blockage, ground clearance).

The frame travels in the checkpoint (:meth:`CoordinateFrame.state`), so prediction maps a
new geometry exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CoordinateFrame"]


def _center_scale(lo: np.ndarray, hi: np.ndarray, what: str) -> tuple[np.ndarray, float]:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    scale = float((hi - lo).max()) / 2
    if not scale > 0:
        raise ValueError(f"{what} has zero extent: all points coincide")
    return (lo + hi) / 2, scale


@dataclass
class CoordinateFrame:
    """``framed = (x - center) / scale``; ``kind`` "unit" (per geometry) or "dataset" (fixed)."""

    kind: str = "unit"
    center: list[float] | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("unit", "dataset"):
            raise ValueError(f"frame must be 'unit' or 'dataset', got {self.kind!r}")
        if self.kind == "dataset" and (self.center is None or self.scale is None or not self.scale > 0):
            raise ValueError("a 'dataset' frame needs a center and a positive scale")

    @classmethod
    def fit(cls, kind: str, train_bbox: list | None) -> "CoordinateFrame":
        """The frame of a dataset: "unit", or "dataset" from the training bounding box ``[lo, hi]``."""
        if kind == "unit":
            return cls("unit")
        c, s = _center_scale(train_bbox[0], train_bbox[1], "the training set")
        return cls("dataset", c.tolist(), s)

    def center_scale(self, lo, hi) -> tuple[np.ndarray, float]:
        """Centre (d,) and scale used for a geometry whose input points span the box ``[lo, hi]``."""
        if self.kind == "dataset":
            return np.asarray(self.center, dtype=np.float64), float(self.scale)
        return _center_scale(lo, hi, "the geometry")

    def apply(self, x: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
        """``(x - center) / scale`` in float32."""
        return ((np.asarray(x, dtype=np.float64) - center) / scale).astype(np.float32)

    def state(self) -> dict:
        return {"kind": self.kind, "center": self.center, "scale": self.scale}
