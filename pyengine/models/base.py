"""What every model family shares: the forward contract, input checks, batching and graph caching.

Neighbor graphs depend only on the geometry (points, queries) and the radii,
never on the weights, so they are computed once per geometry and reused for
every training step: :class:`GraphCache` finds them by the identity of the
coordinate tensors (no host sync on a hit), falling back to a content hash of
the coordinates, together with the graph's parameters.
"""

from __future__ import annotations

import inspect
import weakref
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data.cache import content_hash

__all__ = ["GraphCache", "OperatorModel"]


class GraphCache:
    """A small in-memory LRU of per-geometry structures (CSR graphs, latent grids, subsamples).

    Lookups take two paths. The fast one keys on the identity of the coordinate
    tensors (the same tensor objects, unmodified since: same version counter,
    storage, shape, dtype and device), which is how a training loop presents a
    geometry it keeps on the device; it touches no tensor data, so a hit on a GPU
    costs no device-to-host copy and no synchronisation. Anything else (a copy of
    the coordinates, a tensor edited in place, one whose id was reused after it
    was freed) falls back to a SHA-256 hash of the coordinates' content, which
    finds the same entry whenever the values are identical.

    Under ``torch.compile`` the identity lookup is traced (dynamo turns it into
    guards on the tensors' identity), so a hit adds no graph break and no host sync.
    Version counters and content hashes cannot be traced: there a tensor edited in
    place keeps its cached structure, and a miss builds the structure inside the
    graph without storing it (a new geometry is also a recompile). To train a
    compiled model on many geometries, let the graphs be built eagerly once per
    geometry (e.g. one eager forward per sample) before the compiled steps.

    Args:
        max_entries: how many structures to keep; the least recently used is dropped first.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._store: OrderedDict[str, Any] = OrderedDict()
        # identity key -> (weak references to the tensors, their versions, content key)
        self._fast: dict[tuple, tuple[tuple, tuple[int, ...], str]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _identity(kind: str, tensors: tuple[Tensor, ...], params: tuple) -> tuple:
        return (kind, params, tuple(id(t) for t in tensors))

    def _fast_lookup(self, ident: tuple, tensors: tuple[Tensor, ...], check_versions: bool = True) -> str | None:
        entry = self._fast.get(ident)
        if entry is None:
            return None
        refs, versions, key = entry
        if not all(r() is t for r, t in zip(refs, tensors)) or key not in self._store:
            return None
        if check_versions and tuple(t._version for t in tensors) != versions:
            return None
        return key

    def get(self, kind: str, tensors: tuple[Tensor, ...], params: tuple, compute: Callable[[], Any]) -> Any:
        """The cached result of ``compute()`` for these coordinates and parameters.

        Args:
            kind: what is cached (one name per structure, e.g. ``"radius"``).
            tensors: the coordinate tensors the structure depends on (any device).
            params: hashable parameters of the structure (radii, caps, grid sizes).
            compute: builds the structure on a miss.
        """
        ident = self._identity(kind, tensors, params)
        if torch.compiler.is_compiling():
            # Traced: the identity lookup compiles to guards on the tensors (no graph break);
            # version counters and content hashes are not traceable, so a miss builds the
            # structure inside the graph and is not stored.
            key = self._fast_lookup(ident, tensors, check_versions=False)
            return self._store[key] if key is not None else compute()
        key = self._fast_lookup(ident, tensors)
        if key is None:
            key = content_hash(kind, tuple(t.detach() for t in tensors), params, str(tensors[0].device))
        if key in self._store:
            self._store.move_to_end(key)
            self.hits += 1
            value = self._store[key]
        else:
            self.misses += 1
            value = compute()
            self._store[key] = value
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)
        self._remember(ident, tensors, key)
        return value

    def _remember(self, ident: tuple, tensors: tuple[Tensor, ...], key: str) -> None:
        self._fast[ident] = (tuple(weakref.ref(t) for t in tensors), tuple(t._version for t in tensors), key)
        if len(self._fast) > 4 * self.max_entries:  # drop identities of freed tensors and evicted entries
            self._fast = {i: e for i, e in self._fast.items()
                          if e[2] in self._store and all(r() is not None for r in e[0])}

    def clear(self) -> None:
        self._store.clear()
        self._fast.clear()


class OperatorModel(nn.Module):
    """Base class of the model families: ``forward(points, features, queries) -> (M, C_out)``.

    Subclasses implement :meth:`encode` (points and features to a latent state)
    and :meth:`decode` (latent state to fields at any queries). The base checks
    the inputs, supplies ``queries = points`` when omitted, and runs batches.
    """

    family: str = ""

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: Any) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.coord_dim = in_channels, out_channels, coord_dim
        self.config = config
        self.graphs = GraphCache()

    def use_fused_kernels(self, enabled: bool = True) -> "OperatorModel":
        """Switch every layer with a fused kernel between it and its plain PyTorch path.

        The plain path (gather -> compute -> scatter, materialising per-edge tensors) is
        what peer libraries do; it exists for comparison (``bench/models.py``) and for
        features the fused kernels lack (e.g. double backward). Returns ``self``.
        """
        for module in self.modules():
            if hasattr(module, "fused") and isinstance(module.fused, bool):
                module.fused = bool(enabled)
        return self

    def encode(self, points: Tensor, features: Tensor, **kwargs) -> Any:
        """The geometry's latent state (depends on the input points only, never on the queries)."""
        raise NotImplementedError

    def decode(self, state: Any, queries: Tensor) -> Tensor:
        """Fields at ``queries (M, d)`` from a latent state: ``(M, C_out)``.

        Rows are independent, so decoding queries in chunks gives the same values
        as one pass; :func:`pyengine.pipeline.predict` relies on it for large meshes.
        """
        raise NotImplementedError

    def _takes(self, method: str, param: str) -> bool:
        """Whether this family's ``method`` (``encode`` or ``decode``) takes ``param`` (cached per class)."""
        cls = type(self)
        key = f"_{method}_takes_{param}"
        if key not in cls.__dict__:
            setattr(cls, key, param in inspect.signature(getattr(cls, method)).parameters)
        return cls.__dict__[key]

    def latent(self, points: Tensor, features: Tensor | None = None, weights: Tensor | None = None,
               thinning=None, **kwargs) -> Any:
        """Checked :meth:`encode`: the latent state of one geometry.

        Args:
            points: (N, d) input point coordinates (same units as the radii in the config).
            features: (N, C_in) per-point inputs, or None when ``in_channels == 0``.
            weights: (N,) positive quadrature weights of the points (vertex areas, dual volumes,
                :mod:`pyengine.geometry.quadrature`), or None. Families with a ``quadrature``
                option use them when it is on; families whose ``encode`` takes no weights ignore them.
            thinning: a :class:`~pyengine.models.thinning.Thinning` when the points are a random
                subset of a fixed parent discretization (the Trainer's ``resample``), or None.
                Families whose ``encode`` takes it build their per-geometry structures once from
                the parent; the others ignore it (the result is the same up to those structures).
            **kwargs: family-specific conditioning (e.g. ``time`` and ``lead_time``).
        """
        d = self.coord_dim
        if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[1] != d:
            raise ValueError(f"points must be a (N, {d}) tensor, got {getattr(points, 'shape', type(points))}")
        if points.shape[0] == 0:
            raise ValueError("points is empty")
        if features is None:
            if self.in_channels:
                raise ValueError(f"this model needs features of shape (N, {self.in_channels})")
            features = points.new_zeros(points.shape[0], 0)
        if features.dim() != 2 or features.shape != (points.shape[0], self.in_channels):
            raise ValueError(f"features must be ({points.shape[0]}, {self.in_channels}), got {tuple(features.shape)}")
        if not bool(torch.isfinite(points).all()):
            raise ValueError("points contain NaN or Inf")
        dtype = next(self.parameters()).dtype
        if weights is not None:
            from ._quadrature import check_weights

            weights = check_weights(weights, points.shape[0], dtype, points.device)
            if self._takes("encode", "weights"):
                kwargs["weights"] = weights
        if thinning is not None and self._takes("encode", "thinning"):
            thinning.check(points)
            kwargs["thinning"] = thinning
        return self.encode(points.to(dtype), features.to(dtype), **kwargs)

    def predict_at(self, state: Any, queries: Tensor, query_features: Tensor | None = None) -> Tensor:
        """Checked :meth:`decode`: ``(M, C_out)`` at ``queries (M, d)``.

        ``query_features (M, C_in)``: the input features evaluated at the queries
        (:attr:`pyengine.data.Sample.features_at_queries`), or None. Families whose ``decode``
        uses input features at the queries take them instead of interpolating; others ignore them.
        """
        d = self.coord_dim
        if not isinstance(queries, Tensor) or queries.dim() != 2 or queries.shape[1] != d:
            raise ValueError(f"queries must be a (M, {d}) tensor, got {getattr(queries, 'shape', type(queries))}")
        if not bool(torch.isfinite(queries).all()):
            raise ValueError("queries contain NaN or Inf")
        dtype = next(self.parameters()).dtype
        if query_features is None or not self._takes("decode", "query_features"):
            return self.decode(state, queries.to(dtype))
        if (not isinstance(query_features, Tensor) or query_features.dim() != 2
                or query_features.shape != (queries.shape[0], self.in_channels)):
            raise ValueError(f"query_features must be ({queries.shape[0]}, {self.in_channels}), got "
                             f"{tuple(getattr(query_features, 'shape', ()))}")
        if not bool(torch.isfinite(query_features).all()):
            raise ValueError("query_features contain NaN or Inf")
        return self.decode(state, queries.to(dtype), query_features=query_features.to(dtype))

    def forward(self, points: Tensor, features: Tensor | None = None, queries: Tensor | None = None,
                weights: Tensor | None = None, query_features: Tensor | None = None, thinning=None,
                **kwargs) -> Tensor:
        """Predict fields at ``queries`` (default: the input points) for one geometry.

        Shapes: ``points (N, d)``, ``features (N, C_in)`` (None if C_in = 0), ``queries (M, d)``,
        ``weights (N,)`` quadrature weights or None (see :meth:`latent`), ``query_features
        (M, C_in)`` the inputs at the queries or None (see :meth:`predict_at`) -> ``(M, C_out)``.
        ``thinning``: see :meth:`latent`. ``kwargs`` carry conditioning such as ``time`` / ``lead_time``.
        """
        state = self.latent(points, features, weights=weights, thinning=thinning, **kwargs)
        return self.predict_at(state, points if queries is None else queries, query_features=query_features)

    def forward_samples(self, samples, **kwargs) -> list[Tensor]:
        """Predictions for a sequence of :class:`~pyengine.data.Sample` (one per geometry)."""
        return [self(s.points, s.features, s.query_points, weights=getattr(s, "weights", None),
                     query_features=getattr(s, "query_features", None), **kwargs) for s in samples]

    def forward_batch(self, batch, **kwargs) -> Tensor:
        """Predictions for a :class:`~pyengine.data.Batch`: ``(sum of M_i, C_out)``, rows in the
        batch's query order (``batch.query_ptr`` splits them per geometry).

        Each geometry keeps its own latent structure (token grid, regional nodes), so the
        geometries run one after another through :meth:`forward`; the result equals the
        per-geometry forward exactly.
        """
        return torch.cat(self.forward_samples(batch.to_samples(), **kwargs), dim=0)
