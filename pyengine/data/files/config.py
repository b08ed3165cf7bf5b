"""Settings of a file dataset (``dataset: {kind: files, options: {...}}`` in the YAML)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FileDatasetConfig", "ForceConfig", "file_config_from_dict"]


def _vec(name: str, v: Any) -> tuple[float, ...]:
    try:
        t = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of 2 or 3 numbers, got {v!r}") from None
    if len(t) not in (2, 3) or not all(math.isfinite(x) for x in t) or not any(t):
        raise ValueError(f"{name} must be a nonzero list of 2 or 3 finite numbers, got {v!r}")
    return t


@dataclass
class ForceConfig:
    """How surface fields integrate to force coefficients ``C = F / (q_ref * A_ref)``.

    ``F = sum over surface cells of ( -(p - p_ref) A_vec + shear_sign * tau |A_vec| )``, with
    ``A_vec`` the outward area vector of each cell (or the lumped vertex area vector for point
    data), so a closed surface under uniform pressure gives zero force.

    Attributes:
        pressure: name of the pressure field (scalar, force per area, e.g. Pa or kinematic p).
        shear: name of the wall-shear-stress field (3 components, force per area acting on the
            wall), or None.
        shear_sign: +1 when the shear field is the stress the fluid exerts on the wall
            (``wallShearStress`` of DrivAerML/AhmedML), -1 for the opposite convention.
        reference_area: A_ref (length², in the files' units).
        dynamic_pressure: q_ref = 0.5 rho U² in the pressure field's units (1 for Cp data).
        reference_pressure: p_ref subtracted from the pressure (free-stream pressure).
        flow_direction: drag axis (normalised).
        lift_direction: lift axis (normalised; made orthogonal to the flow direction).
            Side force, in 3-D, is along ``lift x flow``.
        orient: "auto" flips a surface whose area vectors point inward (negative enclosed
            volume, e.g. OpenFOAM patch normals that point out of the fluid); "keep" trusts the files.
    """

    pressure: str = "p"
    shear: str | None = None
    shear_sign: float = 1.0
    reference_area: float = 1.0
    dynamic_pressure: float = 1.0
    reference_pressure: float = 0.0
    flow_direction: tuple[float, ...] = (1.0, 0.0, 0.0)
    lift_direction: tuple[float, ...] = (0.0, 0.0, 1.0)
    orient: str = "auto"

    def __post_init__(self) -> None:
        for name in ("reference_area", "dynamic_pressure"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"forces.{name} must be a positive number, got {v!r}")
        if self.shear_sign not in (1, -1, 1.0, -1.0):
            raise ValueError(f"forces.shear_sign must be 1 or -1, got {self.shear_sign!r}")
        self.flow_direction = _vec("forces.flow_direction", self.flow_direction)
        self.lift_direction = _vec("forces.lift_direction", self.lift_direction)
        if len(self.flow_direction) != len(self.lift_direction):
            raise ValueError("forces.flow_direction and forces.lift_direction must have the same length")
        if self.orient not in ("auto", "keep"):
            raise ValueError(f"forces.orient must be 'auto' or 'keep', got {self.orient!r}")


@dataclass
class FileDatasetConfig:
    """Where the files are and what to read from them.

    Attributes:
        path: a folder (one sample per geometry file, or per subfolder holding one geometry
            file or an OpenFOAM case), a glob (``"runs/*/boundary.vtp"``), or a manifest
            (``.csv`` or ``.json``: columns ``geometry``, optional ``fields``, ``surface``,
            ``split``, ``name``, and numeric per-sample scalars). Relative paths in a manifest
            are relative to the manifest. Relative ``path`` is relative to the YAML file.
        fields: target field names (point or cell data, or sidecar arrays), scalar or vector.
        location: where samples live: "points" (vertices), "cells" (cell centres) or "auto"
            (where all the fields are).
        cell_to_point: average cell data to the vertices (then location is "points").
        sample: "surface" (queries = the surface) or "volume" (queries = the volume points or
            cell centres; the geometry input is the surface: the ``surface`` manifest column,
            the OpenFOAM ``patches``, or the boundary of a tetrahedral mesh).
        patches: OpenFOAM boundary patches forming the surface.
        time: OpenFOAM time directory (default: latest).
        conditioning: manifest columns fed to the model as constant input channels
            (inlet velocity, yaw, Reynolds number, ...).
        features: "normals" (unit surface normals as inputs) or "none".
        frame: "unit" (each geometry centred and scaled to [-1, 1]) or "dataset" (one centre
            and scale for the whole training set, so relative size is kept).
        test: when the manifest has no ``split`` column: the last ``test`` samples (an int)
            or that fraction of them (a float < 1) are held out for testing.
        points_per_step: random query points per geometry per training step (None: all).
        encoder_points: fixed-size random subsample of the surface the geometry encoder sees
            (None: all surface points; at evaluation a seeded subsample of that size).
        eval_chunk: queries decoded at once at evaluation and prediction.
        cache_dir: where the preprocessed arrays go (default: ``<out>/cache``).
        workers: DataLoader worker processes, and (when >= 2) processes preprocessing files in parallel.
        forces: :class:`ForceConfig` fields, or None (no force coefficients).
    """

    path: str = ""
    fields: list[str] = field(default_factory=list)
    location: str = "auto"
    cell_to_point: bool = False
    sample: str = "surface"
    patches: list[str] = field(default_factory=list)
    time: float | None = None
    conditioning: list[str] = field(default_factory=list)
    features: str = "normals"
    frame: str = "unit"
    test: float = 0.2
    points_per_step: int | None = None
    encoder_points: int | None = None
    eval_chunk: int = 200_000
    cache_dir: str | None = None
    workers: int = 0
    forces: ForceConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError("path must name a folder, a glob or a manifest (.csv/.json)")
        if isinstance(self.fields, str):
            self.fields = [self.fields]
        if not self.fields or not all(isinstance(f, str) and f for f in self.fields):
            raise ValueError(f"fields must be a non-empty list of field names, got {self.fields!r}")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields must be distinct, got {self.fields}")
        choices = {"location": ("auto", "points", "cells"), "sample": ("surface", "volume"),
                   "features": ("normals", "none"), "frame": ("unit", "dataset")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.cell_to_point and self.location == "cells":
            raise ValueError("cell_to_point averages cell data to the vertices; it contradicts location 'cells'")
        for name in ("patches", "conditioning"):
            v = getattr(self, name)
            if isinstance(v, str):
                setattr(self, name, [v])
            elif not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{name} must be a list of names, got {v!r}")
        if isinstance(self.test, bool) or not isinstance(self.test, (int, float)) or not self.test > 0 or \
                (isinstance(self.test, float) and not self.test.is_integer() and self.test >= 1):
            raise ValueError(f"test must be a count >= 1 or a fraction in (0, 1), got {self.test!r}")
        for name in ("points_per_step", "encoder_points"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer or null, got {v!r}")
        if isinstance(self.eval_chunk, bool) or not isinstance(self.eval_chunk, int) or self.eval_chunk < 1:
            raise ValueError(f"eval_chunk must be a positive integer, got {self.eval_chunk!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {self.workers!r}")
        if isinstance(self.forces, dict):
            self.forces = _from_dict(ForceConfig, self.forces, "forces")
        elif self.forces is not None and not isinstance(self.forces, ForceConfig):
            raise ValueError(f"forces must be a mapping of ForceConfig fields, got {self.forces!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls, data: dict, where: str):
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; valid: {sorted(valid)}")
    try:
        return cls(**data)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def file_config_from_dict(data: dict[str, Any] | None, where: str = "dataset.options") -> FileDatasetConfig:
    """:class:`FileDatasetConfig` from YAML options, with errors naming ``where`` and the bad key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} for kind 'files' must be a mapping, got {type(data).__name__}")
    try:
        return _from_dict(FileDatasetConfig, data, where)
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None
