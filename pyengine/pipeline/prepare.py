"""Turning raw samples (surface meshes with fields) into model inputs, the same way in training and prediction.

The recipe is stored in the checkpoint, so ``pyengine predict`` rebuilds the
inputs of a new mesh exactly as training did:

* ``"normals"``: per-vertex unit normals of the surface triangles (3 channels), from
  :func:`pyengine.geometry.normals.robust_vertex_normals` (the same code ``predict`` uses);
* ``"smooth_normals"``: the surface's normals averaged over a ball of radius
  :data:`SMOOTH_NORMALS_RADIUS` (frame units) with a smooth window, integrated exactly over the
  triangles (:func:`pyengine.geometry.windowed_normals.windowed_normals`), 3 channels. Unlike
  vertex normals, this is a property of the surface, not of its mesh: the same surface meshed
  finer gives the same input function, which is what discretization-convergent models need
  (issue 17). Sharp edges are rounded over that radius;
* ``"none"``: no features, coordinates only.

Coordinates go into the unit frame (:mod:`pyengine.pipeline.frame`).
"""

from __future__ import annotations

import torch

from ..data import Sample
from .frame import Frame, to_unit_frame

__all__ = ["FEATURE_RECIPES", "NORMAL_RECIPES", "feature_channels", "prepare_sample"]

FEATURE_RECIPES = ("normals", "smooth_normals", "none")
#: The recipes that give each point a surface normal (3 channels; need faces, or PCA on a cloud).
NORMAL_RECIPES = ("normals", "smooth_normals")

#: Window radius of ``"smooth_normals"`` in frame units (the largest box side is 2): 0.125, about
#: two edge lengths of the demo's training meshes (their mean edge is 0.06 frame units).
SMOOTH_NORMALS_RADIUS = 0.125


def feature_channels(recipe: str, dim: int = 3) -> int:
    """How many input channels a recipe gives."""
    if recipe not in FEATURE_RECIPES:
        raise ValueError(f"unknown feature recipe {recipe!r}; choose from {FEATURE_RECIPES}")
    return dim if recipe in NORMAL_RECIPES else 0


def _normals(sample: Sample, recipe: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recipe's (N, 3) normals at the points and, for ``"smooth_normals"`` with separate
    queries, the same function evaluated exactly at the (M, 3) queries (else None)."""
    from ..geometry.normals import robust_vertex_normals

    tris = sample.cells.get("triangle")
    if tris is None or tris.numel() == 0:
        raise ValueError(f"the {recipe!r} feature recipe needs a triangle surface (cells['triangle'])")
    # cleaned, angle-weighted, outward on closed parts, local PCA where faces cancel: always unit
    pts = sample.points.double().numpy()
    n, surface, _ = robust_vertex_normals(pts, tris.numpy())
    at_queries = None
    if recipe == "smooth_normals":
        scale = Frame.of(sample.points.double()).scale
        if sample.queries is not None:
            at_queries = torch.as_tensor(smooth_normals_at_queries(surface.points, surface.faces, pts, n,
                                                                   sample.queries.double().numpy(), scale),
                                         dtype=sample.points.dtype)
        n = smooth_normals(surface.points, surface.faces, pts, scale, fallback=n)
    return torch.as_tensor(n, dtype=sample.points.dtype), at_queries


def smooth_normals(points, faces, queries, frame_scale: float, *, fallback):
    """The ``"smooth_normals"`` features: :func:`windowed_normals` at :data:`SMOOTH_NORMALS_RADIUS`
    frame units (``frame_scale`` length units per frame unit); ``fallback`` where they cancel."""
    from ..geometry.windowed_normals import windowed_normals

    return windowed_normals(points, faces, queries, SMOOTH_NORMALS_RADIUS * frame_scale, fallback=fallback)


def smooth_normals_at_queries(points, faces, inputs, input_normals, queries, frame_scale: float):
    """:func:`smooth_normals` evaluated at (M, 3) ``queries`` that need not be input points: the
    recipe is a function on the surface, so nothing is interpolated between vertices. Where the
    window cancels, the vertex normal of the nearest of the (N, 3) ``inputs`` (``input_normals``)
    is kept, as at the vertices themselves. Training (``prepare_sample``) and ``pyengine predict``
    both call this."""
    from ..ops import knn

    nearest = knn(torch.as_tensor(inputs, dtype=torch.float64), torch.as_tensor(queries, dtype=torch.float64),
                  1)[1][:, 0].numpy()
    return smooth_normals(points, faces, queries, frame_scale, fallback=input_normals[nearest])


def prepare_sample(sample: Sample, recipe: str = "normals") -> tuple[Sample, Frame]:
    """The sample in the unit frame with the recipe's features; returns it and the frame used.

    With ``"smooth_normals"`` and separate queries, the prepared sample also carries
    ``query_features``: the same smooth normals evaluated at the queries themselves.

    The prepared sample also carries quadrature ``weights`` (vertex areas of a surface, dual
    volumes of a volume mesh, density estimates of a bare cloud; in frame units), computed
    here once: models built with ``quadrature=True`` integrate with them, others ignore them.
    Weights the sample already has are kept (rescaled to the frame).
    """
    from ..geometry.quadrature import quadrature_weights

    feature_channels(recipe, sample.dim)
    feats, at_queries = _normals(sample, recipe) if recipe != "none" else (None, None)
    weights = sample.weights if sample.weights is not None else quadrature_weights(sample)
    with_feats = Sample(points=sample.points, features=feats, queries=sample.queries, fields=dict(sample.fields),
                        cells=dict(sample.cells), metadata=dict(sample.metadata), weights=weights,
                        query_features=at_queries)
    return to_unit_frame(with_feats)
