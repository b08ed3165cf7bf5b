"""What a model saw in training, and whether a new geometry lies inside it (out-of-distribution checks).

Every geometry is placed in the unit-box frame before the model sees it
(:mod:`pyengine.pipeline.frame`): centred and scaled so its largest box side is
2. That frame is scale-free, so the raw size (and the length unit) of a mesh
changes nothing the model sees; comparing raw sizes would warn on every mm-unit
export for no reason. What can differ is what survives the frame:

* the **shape of the box**: aspect ratios (box sides / largest side), per axis,
  since orientation is kept;
* **local geometry** at each vertex, in the unit frame: the point spacing (mean
  distance to the ``k`` nearest input points, log10) and, with normal features,
  the bend (mean ``1 - n_i . n_j`` over those neighbours: 0 on flat patches,
  large at creases and thin features);
* the **predicted values**: outside the range of the training targets.

:class:`TrainingEnvelope` stores these ranges in the checkpoint (``extra["envelope"]``,
plain floats, so it loads with ``weights_only=True``). :func:`assess` flags
each vertex whose local geometry or prediction falls outside them by more than
a margin, and returns one-line warnings for the geometry as a whole.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["FLAG_FIELD", "FLAG_GEOMETRY", "FLAG_OFF_SURFACE", "Assessment", "TrainingEnvelope", "assess",
           "local_descriptors"]

#: Bits of the per-vertex ``extrapolation`` field.
FLAG_FIELD = 1  # a predicted value outside the training range (widened by FIELD_MARGIN)
FLAG_GEOMETRY = 2  # local spacing or bend outside the training range (widened by the margins)
FLAG_OFF_SURFACE = 4  # not an input point of the model (a vertex in no face): predicted, not seen

FIELD_MARGIN = 0.1  # of the training range, on each side
SPACING_MARGIN = math.log10(2.0)  # a factor 2 finer or coarser than any training vertex
BEND_MARGIN = 0.05
ASPECT_TOLERANCE = 0.25
QUANTILES = (0.005, 0.995)
GEOMETRY_WARN_FRACTION = 0.05
K = 8


def local_descriptors(points: torch.Tensor, normals: torch.Tensor | None, k: int = K) -> dict[str, np.ndarray]:
    """Per point ``log_spacing`` (log10 mean distance to the ``k`` nearest other points) and, with
    normals, ``bend`` (mean ``1 - n_i . n_j`` over them). Points in the unit frame, (N, d)."""
    from .. import ops

    n = points.shape[0]
    kk = min(k, n - 1)
    if kk < 1:
        return {}
    p = points.detach().to("cpu", torch.float64).contiguous()
    dist, idx = ops.knn(p, p, kk + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop the point itself (distance 0 after merging)
    out = {"log_spacing": torch.log10(dist.mean(1).clamp_min(1e-12)).numpy()}
    if normals is not None:
        nrm = normals.detach().to("cpu", torch.float64)
        out["bend"] = (1.0 - (nrm[idx] * nrm[:, None, :]).sum(-1)).mean(1).numpy()
    return out


def _aspect(points: torch.Tensor) -> list[float]:
    """Box sides / largest side (zeros for coincident points), as the frame statistics define it."""
    from .frame import _descriptor

    return _descriptor(points)[1].tolist()


@dataclass
class TrainingEnvelope:
    """Ranges of what the model saw in training (see the module docstring).

    Attributes:
        frame: the frame the model's inputs were placed in (``"unit_box"``: scale-free).
        units: length unit of the training geometries, or None if unknown/dimensionless.
        aspect_min, aspect_max: per axis, box side / largest side.
        log_spacing: (low, high) quantiles of the per-vertex log10 spacing in the unit frame.
        bend: (low, high) quantiles of the per-vertex bend, or None without normal features.
        fields: name -> per channel [min, max] of the training targets (physical units).
        points: (min, max) number of input points per geometry.
    """

    frame: str = "unit_box"
    units: str | None = None
    aspect_min: list[float] = field(default_factory=list)
    aspect_max: list[float] = field(default_factory=list)
    log_spacing: tuple[float, float] | None = None
    bend: tuple[float, float] | None = None
    fields: dict[str, list[list[float]]] = field(default_factory=dict)
    points: tuple[int, int] | None = None

    @classmethod
    def of(cls, samples, fields: list[str] | tuple[str, ...], *, units: str | None = None,
           normals: bool | None = None) -> "TrainingEnvelope":
        """The envelope of prepared training samples (unit frame; features = normals when ``normals``,
        default: when the samples have 3 feature columns)."""
        samples = list(samples)
        if not samples:
            raise ValueError("TrainingEnvelope.of needs at least one sample")
        aspects = np.array([_aspect(s.points) for s in samples])
        spacing, bend = [], []
        for s in samples:
            use_n = normals if normals is not None else (s.features is not None and s.features.shape[1] == 3)
            d = local_descriptors(s.points, s.features if use_n else None)
            if "log_spacing" in d:
                spacing.append(d["log_spacing"])
            if "bend" in d:
                bend.append(d["bend"])
        ranges = {}
        for name in fields:
            vals = [s.fields[name].detach().double().reshape(s.fields[name].shape[0], -1) for s in samples
                    if name in s.fields]
            if vals:
                v = torch.cat(vals)
                ranges[name] = torch.stack([v.min(0).values, v.max(0).values], 1).tolist()
        q = lambda parts: tuple(float(x) for x in np.quantile(np.concatenate(parts), QUANTILES)) if parts else None  # noqa: E731
        counts = [s.num_points for s in samples]
        return cls(units=units, aspect_min=aspects.min(0).tolist(), aspect_max=aspects.max(0).tolist(),
                   log_spacing=q(spacing), bend=q(bend), fields=ranges, points=(min(counts), max(counts)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["log_spacing"] = None if self.log_spacing is None else list(self.log_spacing)
        d["bend"] = None if self.bend is None else list(self.bend)
        d["points"] = None if self.points is None else list(self.points)
        return d

    @classmethod
    def from_checkpoint(cls, extra: dict[str, Any]) -> "TrainingEnvelope | None":
        """The envelope stored in a checkpoint's ``extra`` (or one rebuilt from the older
        ``frame_stats`` entry: aspects only); None when neither is there or it is malformed."""
        d = extra.get("envelope") if isinstance(extra, dict) else None
        try:
            if isinstance(d, dict):
                pair = lambda v: None if v is None else (float(v[0]), float(v[1]))  # noqa: E731
                return cls(frame=str(d.get("frame", "unit_box")), units=d.get("units"),
                           aspect_min=[float(x) for x in d.get("aspect_min", [])],
                           aspect_max=[float(x) for x in d.get("aspect_max", [])],
                           log_spacing=pair(d.get("log_spacing")), bend=pair(d.get("bend")),
                           fields={str(k): [[float(a), float(b)] for a, b in v] for k, v in
                                   (d.get("fields") or {}).items()},
                           points=None if d.get("points") is None else (int(d["points"][0]), int(d["points"][1])))
            fs = extra.get("frame_stats") if isinstance(extra, dict) else None
            if isinstance(fs, dict):
                return cls(aspect_min=[float(x) for x in fs["aspect_min"]],
                           aspect_max=[float(x) for x in fs["aspect_max"]])
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        return None


@dataclass
class Assessment:
    """Per-vertex flags (bits FLAG_*) at the queries and one-line warnings for the whole geometry."""

    flag: np.ndarray
    warnings: list[str]
    counts: dict[str, int]
    checked: list[str]


def assess(env: TrainingEnvelope | None, points: torch.Tensor, normals: torch.Tensor | None,
           predictions: dict[str, torch.Tensor], query_is_input: np.ndarray, input_of_query: np.ndarray) -> Assessment:
    """Flag vertices outside the training envelope.

    Args:
        env: the checkpoint's envelope (None: only off-surface vertices can be flagged).
        points: (N, d) model input points in the unit frame; normals: (N, 3) or None.
        predictions: name -> (M,) or (M, k) predicted values at the queries (physical units).
        query_is_input: (M,) bool, the query is one of the input points.
        input_of_query: (M,) int64, which input point (valid where ``query_is_input``).
    """
    m = len(query_is_input)
    flag = np.zeros(m, dtype=np.uint8)
    flag[~query_is_input] |= FLAG_OFF_SURFACE
    warns, checked = [], []
    if env is not None:
        if env.aspect_min and len(env.aspect_min) == points.shape[1]:
            aspect = np.array(_aspect(points))
            lo, hi = np.array(env.aspect_min), np.array(env.aspect_max)
            if ((aspect < lo - ASPECT_TOLERANCE) | (aspect > hi + ASPECT_TOLERANCE)).any():
                warns.append(f"aspect ratios {[round(v, 3) for v in aspect.tolist()]} (box sides / largest) are "
                             f"outside the training range {[round(v, 3) for v in lo.tolist()]}.."
                             f"{[round(v, 3) for v in hi.tolist()]}; predictions may be unreliable")
            checked.append("aspect")
        desc = local_descriptors(points, normals if env.bend is not None else None)
        geo = np.zeros(points.shape[0], dtype=bool)
        notes = []
        if env.log_spacing is not None and "log_spacing" in desc:
            s = desc["log_spacing"]
            lo, hi = env.log_spacing
            out = (s < lo - SPACING_MARGIN) | (s > hi + SPACING_MARGIN)
            geo |= out
            if out.mean() > GEOMETRY_WARN_FRACTION:
                med = 10 ** float(np.median(s))
                rel = med / 10 ** ((lo + hi) / 2)
                notes.append(f"point spacing {med:.3g} in the unit frame vs {10 ** lo:.3g}..{10 ** hi:.3g} in training "
                             f"(about {rel:.2g}x; remesh nearer the training resolution)")
            checked.append("spacing")
        if env.bend is not None and "bend" in desc:
            b = desc["bend"]
            out = b > env.bend[1] + BEND_MARGIN
            geo |= out
            if out.mean() > GEOMETRY_WARN_FRACTION:
                notes.append(f"bend (1 - n.n' between neighbours) above the training maximum {env.bend[1]:.3g} at "
                             f"{out.mean():.0%} of the vertices (sharper or thinner features)")
            checked.append("bend")
        geo_q = np.zeros(m, dtype=bool)
        geo_q[query_is_input] = geo[input_of_query[query_is_input]]
        flag[geo_q] |= FLAG_GEOMETRY
        if geo.mean() > GEOMETRY_WARN_FRACTION:
            warns.append(f"{geo.mean():.0%} of the vertices have local geometry outside the training range: "
                         + "; ".join(notes))
        for name, v in predictions.items():
            rng = env.fields.get(name)
            if not rng:
                continue
            vv = v.detach().double().reshape(m, -1).numpy()
            r = np.asarray(rng, dtype=np.float64)  # (k, 2)
            if r.shape[0] != vv.shape[1]:
                continue
            width = np.maximum(r[:, 1] - r[:, 0], 1e-12)
            out = ((vv < r[:, 0] - FIELD_MARGIN * width) | (vv > r[:, 1] + FIELD_MARGIN * width)).any(1)
            flag[out] |= FLAG_FIELD
            checked.append(f"{name} range")
    counts = {"any": int((flag > 0).sum()), "field": int((flag & FLAG_FIELD > 0).sum()),
              "geometry": int((flag & FLAG_GEOMETRY > 0).sum()), "off_surface": int((flag & FLAG_OFF_SURFACE > 0).sum())}
    return Assessment(flag=flag, warnings=warns, counts=counts, checked=checked)
