"""Mesh files in, :class:`Mesh` out (and back), without silent loss.

Which parser reads what:

* STL, OBJ, OFF (:mod:`.readers`) and PLY (:mod:`.ply`): pyengine's own parsers,
  because they must keep the file's vertices in order, keep quads and polygons,
  and notice truncation (trimesh reads a cut file as a smaller mesh);
* STEP, IGES, BREP (:mod:`.cad`): tessellated by gmsh's OpenCASCADE kernel;
* VTP (:mod:`.vtp`): VTK's XML reader (meshio has none);
* GLB/GLTF: trimesh (scenes concatenated with their transforms);
* everything else (VTU, VTK, MSH, XDMF, MED, INP, ...): meshio.

Any of them may be gzip-compressed (``body.stl.gz``). Errors from the parsers
are re-raised as :class:`MeshIOError` naming the file and the reason, in one
line. A file that is readable only in part (truncated, faces indexing missing
vertices, NaN/Inf coordinates) raises :class:`PartialMeshError` unless
``allow_partial=True``, which keeps the readable part with a one-line
:class:`MeshWarning` giving the counts.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .cad import CAD_SUFFIXES
from .readers import FormatError, RawMesh

__all__ = ["Mesh", "MeshIOError", "MeshWarning", "PartialMeshError", "SURFACE_CELLS", "load_mesh", "readable_format",
           "save_mesh", "supported_formats"]

# Parsed by pyengine itself, from bytes (so .gz needs no temporary file).
_OWN_READ = {".stl", ".obj", ".off", ".ply"}
# Read by trimesh.
_TRIMESH_READ = {".glb", ".gltf"}
# Written by trimesh: meshio cannot write glTF.
_TRIMESH_WRITE = {".glb", ".gltf"}
# Formats that store geometry only; data passed to save_mesh for them is an error.
_NO_DATA = {".stl", ".obj", ".off", ".glb", ".gltf"}
# Surface formats: a volume mesh is written as its boundary triangles.
_SURFACE = {".stl", ".obj", ".ply", ".off", ".glb", ".gltf", ".vtp"}
# Formats whose writer creates side files (XDMF writes a .h5 next to it): no temp-file rename.
_SIDE_FILES = {".xdmf", ".xmf"}


class MeshIOError(ValueError):
    """A mesh file could not be read or written; the message names the file and the reason."""


class PartialMeshError(MeshIOError):
    """The file is readable only in part (truncated, faces indexing missing vertices, NaN/Inf
    coordinates). ``problems`` lists what is wrong, one sentence each with counts."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = list(problems)


class MeshWarning(UserWarning):
    """Something about a mesh file the user should know (one line, names the file)."""


def is_surface_cell(kind: str) -> bool:
    """Triangles, quads and polygons (``"polygon"``, ``"polygon5"``, ...)."""
    return kind in ("triangle", "quad") or kind.startswith("polygon")


SURFACE_CELLS = ("triangle", "quad", "polygon")
# Nodes per cell of the common fixed-size types (the rest are checked by meshio's table on reading).
_NODES = {"vertex": 1, "line": 2, "triangle": 3, "quad": 4, "tetra": 4, "pyramid": 5, "wedge": 6, "hexahedron": 8}


def _meshio_extensions() -> set[str]:
    import meshio

    return set(meshio.extension_to_filetypes)


