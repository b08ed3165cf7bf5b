"""The one sample type that flows through pyengine: geometry in, fields out.

A :class:`Sample` holds one geometry (a surface or volume point set with
optional features and mesh connectivity), the points where fields are wanted
(``queries``; the input points when omitted) and, for training, the target
fields at those queries. Models never see file formats, only samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Sample"]


def _as_tensor(x: Any, dtype: torch.dtype | None, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"Sample.{name} contains NaN or Inf")
    return t


@dataclass
class Sample:
    """One geometry with its inputs and (optional) target fields.

    Attributes:
        points: (N, d) float input point coordinates (d = 2 or 3, physical units).
        features: (N, C) float per-point input features, or None.
        queries: (M, d) float points where fields are predicted; defaults to ``points``.
        fields: name -> (M,) or (M, k) target values at ``queries``.
        cells: cell type (meshio name: "triangle", "tetra", ...) -> (n_cells, nodes) int64
            connectivity into ``points``, or empty when the geometry is a bare point cloud.
        metadata: free-form JSON-friendly information (source file, shape parameters, ...).
        weights: (N,) positive quadrature weights of ``points`` (vertex areas, dual cell volumes
            or density estimates, :func:`pyengine.geometry.quadrature_weights`), or None. Models
            built with ``quadrature=True`` integrate with them.
        query_features: (M, C) the input features evaluated at ``queries`` (same channels as
            ``features``), or None. Only meaningful for features that are a function on the
            geometry rather than a per-vertex quantity (the ``smooth_normals`` recipe computes
            them exactly at each query). Models that use input features at the queries (gaot_fast's
            ``skip_at_query``) take them instead of interpolating ``features`` from nearby points;
            when None they interpolate. See :attr:`features_at_queries`.
    """

    points: torch.Tensor
    features: torch.Tensor | None = None
    queries: torch.Tensor | None = None
    fields: dict[str, torch.Tensor] = field(default_factory=dict)
    cells: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    weights: torch.Tensor | None = None
    query_features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.points = _as_tensor(self.points, None, "points")
        if not self.points.is_floating_point():
            self.points = self.points.to(torch.get_default_dtype())
        if self.points.dim() != 2 or self.points.shape[1] not in (2, 3):
            raise ValueError(f"Sample.points must have shape (N, 2) or (N, 3), got {tuple(self.points.shape)}")
        dtype = self.points.dtype
        n = self.points.shape[0]
        if self.features is not None:
            self.features = _as_tensor(self.features, dtype, "features")
            if self.features.dim() == 1:
                self.features = self.features[:, None]
            if self.features.dim() != 2 or self.features.shape[0] != n:
                raise ValueError(f"Sample.features must have shape ({n}, C), got {tuple(self.features.shape)}")
        if self.queries is not None:
            self.queries = _as_tensor(self.queries, dtype, "queries")
            if self.queries.dim() != 2 or self.queries.shape[1] != self.points.shape[1]:
                raise ValueError(
                    f"Sample.queries must have shape (M, {self.points.shape[1]}), got {tuple(self.queries.shape)}"
                )
        if self.weights is not None:
            self.weights = _as_tensor(self.weights, dtype, "weights")
            if self.weights.shape != (n,):
                raise ValueError(f"Sample.weights must have shape ({n},), got {tuple(self.weights.shape)}")
            if not bool((self.weights > 0).all()):
                raise ValueError("Sample.weights (quadrature weights) must be > 0")
        m = self.num_queries
        if self.query_features is not None:
            self.query_features = _as_tensor(self.query_features, dtype, "query_features")
            if self.query_features.dim() == 1:
                self.query_features = self.query_features[:, None]
            c = None if self.features is None else self.features.shape[1]
            if c is None or self.query_features.dim() != 2 or self.query_features.shape != (m, c):
                want = f"({m}, {c})" if c is not None else "None (the sample has no features)"
                raise ValueError(f"Sample.query_features must have shape {want}, got "
                                 f"{tuple(self.query_features.shape)}")
        self.fields = {k: _as_tensor(v, dtype, f"fields[{k!r}]") for k, v in self.fields.items()}
        for k, v in self.fields.items():
            if v.dim() not in (1, 2) or v.shape[0] != m:
                raise ValueError(f"Sample.fields[{k!r}] must have shape ({m},) or ({m}, k), got {tuple(v.shape)}")
        cells = {}
        for k, v in self.cells.items():
            c = torch.as_tensor(v).to(torch.int64)
            if c.dim() != 2:
                raise ValueError(f"Sample.cells[{k!r}] must be (n_cells, nodes_per_cell), got {tuple(c.shape)}")
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= n):
                raise ValueError(f"Sample.cells[{k!r}] indexes outside the {n} points")
            cells[k] = c
        self.cells = cells

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_queries(self) -> int:
        return int(self.points.shape[0] if self.queries is None else self.queries.shape[0])

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def query_points(self) -> torch.Tensor:
        """(M, d) the queries, or the input points when no separate queries were given."""
        return self.points if self.queries is None else self.queries

    @property
    def features_at_queries(self) -> torch.Tensor | None:
        """(M, C) the input features at the queries: :attr:`query_features` when given, the
        features themselves when the queries are the input points, else None."""
        if self.query_features is not None:
            return self.query_features
        return self.features if self.queries is None else None

    def to(self, device: torch.device | str) -> "Sample":
        """A copy with every tensor moved to ``device``."""
        return Sample(
            points=self.points.to(device),
            features=None if self.features is None else self.features.to(device),
            queries=None if self.queries is None else self.queries.to(device),
            fields={k: v.to(device) for k, v in self.fields.items()},
            cells={k: v.to(device) for k, v in self.cells.items()},
            metadata=dict(self.metadata),
            weights=None if self.weights is None else self.weights.to(device),
            query_features=None if self.query_features is None else self.query_features.to(device),
        )
