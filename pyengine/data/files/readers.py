"""One entry point, :func:`read_record`, for every file a CFD dataset is made of.

* VTU, VTK, MSH, XDMF (and the other meshio formats): :func:`pyengine.geometry.load_mesh`.
* VTP and OpenFOAM case directories: ``vtk`` (:mod:`.vtk_io`).
* PLY, STL, OBJ, OFF: trimesh, vertices in file order with nothing merged, so that sidecar
  ``.npy``/``.npz`` fields (one row per vertex or per face) line up with them.

Sidecar fields (:func:`read_sidecar`) are attached by :func:`attach_fields`, which checks
their length against the points and cells and names the file and the field when neither fits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .records import DataFileError, MeshRecord, listing
from .vtk_io import read_openfoam, read_vtp

__all__ = ["SURFACE_FORMATS", "attach_fields", "read_record", "read_sidecar"]

SURFACE_FORMATS = (".ply", ".stl", ".obj", ".off")


def _from_mesh(mesh) -> MeshRecord:
    """A :class:`pyengine.geometry.Mesh` as a record (its per-type cell data flattened in cell order)."""
    cell_data = {}
    for name, per_type in mesh.cell_data.items():
        if set(per_type) != set(mesh.cells):
            continue  # data on some blocks only (e.g. gmsh tags per dimension): not a field
        cell_data[name] = np.concatenate([np.asarray(per_type[t]) for t in mesh.cells])
    return MeshRecord(str(mesh.source), mesh.points, dict(mesh.cells), dict(mesh.point_data), cell_data)


def _read_surface(path: Path) -> MeshRecord:
    import trimesh

    from ...geometry import load_mesh

    try:
        tm = trimesh.load(path, process=False, force="mesh", file_type=path.suffix.lower().lstrip("."))
    except Exception as exc:  # noqa: BLE001  (parsers raise anything; name the file)
        raise DataFileError(f"{path}: could not be read ({type(exc).__name__}: {exc})") from None
    points = np.asarray(getattr(tm, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(tm, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if len(points) == 0:
        raise DataFileError(f"{path}: contains no points")
    pdata = {}
    if path.suffix.lower() == ".ply":  # custom vertex properties, when the vertex order is the file's
        mesh = load_mesh(path)
        if mesh.num_points == len(points):
            pdata = dict(mesh.point_data)
    return MeshRecord(str(path), points, {"triangle": faces} if len(faces) else {}, pdata)


def _merge(records: list[MeshRecord], source: str) -> MeshRecord:
    """Several surface records (OpenFOAM patches) as one: points, cells and common cell fields concatenated."""
    if len(records) == 1:
        return records[0]
    offsets = np.cumsum([0] + [r.num_points for r in records])
    kinds = sorted({k for r in records for k in r.cells})
    cells = {k: np.concatenate([r.cells[k] + o for r, o in zip(records, offsets) if k in r.cells]) for k in kinds}
    # cell rows follow `cells` (by kind), so every field is regrouped the same way
    rows = []
    for r in records:  # kind -> rows of that kind in r's cell order
        start, spans = 0, {}
        for k, c in r.cells.items():
            spans[k] = slice(start, start + len(c))
            start += len(c)
        rows.append(spans)
    common = set.intersection(*(set(r.cell_data) for r in records))
    cell_data = {name: np.concatenate([r.cell_data[name][sp[k]] for k in kinds for r, sp in zip(records, rows)
                                       if k in r.cells]) for name in common}
    pcommon = set.intersection(*(set(r.point_data) for r in records))
    pdata = {n: np.concatenate([r.point_data[n] for r in records]) for n in pcommon}
    points = np.concatenate([r.points for r in records])
    # patches share their seam vertices: merge exact duplicates (first copy kept, file order)
    _, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    remap = rank[inverse.reshape(-1)]
    keep = first[order]
    return MeshRecord(source, points[keep], {k: remap[c] for k, c in cells.items()},
                      {n: v[keep] for n, v in pdata.items()}, cell_data)


def read_record(path: str | Path, *, part: str = "surface", patches: list[str] | None = None,
                time: float | None = None) -> MeshRecord:
    """Read one geometry/result file (or OpenFOAM case directory) into a :class:`MeshRecord`.

    Args:
        path: the file or case directory.
        part: for OpenFOAM cases, ``"surface"`` (the ``patches`` merged into one surface) or
            ``"volume"`` (the internal mesh: cell centres and cell fields).
        patches: OpenFOAM boundary patches forming the surface.
        time: OpenFOAM time to read (default: the latest).

    Raises:
        DataFileError: missing or unreadable file; the message names it.
    """
    from ...geometry import MeshIOError, load_mesh

    path = Path(path)
    if path.is_dir():
        if part == "volume":
            return read_openfoam(path, internal=True, time=time)["internalMesh"]
        if not patches:
            from .vtk_io import openfoam_patches

            raise DataFileError(f"{path}: name the boundary patches that form the surface "
                                f"(options 'patches'); patches: {openfoam_patches(path)}")
        recs = read_openfoam(path, patches=patches, internal=False, time=time)
        return _merge([recs[p] for p in patches], f"{path}:{'+'.join(patches)}")
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".vtp":
        return read_vtp(path)
    if suffix in SURFACE_FORMATS:
        return _read_surface(path)
    try:
        return _from_mesh(load_mesh(path))
    except MeshIOError as e:
        raise DataFileError(str(e)) from None


def read_sidecar(path: str | Path, name: str | None = None) -> dict[str, np.ndarray]:
    """Fields stored next to a geometry: ``.npy`` (one array, named ``name`` or the file stem)
    or ``.npz`` (every array by its key). Never unpickles (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such field file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {name or path.stem: np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if name is not None:
                if name not in arrays:
                    raise DataFileError(f"{path}: no array {name!r}; arrays: {sorted(arrays)}")
                return {name: arrays[name]}
            return arrays
    except DataFileError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataFileError(f"{path}: could not be read as {suffix} ({type(exc).__name__}: {exc})") from None
    raise DataFileError(f"{path}: field files must be .npy or .npz, got {suffix or '(no extension)'!r}")


def attach_fields(record: MeshRecord, arrays: dict[str, np.ndarray], source: str | Path) -> MeshRecord:
    """``record`` with sidecar ``arrays`` added as point data or cell data, by their length.

    Raises DataFileError naming ``source`` and the field when a length matches neither the
    points nor the cells of the record.
    """
    for name, v in arrays.items():
        v = np.asarray(v)
        if v.dtype.kind not in "fiub" or v.ndim not in (1, 2):
            raise DataFileError(f"{source}: field {name!r} must be a numeric (n,) or (n, k) array, "
                                f"got {v.dtype} {v.shape}")
        if len(v) == record.num_points:
            record.point_data[name] = v
        elif len(v) == record.num_cells:
            record.cell_data[name] = v
        else:
            raise DataFileError(f"{source}: field {name!r} has {len(v)} rows, matching neither the "
                                f"{record.num_points} points nor the {record.num_cells} cells of "
                                f"{record.source}; {listing(record)}")
    return record
