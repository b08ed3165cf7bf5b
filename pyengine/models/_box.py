"""Degenerate-geometry guards shared by the model families' coordinate normalisations.

The families map coordinates into a box (``2 (p - lo) / (hi - lo) - 1``, NUFFT's
``[-pi, pi)``, radii in grid spacings). A plate (all z equal), a line of sensors
or a set of coincident points has a zero-extent axis, and that division is 0/0:
every prediction became NaN. :func:`nonzero_box` widens exactly the zero-extent
axes (the others are returned bit for bit), so such axes map to the box's middle
and every family predicts finite values on flat, collinear and coincident inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_grid", "nonzero_box", "points_box"]


def nonzero_box(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """``(lo, hi)`` (d,) corners with every axis of zero extent widened symmetrically.

    A zero-extent axis gets the width of the largest extent; when every axis has zero
    extent (coincident points), a width of ``max(1, |lo|) * 1e-3``, representable next to
    the coordinates. The families are scale-free within a box (radii in grid spacings,
    coordinates normalised to the box), so the width chosen there does not matter.
    Axes with ``hi > lo`` are unchanged.
    """
    ext = hi - lo
    flat = ~(ext > 0)
    if not bool(flat.any()):
        return lo, hi
    largest = ext.max()
    if not bool(largest > 0):
        largest = lo.abs().max().clamp_min(1.0) * 1e-3
    half = torch.where(flat, largest / 2, torch.zeros_like(ext))
    return lo - half, hi + half


def points_box(points: Tensor) -> tuple[Tensor, Tensor]:
    """The bounding box of ``points (N, d)``, zero-extent axes widened (:func:`nonzero_box`)."""
    return nonzero_box(points.min(dim=0).values, points.max(dim=0).values)


def box_grid(points: Tensor, shape, padding: float):
    """:func:`pyengine.geometry.latent_grid` over the points' padded box, never of zero extent.

    The grid is the usual one unless its box would have a zero-extent axis (coincident
    points, or a flat geometry with ``padding == 0``); then it spans :func:`points_box`.
    """
    from ..geometry import latent_grid

    grid = latent_grid(points, shape, padding=padding)
    if bool(((grid.upper - grid.lower) > 0).all()):
        return grid
    return latent_grid(points, shape, padding=padding, bounds=points_box(points))