def supported_formats() -> list[str]:
    """File extensions :func:`load_mesh` understands (lower case, with the dot); each may also end in ``.gz``."""
    return sorted(_OWN_READ | _TRIMESH_READ | set(CAD_SUFFIXES) | {".vtp"} | _meshio_extensions())


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz") and name not in (".gz",):
        inner = Path(name[:-3])
        if inner.suffix and inner.suffix not in (".vol", ".dato", ".post"):
            return inner.suffix
    for double in (".vol.gz", ".dato.gz", ".post.gz"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def readable_format(path: str | os.PathLike) -> str:
    """The format suffix :func:`load_mesh` would use for ``path`` (e.g. ``".stl"`` for ``body.STL.gz``),
    after checking the file exists and the format is supported; raises :class:`MeshIOError`."""
    path = Path(path)
    _check_readable(path)
    suffix = _suffix(path)
    if suffix not in _OWN_READ | _TRIMESH_READ | set(CAD_SUFFIXES) | {".vtp"} | _meshio_extensions():
        raise MeshIOError(f"{path}: unsupported mesh format {suffix or '(no extension)'!r}; "
                          f"supported: {', '.join(supported_formats())} (each optionally .gz)")
    return suffix


def _gzipped(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".gz") and not name.endswith((".vol.gz", ".dato.gz", ".post.gz"))


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
        units: length unit of ``points`` when the file declares one (STEP/IGES: ``"m"``), else None.

    Surface cells are ``"triangle"``, ``"quad"`` and ``"polygonN"`` (N-gons, one block per N;
    ``"polygon"`` is accepted for in-memory meshes). ``faces`` and ``normals`` are computed on first use and kept: build a new Mesh rather
    than editing ``points``/``cells`` in place.
    """

    points: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    cell_data: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    source: str | None = None
    units: str | None = None

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
            want = _NODES.get(kind) or (int(kind[7:]) if kind[7:].isdigit() and kind.startswith("polygon") else None)
            if want is not None and c.shape[1] != want:
                raise ValueError(f"Mesh.cells[{kind!r}] must have {want} nodes per cell, got shape {c.shape}")
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

    def _surface_blocks(self) -> list[tuple[str, np.ndarray]]:
        """The surface cell blocks in the order ``faces`` triangulates them."""
        order = {"triangle": 0, "quad": 1}
        kinds = sorted((k for k in self.cells if is_surface_cell(k)),
                       key=lambda k: (order.get(k, 2), self.cells[k].shape[1], k))
        return [(k, self.cells[k]) for k in kinds]

    @cached_property
    def _triangulation(self) -> tuple[np.ndarray, np.ndarray]:
        blocks = self._surface_blocks()
        if not blocks:
            if "tetra" in self.cells:
                tri = _tetra_boundary(self.cells["tetra"], self.points)
                return tri, np.full(len(tri), -1, dtype=np.int64)
            return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
        tris, origin, base = [], [], 0
        for _, c in blocks:
            k = c.shape[1]
            if k < 3:
                raise ValueError(f"{self.source or 'mesh'}: a polygon block has {k} vertices per cell (need >= 3)")
            # fan from the first vertex: exact for convex polygons, the usual convention of CAD writers
            fan = np.stack([c[:, [0, j, j + 1]] for j in range(1, k - 1)], axis=1)  # (n, k-2, 3)
            tris.append(fan.reshape(-1, 3))
            origin.append(np.repeat(np.arange(base, base + len(c)), k - 2))
            base += len(c)
        return np.concatenate(tris), np.concatenate(origin)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 surface triangles: triangle cells, then quads and polygons fanned into
        triangles, or, for a tetrahedral volume mesh without surface cells, its boundary (faces
        used by one tetra). Empty (0, 3) for a point cloud or a mesh with no surface."""
        return self._triangulation[0]

    @property
    def face_cells(self) -> np.ndarray:
        """(F,) int64: for each triangle of ``faces``, its surface cell, numbered over the surface
        blocks in ``faces`` order (triangles, quads, then polygons by size); -1 for a tet boundary."""
        return self._triangulation[1]

    @property
    def is_surface(self) -> bool:
        return len(self.faces) > 0

    @cached_property
    def normals(self) -> np.ndarray | None:
        """(N, 3) unit vertex normals of the surface, None for point clouds and line meshes.

        Computed on the cleaned surface (:func:`pyengine.geometry.normals.robust_vertex_normals`):
        angle-weighted, outward on closed components, local PCA where faces cancel or a
        vertex belongs to no face. Always unit length."""
        if not self.is_surface:
            return None
        from .normals import robust_vertex_normals

        return robust_vertex_normals(self.points, self.faces)[0]

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


def _gunzip(data: bytes) -> tuple[bytes, str | None]:
    """Decompressed bytes and, if the stream is cut, a problem sentence (the readable part is kept)."""
    try:
        return gzip.decompress(data), None
    except EOFError:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(data)
        except zlib.error:
            part = b""
        return part, f"truncated gzip stream: it ends after {len(part):,} decompressed bytes"
    except (OSError, zlib.error) as exc:
        raise FormatError(f"not a valid gzip file ({exc})") from None


def _read_trimesh(data: bytes, suffix: str) -> RawMesh:
    import trimesh

    loaded = trimesh.load(io.BytesIO(data), process=False, file_type=suffix.lstrip("."))
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            raise FormatError("contains no geometry")
        # transforms of the scene graph applied, all meshes concatenated into one
        loaded = loaded.to_geometry()
    if isinstance(loaded, trimesh.PointCloud):
        points, faces = np.asarray(loaded.vertices, dtype=np.float64), np.zeros((0, 3), dtype=np.int64)
    elif isinstance(loaded, trimesh.Trimesh):
        points, faces = np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces, dtype=np.int64)
    else:
        raise FormatError(f"holds a {type(loaded).__name__}, not a triangle mesh or point cloud")
    return RawMesh(points, {"triangle": faces} if len(faces) else {})


