"""Property-based fuzzing of every mesh reader in pyengine.geometry.io (hypothesis).

For random bytes, truncated files and files with corrupted bytes, in every format
:func:`load_mesh` reads, the outcome is either a clean :class:`MeshIOError` (one line,
naming the file) or a well-formed :class:`Mesh`: finite points, cells inside them, data
of the right length. Never another exception, never a crash.

Truncation is stricter: a file cut anywhere must be refused, or read as exactly the
original mesh (the cut fell in trailing bytes that carry nothing). The one exception is
OBJ cut at a line boundary: the format has no counts or end marker, so a prefix of whole
lines *is* a valid, smaller OBJ (documented in :func:`pyengine.geometry.readers.read_obj`).

VTP (VTK's C++ reader) and STEP (OpenCASCADE) are fuzzed in a subprocess, so a crash in
native code fails the test instead of killing pytest.

Example counts follow the active hypothesis profile, capped at 20 per property unless the
profile asks for more than 100 (``--hypothesis-profile=long`` runs them deeper).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pyengine.geometry import Mesh, MeshIOError, MeshWarning, load_mesh, save_mesh  # noqa: E402

_BASE = settings()
_CAP = _BASE.max_examples if _BASE.max_examples > 100 else min(_BASE.max_examples, 20)
FUZZ = settings(_BASE, max_examples=_CAP, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _mesh() -> Mesh:
    """Small but with every feature: triangles, a quad, point data (float and int), a cell field."""
    import trimesh

    s = trimesh.creation.icosphere(1)
    pts = np.asarray(s.vertices)
    return Mesh(pts, {"triangle": np.asarray(s.faces)[2:], "quad": np.array([[0, 1, 2, 3]])},
                point_data={"p": pts[:, 0].copy(), "id": np.arange(len(pts), dtype=np.int32)})


# (name, extension, writer) -> the bytes of a valid file of that format
def _valid_files(folder: Path) -> dict[str, tuple[str, bytes]]:
    import trimesh

    m = _mesh()
    tri = Mesh(m.points, {"triangle": m.faces})
    out = {}
    for name, ext, mesh in [("stl", ".stl", tri), ("obj", ".obj", m), ("off", ".off", m), ("ply", ".ply", m),
                            ("vtu", ".vtu", m), ("vtk", ".vtk", m), ("msh", ".msh", tri)]:
        out[name] = (ext, save_mesh(mesh, folder / f"v{ext}").read_bytes())
    t = trimesh.Trimesh(m.points, m.faces, process=False)
    out["stl-ascii"] = (".stl", trimesh.exchange.stl.export_stl_ascii(t).encode())
    ply_ascii = trimesh.exchange.ply.export_ply(t, encoding="ascii")
    out["ply-ascii"] = (".ply", ply_ascii)
    out["glb"] = (".glb", t.export(file_type="glb"))
    out["stl.gz"] = (".stl.gz", gzip.compress(out["stl"][1]))
    return out


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-valid")
    files = _valid_files(folder)
    parsed = {}
    for name, (ext, data) in files.items():
        p = folder / f"ref-{name.replace('.', '_')}{ext}"
        p.write_bytes(data)
        parsed[name] = load_mesh(p)
    return files, parsed


FORMATS = ["stl", "stl-ascii", "obj", "off", "ply", "ply-ascii", "vtu", "vtk", "msh", "glb", "stl.gz"]

_EXT = [("stl", ".stl"), ("stl-ascii", ".stl"), ("obj", ".obj"), ("off", ".off"), ("ply", ".ply"),
        ("ply-ascii", ".ply"), ("vtu", ".vtu"), ("vtk", ".vtk"), ("msh", ".msh"), ("glb", ".glb"),
        ("stl.gz", ".stl.gz")]


def _check_outcome(path: Path, allow_partial: bool = False):
    """load_mesh's result if it is a well-formed Mesh, None for a clean MeshIOError; anything else fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeshWarning)  # allow_partial's one-line report
            m = load_mesh(path, allow_partial=allow_partial)
    except MeshIOError as e:
        msg = str(e)
        assert msg.startswith(str(path)) and "\n" not in msg, msg
        return None
    assert m.points.ndim == 2 and m.points.shape[1] == 3 and len(m.points) > 0
    assert np.isfinite(m.points).all()
    for kind, c in m.cells.items():
        assert c.ndim == 2 and c.dtype == np.int64, kind
        assert len(c) == 0 or (c.min() >= 0 and c.max() < len(m.points)), kind
    for k, v in m.point_data.items():
        assert len(v) == len(m.points), k
    return m


