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

__all__ = ["box_grid", "moment_box", "nonzero_box", "points_box"]


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


#: Exponent of :func:`moment_box`'s moments: high enough that the box hugs the extremes, low enough
#: that a handful of extreme points (weight ~h^m each) cannot move it.
MOMENT_BOX_POWER = 8


@torch.no_grad()
def moment_box(points: Tensor, weights: Tensor, power: int = MOMENT_BOX_POWER) -> tuple[Tensor, Tensor]:
    """A box from the weighted moments of the points instead of their extremes (issue 17).

    Per axis ``a``: centre ``c_a = sum w x_a / sum w`` and half-width
    ``(p + 1)^(1/p) (sum w |x_a - c_a|^p / sum w)^(1/p)`` (``p = power``), which is exactly the
    extent's half for points spread uniformly along the axis and close to it for a body's
    surface. Both are integrals over the geometry, so they converge under refinement and barely
    move when the mesh is resampled or its vertices jittered, where the bounding box follows the
    few extreme vertices (every token moved when they did). Points may lie slightly outside the
    box; the models' padding covers it. Zero-extent axes are widened as in :func:`nonzero_box`.
    Computed in float64. ``points (N, d)``, ``weights (N,)`` positive; returns ``(lo, hi)`` (d,)
    in the dtype of ``points``.
    """
    x = points.double()
    w = weights.double().reshape(-1, 1)
    w = w / w.sum()
    centre = (w * x).sum(0)
    dev = (x - centre).abs()
    scale = dev.max(0).values.clamp_min(torch.finfo(torch.float64).tiny)  # normalise before the power
    half = scale * ((w * (dev / scale) ** power).sum(0) * (power + 1)) ** (1.0 / power)
    lo, hi = nonzero_box((centre - half).to(points.dtype), (centre + half).to(points.dtype))
    return lo, hi


def box_grid(points: Tensor, shape, padding: float, weights: Tensor | None = None):
    """:func:`pyengine.geometry.latent_grid` over the points' padded box, never of zero extent.

    The grid is the usual one unless its box would have a zero-extent axis (coincident
    points, or a flat geometry with ``padding == 0``); then it spans :func:`points_box`.
    With quadrature ``weights`` (N,), the box is :func:`moment_box` (padded the same way).
    """
    from ..geometry import latent_grid

    if weights is not None:
        return latent_grid(points, shape, padding=padding, bounds=moment_box(points, weights))
    grid = latent_grid(points, shape, padding=padding)
    if bool(((grid.upper - grid.lower) > 0).all()):
        return grid
    return latent_grid(points, shape, padding=padding, bounds=points_box(points))
