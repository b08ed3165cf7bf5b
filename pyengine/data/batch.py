"""Padding-free batches of samples, laid out as torch-geometric lays out graphs.

Clouds of different sizes are concatenated along the point axis instead of padded;
``batch`` vectors (cloud id per row) and ``ptr`` offsets (cloud boundaries) tell
them apart. This is what :mod:`pyengine.ops` consumes (sorted batch vectors), so a
batch goes straight into batched neighbor search with no per-sample loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..ops.segment import row_index
from .sample import Sample

__all__ = ["Batch"]


def _ptr(counts: Sequence[int], device=None) -> Tensor:
    ptr = torch.zeros(len(counts) + 1, dtype=torch.long, device=device)
    if len(counts):
        ptr[1:] = torch.cumsum(torch.as_tensor(list(counts), dtype=torch.long, device=device), 0)
    return ptr


def _batch_vector(ptr: Tensor) -> Tensor:
    return row_index(ptr)


@dataclass
class Batch:
    """Several :class:`Sample` s concatenated along their point and query axes.

    Attributes (B samples, ΣN points, ΣM queries):
        points: (ΣN, d); batch: (ΣN,) int64 sample id per point; ptr: (B+1,) point offsets.
        features: (ΣN, C) or None (all samples have features, or none).
        queries: (ΣM, d) the query points of every sample (its input points where it had
            no separate queries); query_batch: (ΣM,); query_ptr: (B+1,).
        has_queries: (B,) bool, whether each sample had separate queries.
        fields: name -> (ΣM,) or (ΣM, k); every sample must have the same field names.
        cells: cell type -> (ΣC, nodes) int64 connectivity, already offset into ``points``;
            cell_ptr: cell type -> (B+1,) cell offsets.
        metadata: one dict per sample.
        weights: (ΣN,) quadrature weights of the points, or None (all samples have them, or none).
        query_features: (ΣM, C) the inputs at every sample's queries
            (:attr:`Sample.features_at_queries`), or None unless every sample has them.

    Sample ``i`` owns rows ``ptr[i]:ptr[i+1]`` of the point tensors and
    ``query_ptr[i]:query_ptr[i+1]`` of the query tensors.
    """

    points: Tensor
    batch: Tensor
    ptr: Tensor
    features: Tensor | None
    queries: Tensor
    query_batch: Tensor
    query_ptr: Tensor
    has_queries: Tensor
    fields: dict[str, Tensor] = field(default_factory=dict)
    cells: dict[str, Tensor] = field(default_factory=dict)
    cell_ptr: dict[str, Tensor] = field(default_factory=dict)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    weights: Tensor | None = None
    query_features: Tensor | None = None

    # ------------------------------------------------------------------ collation

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> "Batch":
        """Collate samples (same point dimension, same field names, features in all or none)."""
        samples = list(samples)
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        for i, s in enumerate(samples):
            if not isinstance(s, Sample):
                raise TypeError(f"samples[{i}] is a {type(s).__name__}, not a pyengine Sample")
        s0 = samples[0]
        for i, s in enumerate(samples):
            if s.dim != s0.dim:
                raise ValueError(f"samples[{i}] is {s.dim}-D but samples[0] is {s0.dim}-D")
            if (s.features is None) != (s0.features is None):
                raise ValueError(f"samples[{i}] and samples[0] disagree on having features (all or none)")
            if s.features is not None and s.features.shape[1] != s0.features.shape[1]:
                raise ValueError(f"samples[{i}] has {s.features.shape[1]} feature channels, "
                                 f"samples[0] has {s0.features.shape[1]}")
            if (s.weights is None) != (s0.weights is None):
                raise ValueError(f"samples[{i}] and samples[0] disagree on having quadrature weights (all or none)")
            if set(s.fields) != set(s0.fields):
                raise ValueError(f"samples[{i}] has fields {sorted(s.fields)}, samples[0] has {sorted(s0.fields)}")
            for k, v in s.fields.items():
                if v.shape[1:] != s0.fields[k].shape[1:]:
                    raise ValueError(f"fields[{k!r}] of samples[{i}] has trailing shape {tuple(v.shape[1:])}, "
                                     f"samples[0] has {tuple(s0.fields[k].shape[1:])}")
        ptr = _ptr([s.num_points for s in samples])
        query_ptr = _ptr([s.num_queries for s in samples])
        at_q = [s.features_at_queries for s in samples]
        cells, cell_ptr = {}, {}
        for kind in sorted({k for s in samples for k in s.cells}):
            blocks = [(s.cells[kind], int(ptr[i])) for i, s in enumerate(samples) if kind in s.cells]
            widths = {b.shape[1] for b, _ in blocks}
            if len(widths) != 1:
                raise ValueError(f"cells[{kind!r}] have different numbers of nodes per cell across samples")
            cells[kind] = torch.cat([b + off for b, off in blocks])
            cell_ptr[kind] = _ptr([len(s.cells[kind]) if kind in s.cells else 0 for s in samples])
        return cls(
            points=torch.cat([s.points for s in samples]),
            batch=_batch_vector(ptr),
            ptr=ptr,
            features=None if s0.features is None else torch.cat([s.features for s in samples]),
            queries=torch.cat([s.query_points for s in samples]),
            query_batch=_batch_vector(query_ptr),
            query_ptr=query_ptr,
            has_queries=torch.tensor([s.queries is not None for s in samples]),
            fields={k: torch.cat([s.fields[k] for s in samples]) for k in s0.fields},
            cells=cells,
            cell_ptr=cell_ptr,
            metadata=[dict(s.metadata) for s in samples],
            weights=None if s0.weights is None else torch.cat([s.weights for s in samples]),
            query_features=None if any(f is None for f in at_q) else torch.cat(at_q),
        )

    collate = from_samples

    # ------------------------------------------------------------------ access

    @property
    def num_samples(self) -> int:
        return int(self.ptr.shape[0] - 1)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> Sample:
        """Sample ``i`` (negative indices count from the end), sliced back out of the batch."""
        b = self.num_samples
        if not isinstance(i, int):
            raise TypeError(f"batch index must be an int, got {type(i).__name__}")
        if not -b <= i < b:
            raise IndexError(f"sample index {i} out of range for a batch of {b}")
        i %= b
        p0, p1 = int(self.ptr[i]), int(self.ptr[i + 1])
        q0, q1 = int(self.query_ptr[i]), int(self.query_ptr[i + 1])
        cells = {}
        for kind, c in self.cells.items():
            c0, c1 = int(self.cell_ptr[kind][i]), int(self.cell_ptr[kind][i + 1])
            if c1 > c0:
                cells[kind] = c[c0:c1] - p0
        return Sample(
            points=self.points[p0:p1],
            features=None if self.features is None else self.features[p0:p1],
            queries=self.queries[q0:q1] if bool(self.has_queries[i]) else None,
            fields={k: v[q0:q1] for k, v in self.fields.items()},
            cells=cells,
            metadata=dict(self.metadata[i]),
            weights=None if self.weights is None else self.weights[p0:p1],
            query_features=(self.query_features[q0:q1]
                            if self.query_features is not None and bool(self.has_queries[i]) else None),
        )

    def to_samples(self) -> list[Sample]:
        """Every sample, in order (the inverse of :meth:`from_samples`)."""
        return [self[i] for i in range(self.num_samples)]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor on ``device``."""
        def mv(t):
            return t.to(device, non_blocking=non_blocking)

        return Batch(
            points=mv(self.points), batch=mv(self.batch), ptr=mv(self.ptr),
            features=None if self.features is None else mv(self.features),
            queries=mv(self.queries), query_batch=mv(self.query_batch), query_ptr=mv(self.query_ptr),
            has_queries=mv(self.has_queries),
            fields={k: mv(v) for k, v in self.fields.items()},
            cells={k: mv(v) for k, v in self.cells.items()},
            cell_ptr={k: mv(v) for k, v in self.cell_ptr.items()},
            metadata=[dict(m) for m in self.metadata],
            weights=None if self.weights is None else mv(self.weights),
            query_features=None if self.query_features is None else mv(self.query_features),
        )

    # ------------------------------------------------------------------ torch-geometric

    def to_pyg(self):
        """A ``torch_geometric.data.Batch``.

        Per sample: ``pos`` (points), ``x`` (features), ``query_pos`` (queries, with
        ``query_pos_batch``/``query_pos_ptr``), ``y_<name>`` (fields), ``cells_<type>_index``
        ((nodes, n_cells), offset by PyG like ``edge_index``), ``quad_weight`` (quadrature
        weights, when the samples have them), ``query_x`` (the inputs at the queries, when the
        batch has them), ``has_queries`` and ``meta``
        (metadata as a JSON string). :meth:`from_pyg` reverses it exactly.
        """
        from torch_geometric.data import Batch as PygBatch
        from torch_geometric.data import Data

        kinds = {k: c.shape[1] for k, c in self.cells.items()}
        data = []
        for i, s in enumerate(self.to_samples()):
            attrs = {"pos": s.points, "query_pos": s.query_points,
                     "has_queries": self.has_queries[i:i + 1].clone()}
            if s.features is not None:
                attrs["x"] = s.features
            if s.weights is not None:
                attrs["quad_weight"] = s.weights
            if self.query_features is not None:  # every sample, so all Data share the key
                attrs["query_x"] = self.query_features[int(self.query_ptr[i]):int(self.query_ptr[i + 1])]
            attrs.update({f"y_{k}": v for k, v in s.fields.items()})
            for kind, width in kinds.items():
                c = s.cells.get(kind, torch.zeros((0, width), dtype=torch.long, device=s.points.device))
                attrs[f"cells_{kind}_index"] = c.t().contiguous()
            try:
                attrs["meta"] = json.dumps(s.metadata, sort_keys=True)
            except TypeError as exc:
                raise TypeError(f"metadata of sample {i} is not JSON-serialisable ({exc}); "
                                "PyG batches carry metadata as JSON strings") from None
            data.append(Data(num_nodes=s.num_points, **attrs))
        return PygBatch.from_data_list(data, follow_batch=["query_pos"])

    @classmethod
    def from_pyg(cls, pyg) -> "Batch":
        """A Batch from a PyG ``Batch`` (or a single ``Data``) laid out as :meth:`to_pyg` makes them.

        ``pos`` is required; ``x``, ``query_pos``, ``y_<name>``, ``cells_<type>_index`` and ``meta``
        are optional.
        """
        from torch_geometric.data import Batch as PygBatch

        data_list = pyg.to_data_list() if isinstance(pyg, PygBatch) else [pyg]
        samples = []
        for i, d in enumerate(data_list):
            if getattr(d, "pos", None) is None:
                raise ValueError(f"PyG data {i} has no 'pos' (the point coordinates)")
            keys = set(d.keys())
            has_q = bool(d.has_queries.reshape(-1)[0]) if "has_queries" in keys else "query_pos" in keys
            samples.append(Sample(
                points=d.pos,
                features=d.x if "x" in keys else None,
                queries=d.query_pos if has_q and "query_pos" in keys else None,
                fields={k[2:]: d[k] for k in sorted(keys) if k.startswith("y_")},
                cells={k[len("cells_"):-len("_index")]: d[k].t() for k in sorted(keys)
                       if k.startswith("cells_") and k.endswith("_index") and d[k].shape[1] > 0},
                metadata=json.loads(d.meta) if "meta" in keys else {},
                weights=d.quad_weight if "quad_weight" in keys else None,
                query_features=d.query_x if "query_x" in keys and has_q else None,
            ))
        return cls.from_samples(samples)
