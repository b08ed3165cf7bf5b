"""Turning raw samples (surface meshes with fields) into model inputs, the same way in training and prediction.

The recipe is stored in the checkpoint, so ``pyengine predict`` rebuilds the
inputs of a new mesh exactly as training did:

* ``"normals"``: per-vertex unit normals of the surface triangles (3 channels), from
  :func:`pyengine.geometry.normals.robust_vertex_normals` (the same code ``predict`` uses);
* ``"none"``: no features, coordinates only.

Coordinates go into the unit frame (:mod:`pyengine.pipeline.frame`).
"""

from __future__ import annotations

import torch

from ..data import Sample
from .frame import Frame, to_unit_frame

__all__ = ["FEATURE_RECIPES", "feature_channels", "prepare_sample"]

FEATURE_RECIPES = ("normals", "none")


def feature_channels(recipe: str, dim: int = 3) -> int:
    """How many input channels a recipe gives."""
    if recipe not in FEATURE_RECIPES:
        raise ValueError(f"unknown feature recipe {recipe!r}; choose from {FEATURE_RECIPES}")
    return dim if recipe == "normals" else 0


def _normals(sample: Sample) -> torch.Tensor:
    from ..geometry.normals import robust_vertex_normals

    tris = sample.cells.get("triangle")
    if tris is None or tris.numel() == 0:
        raise ValueError("the 'normals' feature recipe needs a triangle surface (cells['triangle'])")
    # cleaned, angle-weighted, outward on closed parts, local PCA where faces cancel: always unit
    n, _, _ = robust_vertex_normals(sample.points.double().numpy(), tris.numpy())
    return torch.as_tensor(n, dtype=sample.points.dtype)


def prepare_sample(sample: Sample, recipe: str = "normals") -> tuple[Sample, Frame]:
    """The sample in the unit frame with the recipe's features; returns it and the frame used.

    The prepared sample also carries quadrature ``weights`` (vertex areas of a surface, dual
    volumes of a volume mesh, density estimates of a bare cloud; in frame units), computed
    here once: models built with ``quadrature=True`` integrate with them, others ignore them.
    Weights the sample already has are kept (rescaled to the frame).
    """
    from ..geometry.quadrature import quadrature_weights

    feature_channels(recipe, sample.dim)
    feats = _normals(sample) if recipe == "normals" else None
    weights = sample.weights if sample.weights is not None else quadrature_weights(sample)
    with_feats = Sample(points=sample.points, features=feats, queries=sample.queries, fields=dict(sample.fields),
                        cells=dict(sample.cells), metadata=dict(sample.metadata), weights=weights)
    return to_unit_frame(with_feats)
