"""VTK PolyData (.vtp) and OpenFOAM case directories, through the ``vtk`` package.

meshio has no VTP reader, and OpenFOAM's polyMesh format (faces, owner,
neighbour, boundary patches) is best left to ``vtkOpenFOAMReader``. Both give
:class:`~.records.MeshRecord` s:

* a VTP file: its points, its polygons (triangles, quads; larger polygons fan-split
  into triangles that share the polygon's cell data), point and cell data;
* an OpenFOAM case: the internal field (cell centres and cell data, connectivity for
  the standard cell types) and named boundary patches (surface polygons with the
  patch values of each field as cell data).

VTK reports errors through an output window rather than exceptions; every reader runs
with an error observer, and what VTK said becomes a :class:`DataFileError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .records import DataFileError, MeshRecord

__all__ = ["VTP_ENCODINGS", "openfoam_case_file", "openfoam_patches", "read_openfoam", "read_vtp", "write_vtp"]

# VTK cell type id -> meshio name, for the types with fixed vertex counts
_VTK_TYPES = {3: "line", 5: "triangle", 9: "quad", 10: "tetra", 12: "hexahedron", 13: "wedge", 14: "pyramid"}


class _Errors:
    """Collects VTK ErrorEvents of one algorithm so they can be raised as Python errors."""

    def __init__(self, algorithm) -> None:
        self.messages: list[str] = []
        algorithm.AddObserver("ErrorEvent", self)

    def __call__(self, obj, event, data=None) -> None:  # VTK passes the message as call data
        self.messages.append(str(data or event))

    __call__.CallDataType = "string0"  # type: ignore[attr-defined]

    def check(self, path: Path, what: str) -> None:
        if self.messages:
            first = " ".join(self.messages[0].split())[-300:]
            raise DataFileError(f"{path}: could not be read as {what} ({first})")


def _quiet():
    from vtkmodules.vtkCommonCore import vtkObject

    vtkObject.GlobalWarningDisplayOff()


def _arrays(attributes) -> dict[str, np.ndarray]:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    out = {}
    for i in range(attributes.GetNumberOfArrays()):
        arr = attributes.GetArray(i)  # None for string / non-numeric arrays
        name = attributes.GetArrayName(i)
        if arr is None or not name:
            continue
        out[name] = np.array(vtk_to_numpy(arr))
    return out


def _polys(polydata) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Polygons grouped by type (triangle, quad; larger ones fan-split) and, for every output
    cell, the index of the polygon it came from."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    ca = polydata.GetPolys()
    if ca is None or ca.GetNumberOfCells() == 0:
        return {}, np.zeros(0, dtype=np.int64)
    offsets = np.asarray(vtk_to_numpy(ca.GetOffsetsArray()), dtype=np.int64)
    conn = np.asarray(vtk_to_numpy(ca.GetConnectivityArray()), dtype=np.int64)
    sizes = np.diff(offsets)
    if len(sizes) and sizes.min() == sizes.max() and sizes[0] in (3, 4):  # one type: no regrouping
        return {"triangle" if sizes[0] == 3 else "quad": conn.reshape(-1, int(sizes[0]))}, np.arange(len(sizes))
    cells, origin = {}, []
    tri_parts, tri_origin = [], []
    for k in np.unique(sizes):
        ids = np.flatnonzero(sizes == k)
        if k < 3:
            continue  # degenerate polygons carry no area
        block = conn[offsets[ids][:, None] + np.arange(k)]
        if k == 3:
            tri_parts.append(block)
            tri_origin.append(ids)
        elif k == 4:
            cells["quad"] = block
            quad_origin = ids
        else:  # fan: (0, j, j + 1)
            for j in range(1, k - 1):
                tri_parts.append(block[:, [0, j, j + 1]])
                tri_origin.append(ids)
    ordered = {}
    if tri_parts:
        ordered["triangle"] = np.concatenate(tri_parts)
        origin.append(np.concatenate(tri_origin))
    if "quad" in cells:
        ordered["quad"] = cells["quad"]
        origin.append(quad_origin)
    return ordered, (np.concatenate(origin) if origin else np.zeros(0, dtype=np.int64))


def _polydata_record(polydata, source: str) -> MeshRecord:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if polydata.GetNumberOfStrips():
        from vtkmodules.vtkFiltersCore import vtkTriangleFilter

        tf = vtkTriangleFilter()
        tf.SetInputData(polydata)
        tf.PassVertsOff()
        tf.PassLinesOff()
        tf.Update()
        polydata = tf.GetOutput()
    pts = polydata.GetPoints()
    points = np.zeros((0, 3)) if pts is None else np.array(vtk_to_numpy(pts.GetData()), dtype=np.float64)
    cells, origin = _polys(polydata)
    # cell data rows: verts, lines, polys, strips (VTK's order); keep the polygons' rows
    first_poly = polydata.GetNumberOfVerts() + polydata.GetNumberOfLines()
    n_cells = polydata.GetNumberOfCells()
    cell_data = {}
    for name, v in _arrays(polydata.GetCellData()).items():
        if len(v) != n_cells:
            continue
        cell_data[name] = v[first_poly + origin]
    return MeshRecord(source, points, cells, _arrays(polydata.GetPointData()), cell_data)


def read_vtp(path: str | Path) -> MeshRecord:
    """A ``.vtp`` file as a :class:`MeshRecord` (polygons as triangle/quad cells)."""
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    _quiet()
    reader = vtkXMLPolyDataReader()
    errors = _Errors(reader)
    reader.SetFileName(str(path))
    reader.Update()
    errors.check(path, "VTK PolyData (.vtp)")
    record = _polydata_record(reader.GetOutput(), str(path))
    if record.num_points == 0:
        raise DataFileError(f"{path}: contains no points")
    return record


VTP_ENCODINGS = ("raw", "zlib", "base64")


def write_vtp(path: str | Path, points, cells: dict[str, np.ndarray], point_data: dict | None = None,
              cell_data: dict | None = None, *, encoding: str = "raw") -> Path:
    """Write a surface (triangle/quad cells) with point and cell data as a binary ``.vtp`` file.

    ``cell_data`` rows follow the cells in dict order (as in :class:`MeshRecord`).
    ``encoding`` of the appended data block: ``"raw"`` (uncompressed binary, what CFD tools
    usually write and the fastest to read), ``"zlib"`` (raw, zlib-compressed: about 2x smaller,
    slower to read) or ``"base64"`` (zlib-compressed then base64 text, VTK's own default).
    :func:`read_vtp` reads all three (and inline ASCII/binary files).
    """
    if encoding not in VTP_ENCODINGS:
        raise ValueError(f"write_vtp: encoding must be one of {VTP_ENCODINGS}, got {encoding!r}")
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    from ..._atomic import atomic_path

    path = Path(path)
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64))
    if pts.shape[1] == 2:
        pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    vp = vtkPoints()
    vp.SetData(numpy_to_vtk(pts, deep=True))
    blocks = [np.asarray(c, dtype=np.int64) for c in cells.values() if len(c)]
    sizes = np.concatenate([np.full(len(b), b.shape[1]) for b in blocks]) if blocks else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    conn = np.concatenate([b.ravel() for b in blocks]) if blocks else np.zeros(0, np.int64)
    ca = vtkCellArray()
    ca.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True), numpy_to_vtkIdTypeArray(conn, deep=True))
    poly = vtkPolyData()
    poly.SetPoints(vp)
    poly.SetPolys(ca)
    for attrs, data in ((poly.GetPointData(), point_data), (poly.GetCellData(), cell_data)):
        for name, v in (data or {}).items():
            arr = numpy_to_vtk(np.ascontiguousarray(np.asarray(v, dtype=np.float64)), deep=True)
            arr.SetName(name)
            attrs.AddArray(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".vtp") as tmp:
        w = vtkXMLPolyDataWriter()
        errors = _Errors(w)
        w.SetFileName(str(tmp))
        w.SetInputData(poly)
        w.SetDataModeToAppended()
        w.SetEncodeAppendedData(encoding == "base64")
        if encoding == "raw":
            w.SetCompressorTypeToNone()
        w.Write()
        if errors.messages:
            raise DataFileError(f"{path}: could not be written ({errors.messages[0]})")
    return path


# --------------------------------------------------------------------------- OpenFOAM


def openfoam_case_file(case: str | Path) -> Path:
    """The file ``vtkOpenFOAMReader`` opens for a case directory: a ``*.foam`` marker or ``system/controlDict``."""
    case = Path(case)
    if case.is_file():
        return case
    if not case.is_dir():
        raise DataFileError(f"{case}: no such OpenFOAM case directory")
    markers = sorted(case.glob("*.foam"))
    if markers:
        return markers[0]
    control = case / "system" / "controlDict"
    if not control.is_file() or not (case / "constant" / "polyMesh").is_dir():
        raise DataFileError(f"{case}: not an OpenFOAM case (needs system/controlDict and constant/polyMesh)")
    return control


def _foam_reader(case: Path):
    from vtkmodules.vtkIOGeometry import vtkOpenFOAMReader

    _quiet()
    reader = vtkOpenFOAMReader()
    errors = _Errors(reader)
    reader.SetFileName(str(openfoam_case_file(case)))
    reader.UpdateInformation()
    errors.check(case, "an OpenFOAM case")
    return reader, errors


def openfoam_patches(case: str | Path) -> list[str]:
    """Boundary patch names of an OpenFOAM case."""
    reader, _ = _foam_reader(Path(case))
    names = [reader.GetPatchArrayName(i) for i in range(reader.GetNumberOfPatchArrays())]
    return [n.split("/", 1)[1] for n in names if n.startswith("patch/")]


def _blocks(ds, prefix=""):
    from vtkmodules.vtkCommonDataModel import vtkCompositeDataSet

    for i in range(ds.GetNumberOfBlocks()):
        b = ds.GetBlock(i)
        meta = ds.GetMetaData(i)
        name = meta.Get(vtkCompositeDataSet.NAME()) if meta is not None else str(i)
        if b is None:
            continue
        if b.IsA("vtkMultiBlockDataSet"):
            yield from _blocks(b, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", b


def _cell_types(grid):
    """The per-cell VTK type array (``GetCellTypes()`` from VTK 9.6, ``GetCellTypesArray()`` before)."""
    try:
        arr = grid.GetCellTypes()
        if hasattr(arr, "GetNumberOfTuples"):
            return arr
    except TypeError:
        pass
    return grid.GetCellTypesArray()


def _grid_record(grid, source: str) -> MeshRecord:
    """An unstructured grid: cell centres (VTK's, so polyhedra work), standard-type connectivity."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkFiltersCore import vtkCellCenters

    cc = vtkCellCenters()
    cc.SetInputData(grid)
    cc.VertexCellsOff()
    cc.CopyArraysOff()
    cc.Update()
    centers = np.array(vtk_to_numpy(cc.GetOutput().GetPoints().GetData()), dtype=np.float64) \
        if grid.GetNumberOfCells() else np.zeros((0, 3))
    points = np.array(vtk_to_numpy(grid.GetPoints().GetData()), dtype=np.float64)
    types = vtk_to_numpy(_cell_types(grid)) if grid.GetNumberOfCells() else np.zeros(0, np.uint8)
    cells = {}
    if len(types) and all(int(t) in _VTK_TYPES for t in np.unique(types)) and len(np.unique(types)) == 1:
        # one standard type: keep the connectivity (written back with predictions)
        offsets = vtk_to_numpy(grid.GetCells().GetOffsetsArray()).astype(np.int64)
        conn = vtk_to_numpy(grid.GetCells().GetConnectivityArray()).astype(np.int64)
        k = int(offsets[1] - offsets[0])
        cells[_VTK_TYPES[int(types[0])]] = conn.reshape(-1, k)
    return MeshRecord(source, points, cells, _arrays(grid.GetPointData()), _arrays(grid.GetCellData()),
                      centers=centers)


def read_openfoam(case: str | Path, *, patches: list[str] | None = None, internal: bool = True,
                  time: float | None = None) -> dict[str, MeshRecord]:
    """Read an OpenFOAM case (ASCII or binary, decomposed or not, as VTK supports).

    Args:
        case: the case directory (or its ``.foam`` marker / ``system/controlDict``).
        patches: boundary patch names to read (None: none); missing names are an error
            listing the case's patches.
        internal: read the internal mesh (cell centres with the cell fields).
        time: the time directory to read (None: the latest).

    Returns: ``{"internalMesh": record, "<patch>": record, ...}``; a patch record holds the
    patch faces as triangle/quad cells and the boundary values of each field as cell data.
    """
    case = Path(case)
    reader, errors = _foam_reader(case)
    available = openfoam_patches(case)
    wanted = list(patches or [])
    missing = [p for p in wanted if p not in available]
    if missing:
        raise DataFileError(f"{case}: no boundary patch {missing[0]!r}; patches: {available}")
    reader.DisableAllPatchArrays()
    if internal:
        reader.SetPatchArrayStatus("internalMesh", 1)
    for p in wanted:
        reader.SetPatchArrayStatus(f"patch/{p}", 1)
    reader.CreateCellToPointOff()
    reader.EnableAllCellArrays()
    times = reader.GetTimeValues()
    values = [times.GetValue(i) for i in range(times.GetNumberOfTuples())] if times is not None else []
    if time is not None:
        if not any(abs(v - time) <= 1e-9 * max(1.0, abs(time)) for v in values):
            raise DataFileError(f"{case}: no time {time}; times: {values}")
        reader.UpdateTimeStep(float(time))
    elif values:
        reader.UpdateTimeStep(max(values))
    else:
        reader.Update()
    errors.check(case, "an OpenFOAM case")
    out = {}
    for name, block in _blocks(reader.GetOutput()):
        if name == "internalMesh" and internal:
            out["internalMesh"] = _grid_record(block, f"{case}:internalMesh")
        elif name.startswith("boundary/") and name.split("/", 1)[1] in wanted:
            out[name.split("/", 1)[1]] = _polydata_record(block, f"{case}:{name.split('/', 1)[1]}")
    return out
