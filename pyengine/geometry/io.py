"""Mesh files in, :class:`Mesh` out (and back): trimesh for surfaces, meshio for everything else.

Surface formats (STL, OBJ, PLY, OFF, GLB/GLTF) are read with trimesh, which
copes with their many dialects (ASCII/binary STL, OBJ groups, GLB scenes,
point-only PLY). Volume and simulation formats (VTU, VTK, MSH, XDMF, MED, ...)
are read with meshio. Either way the result is the same :class:`Mesh`: points
in 3-D, connectivity per cell type, per-point and per-cell data.

Errors from the parsers are caught and re-raised as :class:`MeshIOError`
naming the file and the reason, so a bad upload produces one readable line.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path

__all__ = ["Mesh", "MeshIOError", "load_mesh", "save_mesh", "supported_formats"]

# Formats trimesh reads. PLY is here (not meshio) because trimesh handles point-only
# PLY and the many PLY producers in the wild; its custom vertex properties are read
# with meshio on the side (see _ply_point_data).
_TRIMESH_READ = {".stl", ".obj", ".ply", ".off", ".glb", ".gltf"}
# Formats written by trimesh: meshio cannot write glTF.
_TRIMESH_WRITE = {".glb", ".gltf"}
# Formats that store geometry only; data passed to save_mesh for them is an error.
_NO_DATA = {".stl", ".obj", ".off", ".glb", ".gltf"}
# Surface formats: a volume mesh is written as its boundary triangles.
_SURFACE = {".stl", ".obj", ".ply", ".off", ".glb", ".gltf"}
# Formats whose writer creates side files (XDMF writes a .h5 next to it): no temp-file rename.
_SIDE_FILES = {".xdmf", ".xmf"}


class MeshIOError(ValueError):
    """A mesh file could not be read or written; the message names the file and the reason."""


def _meshio_extensions() -> set[str]:
    import meshio

    return set(meshio.extension_to_filetypes)


def supported_formats() -> list[str]:
    """File extensions :func:`load_mesh` understands (lower case, with the dot)."""
    return sorted(_TRIMESH_READ | _meshio_extensions())


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for double in (".vol.gz", ".dato.gz", ".post.gz"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


@dataclass
class Mesh:
    """Points with optional connectivity and data, as read from (or written to) a mesh file.

    Attributes:
        points: (N, 3) float64 coordinates (2-D files are padded with z = 0).
        cells: meshio cell type ("triangle", "quad", "tetra", "hexahedron", "line", ...)
            -> (n_cells, nodes_per_cell) int64 connectivity into ``points``. Several
            blocks of the same type in a file are concatenated in file order.
        point_data: name -> (N,) or (N, k) array.
        cell_data: name -> {cell type -> (n_cells,) or (n_cells, k) array}, one entry per
            cell type present (the layout of meshio's ``cell_data_dict``).
        source: the file it was read from, if any.

    ``faces`` and ``normals`` are computed on first use and kept: build a new Mesh rather
    than editing ``points``/``cells`` in place.
    """

    points: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    cell_data: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3):
            raise ValueError(f"Mesh.points must have shape (N, 2) or (N, 3), got {pts.shape}")
        if pts.shape[1] == 2:
            pts = np.concatenate([pts, np.zeros((pts.shape[0], 1))], axis=1)
        if not np.isfinite(pts).all():
            raise ValueError("Mesh.points contains NaN or Inf")
        self.points = np.ascontiguousarray(pts)
        n = pts.shape[0]
        cells = {}
        for kind, conn in self.cells.items():
            c = np.asarray(conn, dtype=np.int64)
            if c.ndim != 2:
                raise ValueError(f"Mesh.cells[{kind!r}] must be (n_cells, nodes_per_cell), got shape {c.shape}")
            if c.size and (c.min() < 0 or c.max() >= n):
                raise ValueError(f"Mesh.cells[{kind!r}] indexes outside the {n} points")
            cells[kind] = c
        self.cells = cells
        for name, v in self.point_data.items():
            if np.shape(v)[:1] != (n,):
                raise ValueError(f"Mesh.point_data[{name!r}] must have {n} rows, got shape {np.shape(v)}")
        self.point_data = {k: np.asarray(v) for k, v in self.point_data.items()}
        for name, per_type in self.cell_data.items():
            for kind, v in per_type.items():
                if kind not in self.cells or np.shape(v)[:1] != (len(self.cells[kind]),):
                    raise ValueError(f"Mesh.cell_data[{name!r}][{kind!r}] does not match the {kind!r} cells")
        self.cell_data = {k: {t: np.asarray(v) for t, v in d.items()} for k, d in self.cell_data.items()}

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @cached_property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 surface triangles: triangle cells, quads split in two, or, for a
        tetrahedral volume mesh without surface cells, its boundary (faces used by one tetra).
        Empty (0, 3) for a point cloud or a mesh with no surface."""
        parts = []
        if "triangle" in self.cells:
            parts.append(self.cells["triangle"])
        if "quad" in self.cells:
            q = self.cells["quad"]
            parts += [q[:, [0, 1, 2]], q[:, [0, 2, 3]]]
        if not parts and "tetra" in self.cells:
            parts.append(_tetra_boundary(self.cells["tetra"], self.points))
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, 3), dtype=np.int64)

    @property
    def is_surface(self) -> bool:
        return len(self.faces) > 0

    @cached_property
    def normals(self) -> np.ndarray | None:
        """(N, 3) unit vertex normals (area-weighted face normals, via trimesh) for surfaces,
        None for point clouds and line meshes. Points that no face touches get zero vectors."""
        if not self.is_surface:
            return None
        return np.asarray(self.to_trimesh().vertex_normals, dtype=np.float64)

    def to_trimesh(self):
        """The surface as a ``trimesh.Trimesh`` (vertex order kept, nothing merged or removed)."""
        import trimesh

        if not self.is_surface:
            raise ValueError(f"mesh {self.source or ''} has no surface faces to make a trimesh.Trimesh from")
        return trimesh.Trimesh(self.points, self.faces, process=False)

    @classmethod
    def from_trimesh(cls, tm, *, source: str | None = None) -> "Mesh":
        """A Mesh from a ``trimesh.Trimesh`` (triangles) or ``trimesh.PointCloud`` (points only)."""
        faces = getattr(tm, "faces", None)
        cells = {"triangle": np.asarray(faces)} if faces is not None and len(faces) else {}
        pdata = {k: np.asarray(v) for k, v in getattr(tm, "vertex_attributes", {}).items()
                 if np.shape(v)[:1] == (len(tm.vertices),) and np.asarray(v).dtype.kind in "fiub"}
        return cls(np.asarray(tm.vertices), cells=cells, point_data=pdata, source=source)

    def to_sample(self, *, features: tuple[str, ...] = ("normals",), fields: tuple[str, ...] = (),
                  dtype=None):
        """A :class:`pyengine.data.Sample` with the mesh points as input points.

        Args:
            features: per-point inputs stacked as columns, in order: ``"normals"`` (3 columns)
                or any ``point_data`` name. Empty tuple: no features.
            fields: ``point_data`` names that become target fields (at the points).
            dtype: floating dtype of the tensors (default: torch's default dtype).
        """
        import torch

        from ..data.sample import Sample

        dtype = dtype or torch.get_default_dtype()
        cols = []
        for name in features:
            if name == "normals":
                if self.normals is None:
                    raise ValueError(f"{self.source or 'mesh'}: 'normals' requested but the mesh has no surface")
                cols.append(self.normals)
            elif name in self.point_data:
                v = np.asarray(self.point_data[name], dtype=np.float64)
                cols.append(v.reshape(len(v), -1))
            else:
                raise KeyError(f"feature {name!r} is neither 'normals' nor a point_data array "
                               f"(have {sorted(self.point_data)})")
        feats = torch.as_tensor(np.concatenate(cols, axis=1), dtype=dtype) if cols else None
        missing = [f for f in fields if f not in self.point_data]
        if missing:
            raise KeyError(f"fields {missing} are not point_data arrays (have {sorted(self.point_data)})")
        return Sample(
            points=torch.as_tensor(self.points, dtype=dtype),
            features=feats,
            fields={f: torch.as_tensor(np.asarray(self.point_data[f], dtype=np.float64), dtype=dtype)
                    for f in fields},
            cells={k: torch.as_tensor(v) for k, v in self.cells.items()},
            metadata={"source": self.source} if self.source else {},
        )


