"""STEP, IGES and BREP files tessellated through gmsh's OpenCASCADE kernel.

CAD files hold exact surfaces (B-splines, cylinders, ...), not triangles. gmsh
imports them with OpenCASCADE and meshes every face; nodes on the curves two
faces share are shared, so each solid comes out as one closed triangle surface.
Assemblies keep one component id per solid (a ``component`` cell field); faces
that belong to no solid (open shells) are grouped into edge-connected sheets,
numbered after the solids.

STEP and IGES carry their length unit; OpenCASCADE converts it to its default,
millimetres, so the mesh's ``units`` is ``"mm"`` whatever the file used. BREP has
no unit (``units`` stays None). (gmsh's ``Geometry.OCCTargetUnit`` would pick
another, but it fails for IGES unless a STEP file was read first.)
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from .readers import FormatError, RawMesh

__all__ = ["CAD_SUFFIXES", "DEFAULT_SIZE_FRACTION", "read_cad"]

CAD_SUFFIXES = (".step", ".stp", ".iges", ".igs", ".brep", ".brp")
#: Default mesh size: this fraction of the bounding-box diagonal (curvature refines it further).
DEFAULT_SIZE_FRACTION = 0.01


#: Exit status of the tessellating child process for a file OpenCASCADE or gmsh rejected.
_REJECTED = 3
_CHILD = "import sys; from pyengine.geometry.cad import _child_main; _child_main(sys.argv[1:])"


def read_cad(path: str | Path, *, size: float | None = None) -> tuple[RawMesh, str | None]:
    """Tessellate a STEP/IGES/BREP file. Returns the triangles (with a ``component`` cell field per
    solid) and the unit of the coordinates (``"mm"`` for STEP/IGES, None for BREP).

    The tessellation runs in a child process: OpenCASCADE's translators can crash (a segfault) on
    a malformed file, found by fuzzing, and a crash there must not take the caller down. It
    becomes a :class:`~pyengine.geometry.readers.FormatError` like any other unreadable file.
    Starting the child costs about 2 s.

    Args:
        size: largest triangle edge, in those units; default :data:`DEFAULT_SIZE_FRACTION` of the
            bounding-box diagonal. Curved faces are refined further (16 elements per 2 pi).
    """
    import signal
    import subprocess
    import sys
    import tempfile

    if size is not None and not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
        raise ValueError(f"size must be a positive finite length, got {size!r}")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="pyengine-cad-") as tmp:
        out = Path(tmp) / "mesh.npz"
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path.resolve()), repr(size), str(out)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            with np.load(out) as z:
                raw = RawMesh(z["points"], {"triangle": z["triangle"]},
                              cell_data={"component": {"triangle": z["component"]}})
                units = str(z["units"]) or None
            return raw, units
    message = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode == _REJECTED:
        raise FormatError(message)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise FormatError(f"OpenCASCADE crashed reading it ({name}); the file is malformed or unsupported")
    raise RuntimeError(f"the CAD tessellation process failed (exit {proc.returncode}): {message}")


def _child_main(argv: list[str]) -> None:
    """The child of :func:`read_cad`: tessellate, write the arrays to an ``.npz``; a rejected file
    exits with ``_REJECTED`` and its message as the last line of stderr."""
    import sys

    path, size, out = argv
    try:
        raw, units = _tessellate(Path(path), None if size == "None" else float(size))
    except FormatError as exc:
        sys.stderr.write("\n" + " ".join(str(exc).split()) + "\n")
        sys.exit(_REJECTED)
    np.savez(out, points=raw.points, triangle=raw.cells["triangle"],
             component=raw.cell_data["component"]["triangle"], units=np.array(units or ""))


def _tessellate(path: Path, size: float | None) -> tuple[RawMesh, str | None]:
    """:func:`read_cad` in this process (its child)."""
    from ..data.physics._gmsh import gmsh_session

    with_units = path.suffix.lower() in (".step", ".stp", ".iges", ".igs")
    with gmsh_session() as gmsh:
        try:
            with _quiet_stdout():  # OpenCASCADE's translators print statistics on the C stdout
                gmsh.model.occ.importShapes(str(path))
            gmsh.model.occ.synchronize()
        except Exception as exc:  # noqa: BLE001  gmsh raises plain Exceptions with its log line
            raise FormatError(f"OpenCASCADE could not read it ({_last_line(exc)})") from None
        surfaces = gmsh.model.getEntities(2)
        if not surfaces:
            raise FormatError("holds no surfaces (no faces or solids to tessellate)")
        box = np.asarray(gmsh.model.getBoundingBox(-1, -1), dtype=np.float64)
        diag = float(np.linalg.norm(box[3:] - box[:3]))
        if not diag > 0 or not math.isfinite(diag):
            raise FormatError("has a zero or invalid bounding box")
        h = float(size) if size is not None else DEFAULT_SIZE_FRACTION * diag
        gmsh.option.setNumber("Mesh.MeshSizeMax", h)
        gmsh.option.setNumber("Mesh.MeshSizeMin", 0.0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 16)
        try:
            gmsh.model.mesh.generate(2)
        except Exception as exc:  # noqa: BLE001
            raise FormatError(f"gmsh could not mesh its surfaces ({_last_line(exc)})") from None
        tags, coords, _ = gmsh.model.mesh.getNodes()
        if len(tags) == 0:
            raise FormatError("gmsh produced no nodes")
        index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
        index[tags.astype(np.int64)] = np.arange(len(tags))
        points = coords.reshape(-1, 3).astype(np.float64)
        owner: dict[int, int] = {}
        volumes = gmsh.model.getEntities(3)
        for k, (_, vtag) in enumerate(volumes):
            _, down = gmsh.model.getAdjacencies(3, vtag)
            for s in down:
                owner.setdefault(int(s), k)
        tris, comp = [], []
        for _, stag in surfaces:
            etypes, _, enodes = gmsh.model.mesh.getElements(2, stag)
            for et, nodes in zip(etypes, enodes):
                if et != 2:  # first-order triangles only (gmsh meshes 2-D with them by default)
                    continue
                t = index[np.asarray(nodes, dtype=np.int64)].reshape(-1, 3)
                tris.append(t)
                comp.append(np.full(len(t), owner.get(int(stag), -1), dtype=np.int64))
    if not tris:
        raise FormatError("gmsh produced no triangles")
    faces = np.concatenate(tris)
    component = np.concatenate(comp)
    free = component < 0
    if free.any():
        component[free] = len(volumes) + _sheet_ids(faces[free], len(points))
    used = np.unique(faces)
    # gmsh keeps nodes of curves and points too: keep only those on triangles, in node order
    remap = np.full(len(points), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    raw = RawMesh(points[used], {"triangle": remap[faces]},
                  cell_data={"component": {"triangle": component.astype(np.int32)}})
    return raw, ("mm" if with_units else None)


@contextlib.contextmanager
def _quiet_stdout():
    """Send file descriptor 1 to /dev/null for the duration (C-level prints bypass sys.stdout)."""
    import os
    import sys

    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (embedded, captured): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _sheet_ids(faces: np.ndarray, n_points: int) -> np.ndarray:
    """Component ids of triangles connected through shared vertices, numbered by first triangle."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = len(faces)
    rows = np.repeat(np.arange(f), 3)
    g = coo_matrix((np.ones(3 * f, np.int8), (rows, f + faces.reshape(-1))), shape=(f + n_points, f + n_points))
    _, lab = connected_components(g, directed=False)
    _, first, inv = np.unique(lab[:f], return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def _last_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[-200:] if text else type(exc).__name__