@contextlib.contextmanager
def _memory_budget(nbytes: int):
    """Cap this process's address space at its current size + ``nbytes`` for the duration.

    meshio sizes its arrays from the counts in a file's header; a corrupt count makes it
    allocate (and, with overcommit, fill) many GB before the data runs out. Under the cap
    that allocation fails at once with MemoryError instead. Only the soft limit is lowered
    and it is restored afterwards. Linux only; a no-op elsewhere.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, AttributeError):
        yield
        return
    cap = current + nbytes
    if soft != resource.RLIM_INFINITY and soft <= cap or (hard != resource.RLIM_INFINITY and hard < cap):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _read_meshio(path: str) -> RawMesh:
    import meshio

    # meshio prints parser errors and then calls sys.exit(1) for some formats: capture
    # what it prints and turn the exit into an error that carries that text
    log = io.StringIO()
    budget = (1 << 30) + 64 * os.path.getsize(path)  # any real mesh needs far less per byte of file
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
                _memory_budget(budget):
            warnings.simplefilter("ignore")
            m = meshio.read(path)
    except SystemExit:
        reason = " ".join(log.getvalue().split()) or "meshio gave up"
        raise FormatError(f"could not be read ({reason})") from None
    except MemoryError:
        raise FormatError(f"its header asks for more memory than a {os.path.getsize(path):,}-byte file can "
                          f"describe (corrupt counts)") from None
    pts = np.asarray(m.points)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise FormatError(f"points have shape {pts.shape}, not (N, 2) or (N, 3)")
    if pts.shape[1] == 2:
        pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    # blocks of one type are concatenated in file order; polygons are keyed by their size
    cells: dict[str, list] = {}
    cdata: dict[str, dict[str, list]] = {}
    from meshio._common import num_nodes_per_cell

    for i, block in enumerate(m.cells):
        data = np.asarray(block.data)
        kind = block.type
        want = num_nodes_per_cell.get(kind)
        if data.ndim != 2 or (want is not None and data.shape[1] != want):
            # meshio reshapes what it read: a cut or corrupt cell section comes out with the wrong width
            raise FormatError(f"{kind} cells have shape {data.shape}, not (n, {want or 'k'}): the cell section is "
                              f"truncated or corrupt")
        if kind == "polygon":
            kind = {3: "triangle", 4: "quad"}.get(data.shape[1], f"polygon{data.shape[1]}")
        cells.setdefault(kind, []).append(data)
        for name, per_block in m.cell_data.items():
            cdata.setdefault(name, {}).setdefault(kind, []).append(np.asarray(per_block[i]))
    cells_out = {k: np.concatenate(v) for k, v in cells.items()}
    cdata_out = {n: {k: np.concatenate(v) for k, v in d.items()} for n, d in cdata.items()}
    pdata = {k: np.asarray(v) for k, v in m.point_data.items()}
    return RawMesh(pts.astype(np.float64), cells_out, point_data=pdata, cell_data=cdata_out)


def _drop_bad(raw: RawMesh) -> list[str]:
    """Problems with the parsed arrays themselves (NaN/Inf vertices, cells indexing missing vertices),
    repaired in place by dropping what is bad: the vertices and every cell that uses one."""
    problems = []
    n = len(raw.points)
    finite = np.isfinite(raw.points).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        problems.append(f"{len(bad):,} of {n:,} vertices have NaN or Inf coordinates (first: vertex {bad[0]:,})")
    out_of_range = 0
    new_index = np.cumsum(finite) - 1
    for kind in list(raw.cells):
        c = np.asarray(raw.cells[kind], dtype=np.int64)
        if c.ndim != 2:
            raise FormatError(f"{kind} cells have shape {c.shape}, not (n_cells, nodes)")
        inside = ((c >= 0) & (c < n)).all(axis=1)
        out_of_range += int((~inside).sum())
        ok = inside.copy()
        ok[inside] = finite[c[inside]].all(axis=1)
        if not ok.all():
            raw.cells[kind] = new_index[c[ok]]
            for per_type in raw.cell_data.values():
                if kind in per_type:
                    per_type[kind] = np.asarray(per_type[kind])[ok]
        else:
            raw.cells[kind] = new_index[c] if not finite.all() else c
        if len(raw.cells[kind]) == 0:
            del raw.cells[kind]
            for per_type in raw.cell_data.values():
                per_type.pop(kind, None)
    if out_of_range:
        total = sum(len(c) for c in raw.cells.values()) + out_of_range
        problems.append(f"{out_of_range:,} of {total:,} cells index vertices the file does not have "
                        f"(it has {n:,} vertices)")
    if not finite.all():
        raw.points = raw.points[finite]
        raw.point_data = {k: np.asarray(v)[finite] for k, v in raw.point_data.items()
                          if np.shape(v)[:1] == (n,)}
    return problems


def load_mesh(path: str | os.PathLike, *, allow_partial: bool = False, cad_size: float | None = None) -> Mesh:
    """Read a mesh or point cloud file into a :class:`Mesh`.

    The vertices keep the file's order and count (STL, which stores three vertices per
    facet, shares identical copies, numbered by first appearance). Quads and polygons
    stay as they are (see :attr:`Mesh.faces` for the triangulation). A GLB scene's meshes
    are concatenated with their transforms applied; a PLY without faces is a point cloud;
    STEP/IGES/BREP are tessellated by gmsh/OpenCASCADE (``cad_size``: largest edge, see
    :func:`pyengine.geometry.cad.read_cad`) with a ``component`` cell field per solid.
    Any format may be gzip-compressed (``.stl.gz``).

    Args:
        allow_partial: keep the readable part of a truncated or damaged file (with a
            :class:`MeshWarning` giving the counts) instead of raising :class:`PartialMeshError`.

    Raises:
        PartialMeshError: the file is truncated, has faces that index missing vertices, or
            has NaN/Inf coordinates (and ``allow_partial`` is False).
        MeshIOError: the file is missing, empty, unreadable, corrupt, of an unsupported
            type, or holds no points. The message starts with the path and is one line.
    """
    path = Path(path)
    suffix = readable_format(path)
    problems: list[str] = []
    units = None
    try:
        data = None
        if _gzipped(path):
            data, cut = _gunzip(path.read_bytes())
            if cut:
                problems.append(cut)
            if not data:
                raise FormatError("the gzip stream holds no data")
        if suffix in _OWN_READ or suffix in _TRIMESH_READ:
            data = path.read_bytes() if data is None else data
            if suffix in _TRIMESH_READ:
                raw = _read_trimesh(data, suffix)
            else:
                from .ply import read_ply
                from .readers import read_obj, read_off, read_stl

                raw = {".stl": read_stl, ".obj": read_obj, ".off": read_off, ".ply": read_ply}[suffix](data)
        else:
            with _as_file(path, suffix, data) as file:
                if suffix in CAD_SUFFIXES:
                    from .cad import read_cad

                    raw, units = read_cad(file, size=cad_size)
                elif suffix == ".vtp":
                    from .vtp import read_vtp

                    raw = read_vtp(file)
                else:
                    raw = _read_meshio(file)
        problems += raw.problems
        problems += _drop_bad(raw)
        if len(raw.points) == 0:
            raise FormatError(problems[0] if problems else "contains no points")
        mesh = Mesh(raw.points, cells=raw.cells, point_data=raw.point_data, cell_data=raw.cell_data,
                    source=str(path), units=units)
    except MeshIOError:
        raise
    except FormatError as exc:
        raise MeshIOError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (parsers raise anything; the user needs the file and reason)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise MeshIOError(f"{path}: could not be read as {suffix[1:].upper()} ({reason})") from None
    for note in raw.notes:
        warnings.warn(f"{path}: {note}", MeshWarning, stacklevel=2)
    if problems:
        if not allow_partial:
            raise PartialMeshError(f"{path}: {'; '.join(problems)}", problems)
        n_cells = sum(len(c) for c in mesh.cells.values())
        warnings.warn(f"{path}: {'; '.join(problems)}; using the readable part ({mesh.num_points:,} vertices, "
                      f"{n_cells:,} cells)", MeshWarning, stacklevel=2)
    return mesh


@contextlib.contextmanager
def _as_file(path: Path, suffix: str, data: bytes | None):
    """The path itself, or (for decompressed data) a temporary file with the inner suffix."""
    if data is None:
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="pyengine-gz-") as tmp:
        inner = Path(tmp) / (Path(path.name[:-3]).stem + suffix)
        inner.write_bytes(data)
        yield str(inner)


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


def _meshio_type(kind: str) -> str:
    return "polygon" if kind.startswith("polygon") else kind


def _write_meshio(mesh: Mesh, target: str, suffix: str, point_data: dict, cell_data: dict) -> None:
    import meshio

    blocks = list(mesh.cells.items())
    if not blocks and suffix not in (".vtu", ".vtk", ".xdmf", ".xmf"):
        raise MeshIOError(f"{target}: a point cloud (no cells) cannot be written as {suffix}")
    cdata = {name: [np.asarray(per_type[t]) for t, _ in blocks] for name, per_type in cell_data.items()}
    m = meshio.Mesh(mesh.points, [(_meshio_type(k), c) for k, c in blocks], point_data=point_data,
                    cell_data=cdata)
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


def _write_any(mesh: Mesh, target: str, suffix: str, pdata, cdata) -> None:
    if suffix in _TRIMESH_WRITE:
        _write_trimesh(mesh, target, suffix)
    elif suffix == ".ply":
        from .ply import write_ply

        write_ply(target, mesh.points, mesh.cells, pdata, cdata)
    elif suffix == ".vtp":
        from .vtp import write_vtp

        write_vtp(target, mesh.points, mesh.cells, pdata, cdata)
    elif suffix == ".off":
        from .readers import write_off

        if not mesh.cells:
            raise MeshIOError(f"{target}: a point cloud (no cells) cannot be written as .off")
        write_off(target, mesh.points, mesh.cells)
    elif suffix == ".stl":
        _write_trimesh(mesh, target, suffix)
    else:
        _write_meshio(mesh, target, suffix, pdata, cdata)


def _split_columns(pdata: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(N, k) arrays as name_0..name_{k-1}: PLY holds scalar vertex properties only."""
    flat = {}
    for k, v in pdata.items():
        v = np.asarray(v)
        if v.ndim == 1:
            flat[k] = v
        else:
            v2 = v.reshape(len(v), -1)
            flat.update({f"{k}_{j}": v2[:, j] for j in range(v2.shape[1])})
    return flat


