"""One sample's arrays from its files: fields chosen by name, at points or cell centres, surface or volume.

:func:`assemble` reads a :class:`~.manifest.SampleSpec` the way a
:class:`~.config.FileDatasetConfig` says and returns :class:`SampleArrays` in
physical units (frames and normalisation come later, at load time):

* surface samples: the input points are the surface vertices (location "points") or
  the surface cell centres (location "cells"); the queries are the same points; inputs
  are unit normals (vertex normals, or cell normals), oriented outward;
* volume samples: the input points are the surface (as above, at its vertices) and the
  queries are the volume points or cell centres.

``area`` holds, per query, the outward area vector that a surface integral of the field
uses (the cell's own, or the vertex's lumped share of its cells) for force coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import FileDatasetConfig
from .manifest import SampleSpec
from .readers import attach_fields, read_record, read_sidecar
from .records import DataFileError, MeshRecord, listing
from .surface import SURFACE_CELLS, VOLUME_CELLS, cell_to_point, kind_rows, surface_quantities

__all__ = ["SampleArrays", "assemble", "select_fields"]


@dataclass
class SampleArrays:
    """A sample in physical units.

    Attributes:
        points: (N, 3) input points; features: (N, C) inputs (normals, then conditioning) or None.
        queries: (M, 3) or None (the input points are the queries).
        fields: name -> (M,) or (M, k) float targets.
        area: (M, 3) outward area vectors at the queries (surface samples), or None.
        cells: surface connectivity into ``mesh_points`` (cell rows = queries at location "cells").
        mesh_points: the vertices ``cells`` index (``points`` itself at location "points").
        point_ids: (N,) rows of the file's points the input points came from, or None (all, in order).
        location: "points" or "cells"; scalars: the per-sample scalars; source: the geometry file.
    """

    name: str
    points: np.ndarray
    features: np.ndarray | None
    queries: np.ndarray | None
    fields: dict[str, np.ndarray]
    area: np.ndarray | None
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    mesh_points: np.ndarray | None = None
    point_ids: np.ndarray | None = None
    location: str = "points"
    scalars: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def query_points(self) -> np.ndarray:
        return self.points if self.queries is None else self.queries


def select_fields(record: MeshRecord, names: list[str], location: str, cell_to_point: bool
                  ) -> tuple[str, dict[str, tuple[str, np.ndarray]]]:
    """Where the fields are and, per name, ``("point" | "cell", values)``.

    Raises DataFileError naming the file and the field, listing the data it has.
    """
    found = {}
    for name in names:
        if name in record.point_data and location != "cells":
            found[name] = ("point", record.point_data[name])
        elif name in record.cell_data:
            found[name] = ("cell", record.cell_data[name])
        elif name in record.point_data:
            raise DataFileError(f"{record.source}: field {name!r} is point data but location is 'cells'; "
                                f"{listing(record)}")
        else:
            raise DataFileError(f"{record.source}: no field {name!r}; {listing(record)}")
    kinds = {k for k, _ in found.values()}
    if location == "auto":
        if cell_to_point or kinds == {"point"}:
            location = "points"
        elif kinds == {"cell"}:
            location = "cells"
        else:
            raise DataFileError(f"{record.source}: fields {names} mix point data and cell data; set "
                                "cell_to_point: true (average cell data to the vertices) or location")
    if location == "points" and not cell_to_point:
        cell_only = [n for n, (k, _) in found.items() if k == "cell"]
        if cell_only:
            raise DataFileError(f"{record.source}: field {cell_only[0]!r} is cell data; set cell_to_point: true "
                                f"or location: cells; {listing(record)}")
    return location, found


def _as_float(name: str, v: np.ndarray, source: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if not np.isfinite(v).all():
        raise DataFileError(f"{source}: field {name!r} contains NaN or Inf")
    return v


def _field_values(record: MeshRecord, found, location: str, cells_for_avg, rows) -> dict[str, np.ndarray]:
    out = {}
    for name, (kind, v) in found.items():
        if location == "cells":
            out[name] = _as_float(name, v[rows], record.source)
        elif kind == "cell":  # cell_to_point
            out[name] = cell_to_point(_as_float(name, v, record.source)[rows], cells_for_avg, record.num_points)
        else:
            out[name] = _as_float(name, v, record.source)
    return out


def _compact(points: np.ndarray, cells: dict[str, np.ndarray]):
    """Drop the points no cell uses; returns (points, cells remapped, kept ids or None)."""
    used = np.zeros(len(points), dtype=bool)
    for c in cells.values():
        used[c.ravel()] = True
    if used.all():
        return points, cells, None
    ids = np.flatnonzero(used)
    remap = np.full(len(points), -1, dtype=np.int64)
    remap[ids] = np.arange(len(ids))
    return points[ids], {k: remap[c] for k, c in cells.items()}, ids


def _surface_part(record: MeshRecord, source: str):
    """Surface cells of a record (or a tetrahedral mesh's boundary); raises when there are none."""
    cells, rows = kind_rows(record.cells, SURFACE_CELLS)
    if cells:
        return cells, rows
    if "tetra" in record.cells:
        from ...geometry import Mesh

        faces = Mesh(record.points, {"tetra": record.cells["tetra"]}).faces
        return {"triangle": faces}, None
    raise DataFileError(f"{source}: has no surface cells (triangles or quads); cell types: "
                        f"{sorted(record.cells) or 'none (a point cloud)'}")


def _conditioning(spec: SampleSpec, names: list[str]) -> dict[str, float]:
    missing = [n for n in names if n not in spec.scalars]
    if missing:
        raise DataFileError(f"sample {spec.name}: no per-sample scalar {missing[0]!r} for conditioning; "
                            f"scalars: {sorted(spec.scalars)}")
    return {n: spec.scalars[n] for n in names}


def _surface_inputs(points, cells, location, features, source, lumped=True):
    """Input points, features and outward area vectors of a surface at its vertices or cell centres
    (vertices: each vertex's lumped share of its cells' area vectors; None when not ``lumped``)."""
    normals = features == "normals"
    q = surface_quantities(points, cells, normals=normals and location != "cells",
                           lumped=lumped and location != "cells", source=source)
    if location == "cells":
        centres = np.concatenate([points[c].mean(axis=1) for c in cells.values()])
        norms = np.linalg.norm(q.areas, axis=1)
        if (norms <= 0).any():
            raise DataFileError(f"{source}: {int((norms <= 0).sum())} surface cells have zero area, so no normal")
        return centres, (q.areas / norms[:, None] if normals else None), q.areas
    return points, q.normals, q.lumped


def assemble(spec: SampleSpec, cfg: FileDatasetConfig, *, targets: bool = True) -> SampleArrays:
    """Read one sample's files and build its arrays (physical units).

    ``targets=False`` (prediction on a new geometry): no fields are read; ``cfg.location``
    must then be "points" or "cells" (what training resolved "auto" to).
    """
    volume = cfg.sample == "volume"
    record = read_record(spec.geometry, part="volume" if volume else "surface", patches=cfg.patches,
                         time=cfg.time)
    for name, path in spec.field_files:
        attach_fields(record, read_sidecar(path, name), path)
    if targets:
        location, found = select_fields(record, cfg.fields, cfg.location, cfg.cell_to_point)
    elif cfg.location == "auto":
        raise ValueError("prediction needs location 'points' or 'cells' (training resolves 'auto')")
    else:
        location, found = cfg.location, {}
    scalars = _conditioning(spec, cfg.conditioning)
    if not volume:
        cells, rows = _surface_part(record, record.source)
        if rows is None:
            raise DataFileError(f"{record.source}: a tetrahedral volume mesh is not a surface sample; "
                                "set sample: volume")
        values = _field_values(record, found, location, cells, rows)
        points, cells_c, ids = (record.points, cells, None) if location == "cells" else \
            _compact(record.points, cells)
        if ids is not None:
            values = {k: v[ids] for k, v in values.items()}
        inputs, normals, areas = _surface_inputs(points, cells_c, location, cfg.features, record.source)
        feats = _with_scalars(normals, scalars, len(inputs))
        return SampleArrays(spec.name, inputs, feats, None, values, areas, cells_c, points, ids, location,
                            dict(spec.scalars), record.source)
    # volume: queries from the volume record, geometry input from the surface
    vcells, vrows = kind_rows(record.cells, VOLUME_CELLS)
    if location == "cells":
        rows = np.arange(record.num_cells) if record.centers is not None else vrows
        queries = record.cell_centers()[rows]
    else:
        rows, queries = vrows, record.points
    values = _field_values(record, found, location, vcells, rows)
    if spec.surface is not None:
        surf = read_record(spec.surface, part="surface", patches=cfg.patches, time=cfg.time)
    elif record.centers is not None:  # OpenFOAM: the patches are the surface
        surf = read_record(spec.geometry, part="surface", patches=cfg.patches, time=cfg.time)
    else:
        surf = record
    scells, _ = _surface_part(surf, surf.source)
    spoints, scells, _ = _compact(surf.points, scells)
    inputs, normals, _ = _surface_inputs(spoints, scells, "points", cfg.features, surf.source, lumped=False)
    feats = _with_scalars(normals, scalars, len(inputs))
    return SampleArrays(spec.name, inputs, feats, queries, values, None, vcells, record.points, None, location,
                        dict(spec.scalars), record.source)


def _with_scalars(normals: np.ndarray | None, scalars: dict[str, float], n: int) -> np.ndarray | None:
    cols = [] if normals is None else [normals]
    if scalars:
        cols.append(np.broadcast_to(np.array(list(scalars.values()), dtype=np.float64), (n, len(scalars))))
    return np.concatenate(cols, axis=1) if cols else None
