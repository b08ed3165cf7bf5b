"""VTK PolyData (.vtp), which meshio cannot read or write, through VTK's own XML reader and writer.

Only polygons (triangles, quads, n-gons) are kept as cells; vertex and line
cells are ignored and triangle strips are split into triangles. Point data and
the polygons' cell data keep their dtypes (int64 included).
"""

from __future__ import annotations

import numpy as np

from .readers import FormatError, RawMesh, cell_type, polygon_blocks

__all__ = ["read_vtp", "write_vtp"]


class _Errors:
    """Collects VTK error events (VTK prints them otherwise and carries on)."""

    def __init__(self):
        self.messages: list[str] = []

    def __call__(self, obj, event, *args):
        self.messages.append(event)


def _quiet():
    from vtkmodules.vtkCommonCore import vtkObject

    vtkObject.GlobalWarningDisplayOff()


def read_vtp(path: str) -> RawMesh:
    """Points, polygons (by size), point data and polygon cell data of a .vtp file."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkCommand
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    _quiet()
    reader = vtkXMLPolyDataReader()
    errors = _Errors()
    reader.AddObserver(vtkCommand.ErrorEvent, errors)
    reader.GetExecutive().AddObserver(vtkCommand.ErrorEvent, errors)
    if not reader.CanReadFile(path):
        raise FormatError("not a VTK XML PolyData file")
    reader.SetFileName(path)
    reader.Update()
    poly = reader.GetOutput()
    if errors.messages or reader.GetErrorCode() or poly is None:
        raise FormatError("VTK could not parse it (corrupt or truncated XML/appended data)")
    n = poly.GetNumberOfPoints()
    if n == 0:
        raise FormatError("holds no points")
    expected = _declared_points(path)
    if expected is not None and expected != n:
        raise FormatError(f"the header declares {expected:,} points but VTK read {n:,}")
    points = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64).reshape(-1, 3)
    n_verts, n_lines = poly.GetNumberOfVerts(), poly.GetNumberOfLines()
    polys = poly.GetPolys()
    offsets = vtk_to_numpy(polys.GetOffsetsArray()).astype(np.int64)
    conn = vtk_to_numpy(polys.GetConnectivityArray()).astype(np.int64)
    sizes = np.diff(offsets)
    strips = poly.GetNumberOfStrips()
    if strips:
        from vtkmodules.vtkFiltersCore import vtkTriangleFilter

        tf = vtkTriangleFilter()
        tf.SetInputData(poly)
        tf.PassVertsOff()
        tf.PassLinesOff()
        tf.Update()
        t = tf.GetOutput().GetPolys()
        offsets = vtk_to_numpy(t.GetOffsetsArray()).astype(np.int64)
        conn = vtk_to_numpy(t.GetConnectivityArray()).astype(np.int64)
        sizes = np.diff(offsets)
    if conn.size and (conn.min() < 0 or conn.max() >= n):
        raise FormatError(f"polygons index outside the {n:,} points")
    cells = polygon_blocks(sizes, conn) if len(sizes) else {}
    pdata = {}
    pd = poly.GetPointData()
    for i in range(pd.GetNumberOfArrays()):
        arr = pd.GetArray(i)
        if arr is not None and arr.GetName():
            pdata[arr.GetName()] = vtk_to_numpy(arr).copy()
    cdata = {}
    cd = poly.GetCellData()
    if not strips:
        lo = n_verts + n_lines
        for i in range(cd.GetNumberOfArrays()):
            arr = cd.GetArray(i)
            if arr is not None and arr.GetName():
                a = vtk_to_numpy(arr)[lo:lo + len(sizes)]
                cdata[arr.GetName()] = {cell_type(int(k)): a[sizes == k].copy() for k in np.unique(sizes)}
    return RawMesh(points, cells, point_data=pdata, cell_data=cdata)


def _declared_points(path: str) -> int | None:
    """NumberOfPoints of the first Piece, read from the XML head (VTK silently shortens some files)."""
    import re

    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    m = re.search(rb'NumberOfPoints="(\d+)"', head)
    return int(m.group(1)) if m else None


def write_vtp(path: str, points: np.ndarray, cells: dict[str, np.ndarray], point_data: dict[str, np.ndarray],
              cell_data: dict[str, dict[str, np.ndarray]]) -> None:
    """Write polygons (cells in the given type order) with point and cell data as binary XML PolyData."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
    from vtkmodules.vtkIOXML import vtkXMLPolyDataWriter

    _quiet()
    poly = vtkPolyData()
    pts = vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    poly.SetPoints(pts)
    types = list(cells)
    sizes = np.concatenate([np.full(len(cells[t]), cells[t].shape[1], np.int64) for t in types]) if types \
        else np.zeros(0, np.int64)
    conn = np.concatenate([np.asarray(cells[t], np.int64).reshape(-1) for t in types]) if types \
        else np.zeros(0, np.int64)
    ca = vtkCellArray()
    ca.SetData(numpy_to_vtkIdTypeArray(np.r_[0, np.cumsum(sizes)].astype(np.int64), deep=True),
               numpy_to_vtkIdTypeArray(conn, deep=True))
    poly.SetPolys(ca)
    for name, v in point_data.items():
        a = numpy_to_vtk(np.ascontiguousarray(_vtk_ready(v)), deep=True)
        a.SetName(name)
        poly.GetPointData().AddArray(a)
    for name, per_type in cell_data.items():
        v = np.concatenate([np.asarray(per_type[t]) for t in types])
        a = numpy_to_vtk(np.ascontiguousarray(_vtk_ready(v)), deep=True)
        a.SetName(name)
        poly.GetCellData().AddArray(a)
    w = vtkXMLPolyDataWriter()
    w.SetFileName(path)
    w.SetInputData(poly)
    w.SetDataModeToBinary()
    if not w.Write():
        raise OSError(f"VTK could not write {path}")


def _vtk_ready(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v)
    if v.dtype == bool:
        return v.astype(np.uint8)
    return v.reshape(len(v), -1) if v.ndim > 2 else v