def _same(a: Mesh, b: Mesh) -> bool:
    return (a.points.shape == b.points.shape and np.allclose(a.points, b.points) and set(a.cells) == set(b.cells)
            and all(np.array_equal(a.cells[k], b.cells[k]) for k in a.cells))


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(data=st.binary(max_size=3000))
def test_random_bytes(tmp_path_factory, name, data):
    ext = dict(_EXT)[name]
    p = tmp_path_factory.mktemp("rnd") / f"x{ext}"
    p.write_bytes(data if data else b"\x00")
    _check_outcome(p)
    _check_outcome(p, allow_partial=True)


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(frac=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_are_refused_or_whole(valid, tmp_path_factory, name, frac):
    files, parsed = valid
    ext, data = files[name]
    cut = int(frac * len(data))
    p = tmp_path_factory.mktemp("cut") / f"x{ext}"
    p.write_bytes(data[:cut] if cut else data[:1])
    m = _check_outcome(p)
    if m is None:
        return
    if name == "obj" and data[:cut].endswith(b"\n"):
        return  # a prefix of whole OBJ lines is a valid OBJ (see the module docstring)
    assert _same(m, parsed[name]), f"{name} cut at {cut} of {len(data)} bytes loaded as a different mesh"


@pytest.mark.parametrize("name", FORMATS)
def test_truncation_sweep(valid, tmp_path, name):
    """The same property at 40 evenly spaced cuts per format (hypothesis draws few; this found meshio
    reading a cut gmsh file as (n, 0)-shaped triangles)."""
    files, parsed = valid
    ext, data = files[name]
    for cut in np.linspace(1, len(data) - 1, 40).astype(int):
        p = tmp_path / f"c{cut}{ext}"
        p.write_bytes(data[:cut])
        m = _check_outcome(p)
        if m is not None and not (name == "obj" and data[:cut].endswith(b"\n")):
            assert _same(m, parsed[name]), f"{name} cut at {cut} of {len(data)} bytes loaded as a different mesh"


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_bytes(valid, tmp_path_factory, name, flips):
    files, _ = valid
    ext, data = files[name]
    buf = bytearray(data)
    for where, value in flips:
        buf[int(where * len(buf))] = value
    p = tmp_path_factory.mktemp("flip") / f"x{ext}"
    p.write_bytes(bytes(buf))
    _check_outcome(p)
    _check_outcome(p, allow_partial=True)


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from hypothesis import given, settings, strategies as st, HealthCheck
    from pyengine.geometry import load_mesh, MeshIOError
    folder, ext, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    valid = (folder / ("valid" + ext)).read_bytes()

    def check(data):
        p = folder / ("x" + ext)
        p.write_bytes(data or b"\\x00")
        try:
            m = load_mesh(p)
        except MeshIOError as e:
            assert str(e).startswith(str(p)) and "\\n" not in str(e), str(e)
            return
        assert np.isfinite(m.points).all() and len(m.points)
        for c in m.cells.values():
            assert c.min() >= 0 and c.max() < len(m.points)

    s = settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    given(st.binary(max_size=2000))(s(check))()
    given(st.floats(0, 1, exclude_max=True))(s(lambda f: check(valid[:int(f * len(valid))])))()
    given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))(
        s(lambda fl: check(bytes(b if i not in {int(w * len(valid)) for w, _ in fl} else
                                 dict((int(w * len(valid)), v) for w, v in fl)[i] for i, b in enumerate(valid)))))()
    print("ok")
""")


@pytest.mark.parametrize("ext", [".vtp", ".step"])
def test_native_readers_in_a_subprocess(tmp_path, ext):
    """VTK and OpenCASCADE parse in C++: fuzz them where a crash cannot take pytest down."""
    if ext == ".step":
        pytest.importorskip("gmsh")
        from pyengine.data.physics._gmsh import gmsh_session

        with gmsh_session() as gmsh:
            gmsh.model.occ.addBox(0, 0, 0, 1, 1, 1)
            gmsh.model.occ.synchronize()
            gmsh.write(str(tmp_path / "valid.step"))
    else:
        save_mesh(_mesh(), tmp_path / "valid.vtp", point_data={"q": np.arange(42.0)})
    n = max(3, _CAP // (4 if ext == ".step" else 1))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), ext, str(n)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), \
        f"exit {proc.returncode}: {proc.stderr[-3000:]}"