def save_mesh(mesh: Any, path: str | os.PathLike, point_data: dict[str, Any] | None = None,
              cell_data: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write ``mesh`` (a :class:`Mesh` or trimesh object) to ``path``; format from the extension.

    Args:
        point_data: extra name -> (N,) or (N, k) arrays, merged over ``mesh.point_data``.
        cell_data: extra name -> {cell type -> array}, merged over ``mesh.cell_data``.

    PLY (binary, pyengine's writer) keeps polygons, scalar point data as vertex properties
    ((N, k) arrays split into ``name_0..``), scalar cell data as face properties; 64-bit
    integers are stored as 32-bit when every value fits and refused otherwise (PLY has no
    64-bit type). VTP goes through VTK; GLB/GLTF through trimesh; everything else through
    meshio (VTU/VTK/XDMF/MSH keep everything). STL, OBJ, OFF and GLB store geometry only:
    passing data for them raises, and the mesh's own data is dropped with a warning.
    Surface formats (STL, OBJ, PLY, OFF, GLB, VTP) receive the triangle surface
    (:attr:`Mesh.faces`) when the mesh has volume cells (a tetrahedral mesh's boundary);
    STL always gets triangles. MSH is gmsh 4.1; XDMF stores its arrays in an HDF5 file next
    to it. Single-file formats are written to a temporary file and renamed, so a crash never
    leaves half a file.

    Returns the path. Raises :class:`MeshIOError` for unsupported formats or failed writes.
    """
    mesh = _as_mesh(mesh)
    path = Path(path)
    suffix = _suffix(path)
    if _gzipped(path) or (suffix not in _TRIMESH_WRITE | {".ply", ".vtp", ".off"}
                          and suffix not in _meshio_extensions()):
        raise MeshIOError(f"{path}: unsupported mesh format {suffix or '(no extension)'!r} for writing")
    if suffix in _NO_DATA and (point_data or cell_data):
        raise MeshIOError(f"{path}: {suffix} stores geometry only; write point/cell data to .vtu, .vtp, .vtk "
                          f"or .ply")
    pdata = {**mesh.point_data, **{k: np.asarray(v) for k, v in (point_data or {}).items()}}
    cdata = {**mesh.cell_data, **{k: {t: np.asarray(a) for t, a in d.items()} for k, d in (cell_data or {}).items()}}
    # validates shapes of the extra data against the mesh
    Mesh(mesh.points, mesh.cells, pdata, cdata)
    if suffix in _NO_DATA and (pdata or cdata):
        warnings.warn(f"{path}: {suffix} stores geometry only; point/cell data dropped", MeshWarning, stacklevel=2)
        pdata, cdata = {}, {}
    volume = any(not is_surface_cell(k) for k in mesh.cells)
    if suffix in _SURFACE and mesh.is_surface and (volume or (suffix == ".stl" and set(mesh.cells) != {"triangle"})):
        # surface formats get the triangle surface: a tet mesh's boundary (STL: quads split too)
        if cdata:
            warnings.warn(f"{path}: cell data dropped, the cells become surface triangles", MeshWarning,
                          stacklevel=2)
        mesh, cdata = Mesh(mesh.points, {"triangle": mesh.faces}), {}
    if suffix == ".ply":
        pdata = _split_columns(pdata)
        cdata = {k: d for k, d in cdata.items() if all(np.asarray(v).ndim == 1 for v in d.values())}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if suffix in _SIDE_FILES:  # XDMF writes a side file next to it: write in place
            _write_any(mesh, str(path), suffix, pdata, cdata)
        else:
            with atomic_path(path, suffix=suffix) as target:
                _write_any(mesh, target, suffix, pdata, cdata)
    except MeshIOError:
        raise
    except ValueError as exc:
        if suffix == ".ply":  # a value PLY cannot hold: the writer's message says which
            raise MeshIOError(f"{path}: {exc}") from None
        raise MeshIOError(f"{path}: could not be written as {suffix[1:].upper()} "
                          f"({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise MeshIOError(f"{path}: could not be written as {suffix[1:].upper()} "
                          f"({type(exc).__name__}: {exc})") from None
    return path