def _tetra_boundary(tetra: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Triangles used by exactly one tetrahedron, oriented outward (right-hand rule)."""
    # each face listed with the opposite vertex, so orientation can be fixed afterwards
    local = np.array([[1, 2, 3, 0], [0, 3, 2, 1], [0, 1, 3, 2], [0, 2, 1, 3]])
    f = tetra[:, local].reshape(-1, 4)
    tri, opp = f[:, :3], f[:, 3]
    _, idx, counts = np.unique(np.sort(tri, axis=1), axis=0, return_index=True, return_counts=True)
    keep = idx[counts == 1]
    tri, opp = tri[keep], opp[keep]
    a, b, c = (points[tri[:, i]] for i in range(3))
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), points[opp] - a) > 0
    tri[inward] = tri[inward][:, [0, 2, 1]]
    return tri


# --------------------------------------------------------------------------- reading


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MeshIOError(f"{path}: no such file")
    if not path.is_file():
        raise MeshIOError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise MeshIOError(f"{path}: the file is empty")


def _merge_duplicates(points: np.ndarray, faces: np.ndarray, point_data: dict[str, np.ndarray]):
    """Merge vertices that coincide to trimesh's merge tolerance; the first copy's data wins."""
    import trimesh

    # keep_order: merged vertices stay in file order (first copy's position)
    keep, inverse = trimesh.grouping.unique_rows(points, keep_order=True)
    if len(keep) == len(points):
        return points, faces, point_data
    return points[keep], inverse[faces], {k: v[keep] for k, v in point_data.items()}


def _ply_point_data(path: Path, n: int) -> dict[str, np.ndarray]:
    """Scalar vertex properties of a PLY file beyond x, y, z (trimesh drops them)."""
    import meshio

    try:
        # meshio may print and sys.exit on PLY dialects it does not know: keep it quiet
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            m = meshio.read(path, file_format="ply")
    except (Exception, SystemExit):  # noqa: BLE001  (trimesh read the geometry; extra data is optional)
        return {}
    if len(m.points) != n:
        return {}
    return {k: np.asarray(v) for k, v in m.point_data.items() if k not in ("nx", "ny", "nz")}


def _read_trimesh(path: Path, suffix: str) -> Mesh:
    import trimesh

    loaded = trimesh.load(path, process=False, file_type=suffix.lstrip("."))
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            raise MeshIOError(f"{path}: contains no geometry")
        # transforms of the scene graph applied, all meshes concatenated into one
        loaded = loaded.to_geometry()
    if isinstance(loaded, trimesh.PointCloud):
        points, faces = np.asarray(loaded.vertices, dtype=np.float64), np.zeros((0, 3), dtype=np.int64)
    elif isinstance(loaded, trimesh.Trimesh):
        points, faces = np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces, dtype=np.int64)
    else:
        raise MeshIOError(f"{path}: holds a {type(loaded).__name__}, not a triangle mesh or point cloud")
    if len(points) == 0:
        raise MeshIOError(f"{path}: contains no points")
    pdata = _ply_point_data(path, len(points)) if suffix == ".ply" else {}
    if len(faces):
        points, faces, pdata = _merge_duplicates(points, faces, pdata)
    return Mesh(points, cells={"triangle": faces} if len(faces) else {}, point_data=pdata, source=str(path))


def _read_meshio(path: Path) -> Mesh:
    import meshio

    # meshio prints parser errors and then calls sys.exit(1) for some formats: capture
    # what it prints and turn the exit into an error that carries that text
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            m = meshio.read(path)
    except SystemExit:
        reason = " ".join(log.getvalue().split()) or "meshio gave up"
        raise MeshIOError(f"{path}: could not be read ({reason})") from None
    if len(m.points) == 0:
        raise MeshIOError(f"{path}: contains no points")
    cells = {k: np.asarray(v) for k, v in m.cells_dict.items()}
    # gmsh physical/geometrical tags stay, under meshio's "gmsh:..." names
    cell_data = {name: {t: np.asarray(v) for t, v in d.items()} for name, d in m.cell_data_dict.items()}
    return Mesh(np.asarray(m.points), cells=cells, point_data=dict(m.point_data), cell_data=cell_data,
                source=str(path))


def load_mesh(path: str | os.PathLike) -> Mesh:
    """Read a mesh or point cloud file into a :class:`Mesh`.

    STL, OBJ, PLY, OFF, GLB and GLTF go through trimesh (duplicate vertices merged; a
    GLB scene's meshes are concatenated with their transforms applied; a PLY without
    faces becomes a point cloud). Every other meshio format (VTU, VTK, MSH, XDMF, MED,
    Abaqus INP, ...) goes through meshio, keeping all cell blocks and data.

    Raises:
        MeshIOError: the file is missing, empty, unreadable, corrupt, of an unsupported
            type, or holds no points. The message starts with the path.
    """
    path = Path(path)
    _check_readable(path)
    suffix = _suffix(path)
    if suffix == ".vtp":
        raise MeshIOError(f"{path}: VTK PolyData (.vtp) is not supported by meshio; convert it to .vtu or .vtk")
    if suffix not in _TRIMESH_READ and suffix not in _meshio_extensions():
        raise MeshIOError(f"{path}: unsupported mesh format {suffix or '(no extension)'!r}; "
                          f"supported: {', '.join(supported_formats())}")
    try:
        mesh = _read_trimesh(path, suffix) if suffix in _TRIMESH_READ else _read_meshio(path)
    except MeshIOError:
        raise
    except Exception as exc:  # noqa: BLE001  (parsers raise anything; the user needs the file and reason)
        raise MeshIOError(f"{path}: could not be read as {suffix[1:].upper()} "
                          f"({type(exc).__name__}: {exc})") from None
    return mesh


# --------------------------------------------------------------------------- writing


def _as_mesh(mesh: Any) -> Mesh:
    if isinstance(mesh, Mesh):
        return mesh
    try:
        import trimesh
    except ImportError:  # pragma: no cover
        trimesh = None
    if trimesh is not None and isinstance(mesh, (trimesh.Trimesh, trimesh.PointCloud)):
        return Mesh.from_trimesh(mesh)
    raise TypeError(f"mesh must be a pyengine Mesh or a trimesh.Trimesh/PointCloud, got {type(mesh).__name__}")


def _write_meshio(mesh: Mesh, target: str, suffix: str, point_data: dict, cell_data: dict) -> None:
    import meshio

    blocks = list(mesh.cells.items())
    if not blocks and suffix not in (".ply", ".vtu", ".vtk", ".xdmf", ".xmf"):
        raise MeshIOError(f"{target}: a point cloud (no cells) cannot be written as {suffix}")
    cdata = {name: [np.asarray(per_type[t]) for t, _ in blocks] for name, per_type in cell_data.items()}
    m = meshio.Mesh(mesh.points, blocks, point_data=point_data, cell_data=cdata)
    kwargs = {}
    if suffix == ".msh":
        kwargs = {"file_format": "gmsh"}  # gmsh 4.1 binary
        # meshio's gmsh writer requires physical/geometrical tags; default to 0 when absent
        for tag in ("gmsh:physical", "gmsh:geometrical"):
            m.cell_data.setdefault(tag, [np.zeros(len(c), dtype=np.int32) for _, c in blocks])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meshio.write(target, m, **kwargs)


def _write_trimesh(mesh: Mesh, target: str, suffix: str) -> None:
    import trimesh

    if mesh.is_surface:
        obj = trimesh.Trimesh(mesh.points, mesh.faces, process=False)
    else:
        raise MeshIOError(f"{target}: a mesh without surface faces cannot be written as {suffix}")
    obj.export(target, file_type=suffix.lstrip("."))


def _write_any(mesh, target: str, suffix: str, pdata, cdata) -> None:
    if suffix in _TRIMESH_WRITE:
        _write_trimesh(mesh, target, suffix)
    else:
        _write_meshio(mesh, target, suffix, pdata, cdata)


def save_mesh(mesh: Any, path: str | os.PathLike, point_data: dict[str, Any] | None = None,
              cell_data: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write ``mesh`` (a :class:`Mesh` or trimesh object) to ``path``; format from the extension.

    Args:
        point_data: extra name -> (N,) or (N, k) arrays, merged over ``mesh.point_data``.
        cell_data: extra name -> {cell type -> array}, merged over ``mesh.cell_data``.

    GLB/GLTF are written with trimesh, everything else with meshio (so PLY keeps scalar
    point data; VTU/VTK/XDMF/MSH keep everything). STL, OBJ, OFF and GLB store geometry
    only: passing data for them raises, and the mesh's own data is dropped with a warning.
    Surface formats (STL, OBJ, PLY, OFF, GLB) receive :attr:`Mesh.faces` when the mesh has
    other cells (quads split, a tetrahedral mesh's boundary). MSH is gmsh 4.1; XDMF stores
    its arrays in an HDF5 file next to it. Single-file formats are written to a temporary file and renamed, so a crash never leaves half a file.

    Returns the path. Raises :class:`MeshIOError` for unsupported formats or failed writes.
    """
    mesh = _as_mesh(mesh)
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".vtp" or (suffix not in _TRIMESH_WRITE and suffix not in _meshio_extensions()):
        raise MeshIOError(f"{path}: unsupported mesh format {suffix or '(no extension)'!r} for writing")
    if suffix in _NO_DATA and (point_data or cell_data):
        raise MeshIOError(f"{path}: {suffix} stores geometry only; write point/cell data to .vtu, .vtk, .xdmf or .ply")
    pdata = {**mesh.point_data, **{k: np.asarray(v) for k, v in (point_data or {}).items()}}
    cdata = {**mesh.cell_data, **{k: {t: np.asarray(a) for t, a in d.items()} for k, d in (cell_data or {}).items()}}
    # validates shapes of the extra data against the mesh
    Mesh(mesh.points, mesh.cells, pdata, cdata)
    if suffix in _NO_DATA and (pdata or cdata):
        warnings.warn(f"{path}: {suffix} stores geometry only; point/cell data dropped", stacklevel=2)
        pdata, cdata = {}, {}
    if suffix in _SURFACE and mesh.is_surface and set(mesh.cells) != {"triangle"}:
        # surface formats get the triangle surface: quads split, a tet mesh's boundary
        if cdata:
            warnings.warn(f"{path}: cell data dropped, the cells become surface triangles", stacklevel=2)
        mesh, cdata = Mesh(mesh.points, {"triangle": mesh.faces}), {}
    if suffix == ".ply" and cdata:
        raise MeshIOError(f"{path}: PLY cannot store cell data; use .vtu, .vtk or .xdmf")
    if suffix == ".ply":
        # PLY holds scalar vertex properties only: split (N, k) arrays into name_0..name_{k-1}
        flat = {}
        for k, v in pdata.items():
            v = np.asarray(v)
            if v.ndim == 1:
                flat[k] = v
            else:
                flat.update({f"{k}_{j}": v.reshape(len(v), -1)[:, j] for j in range(v.reshape(len(v), -1).shape[1])})
        pdata = {k: (v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in flat.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if suffix in _SIDE_FILES:  # XDMF writes a side file next to it: write in place
            _write_any(mesh, str(path), suffix, pdata, cdata)
        else:
            with atomic_path(path, suffix=suffix) as target:
                _write_any(mesh, target, suffix, pdata, cdata)
    except MeshIOError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MeshIOError(f"{path}: could not be written as {suffix[1:].upper()} "
                          f"({type(exc).__name__}: {exc})") from None
    return path
