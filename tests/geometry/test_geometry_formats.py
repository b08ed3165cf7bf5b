"""The formats users bring: partial files refused with exact messages, polygons and vertex order kept,
.gz inputs, 64-bit integers, VTP, and STEP/IGES/BREP through gmsh/OpenCASCADE."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
import trimesh

from pyengine.geometry import Mesh, MeshIOError, MeshWarning, PartialMeshError, load_mesh, save_mesh


def _sphere():
    return trimesh.creation.icosphere(2, radius=1.5)


def _partial(path, allow=True):
    """(mesh, warning texts) of a load with allow_partial."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = load_mesh(path, allow_partial=allow)
    return m, [str(w.message) for w in caught if issubclass(w.category, MeshWarning)]


def _refused(path) -> str:
    with pytest.raises(PartialMeshError) as info:
        load_mesh(path)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and info.value.__cause__ is None
    return msg


# --------------------------------------------------------------------------- refusals, exact messages


def test_truncated_binary_stl(tmp_path):
    src = tmp_path / "s.stl"
    _sphere().export(src)
    data = src.read_bytes()
    cut = tmp_path / "cut.stl"
    cut.write_bytes(data[:84 + 50 * 105 + 17])
    assert _refused(cut) == (f"{cut}: truncated binary STL: the header promises 320 triangles but the file holds 105 "
                             f"(5,351 of 16,084 bytes)")
    m, w = _partial(cut)
    assert m.cells["triangle"].shape == (105, 3)
    assert w == [f"{cut}: truncated binary STL: the header promises 320 triangles but the file holds 105 "
                 f"(5,351 of 16,084 bytes); using the readable part ({m.num_points} vertices, 105 cells)"]


def test_truncated_ascii_stl(tmp_path):
    src = tmp_path / "a.stl"
    _sphere().export(src, file_type="stl_ascii")
    text = src.read_bytes()
    mid = tmp_path / "mid.stl"
    mid.write_bytes(text[:text.index(b"endfacet", len(text) // 2) - 30])  # cut inside a facet
    msg = _refused(mid)
    assert msg.startswith(f"{mid}: truncated ASCII STL: facet ") and msg.endswith(" complete facets")
    n_complete = int(msg.split("after ")[1].split(" ")[0])
    m, _ = _partial(mid)
    assert len(m.cells["triangle"]) == n_complete
    end = tmp_path / "end.stl"
    end.write_bytes(text[:text.rindex(b"endsolid")])  # every facet, but no endsolid
    assert _refused(end) == f"{end}: truncated ASCII STL: no 'endsolid' after the last of 320 facets"
    bad = tmp_path / "bad.stl"
    bad.write_bytes(text.replace(b"outer loop", b"outer lop", 1))  # corrupt, not cut: a hard error
    with pytest.raises(MeshIOError, match=r"malformed ASCII STL: facet 1 of 320") as info:
        load_mesh(bad, allow_partial=True)
    assert not isinstance(info.value, PartialMeshError)


def test_truncated_obj_and_faces_indexing_missing_vertices(tmp_path):
    p = tmp_path / "cut.obj"
    p.write_bytes(b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3\nf 1 3 4\nf 1 2")
    assert _refused(p) == f"{p}: truncated OBJ: the last line 'f 1 2' is cut off (no newline at the end of the file)"
    m, _ = _partial(p)
    assert m.cells["triangle"].shape == (2, 3)
    q = tmp_path / "missing.obj"
    q.write_bytes(b"v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\nf 1 3 9\nf 2 3 -7\n")
    assert _refused(q) == f"{q}: 2 of 3 faces index vertices the file does not have (it has 3 vertices)"
    m, _ = _partial(q)
    np.testing.assert_array_equal(m.cells["triangle"], [[0, 1, 2]])


def test_ply_header_promising_more_than_the_file_holds(tmp_path):
    head = (b"ply\nformat ascii 1.0\nelement vertex 300\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n")
    p = tmp_path / "short.ply"
    p.write_bytes(head + b"0 0 0\n1 0 0\n")
    assert _refused(p) == f"{p}: truncated PLY: the header promises 300 vertices but the file holds 2"
    sphere = _sphere()
    b = tmp_path / "b.ply"
    save_mesh(sphere, b)
    data = b.read_bytes()
    cut = tmp_path / "cutb.ply"
    cut.write_bytes(data[:len(data) - 13 * 100 - 5])  # inside the face list (13 bytes per triangle)
    assert _refused(cut) == f"{cut}: truncated PLY: the header promises 320 faces but the file holds 219"
    m, _ = _partial(cut)
    assert m.num_points == 162 and len(m.cells["triangle"]) == 219


def test_nan_and_inf_vertices(tmp_path):
    p = tmp_path / "nan.obj"
    p.write_bytes(b"v 0 0 0\nv 1 nan 0\nv 1 1 0\nv 0 1 inf\nv 2 2 0\nf 1 2 3\nf 1 3 5\nf 3 4 5\n")
    assert _refused(p) == f"{p}: 2 of 5 vertices have NaN or Inf coordinates (first: vertex 1)"
    m, w = _partial(p)
    np.testing.assert_array_equal(m.points, [[0, 0, 0], [1, 1, 0], [2, 2, 0]])
    np.testing.assert_array_equal(m.cells["triangle"], [[0, 1, 2]])  # faces using a bad vertex are gone
    assert w[0].endswith("using the readable part (3 vertices, 1 cells)")


def test_truncated_gzip(tmp_path):
    src = tmp_path / "s.stl"
    _sphere().export(src)
    gz = tmp_path / "s.stl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    m = load_mesh(gz)
    assert m.cells["triangle"].shape == (320, 3) and m.source == str(gz)
    cut = tmp_path / "cut.stl.gz"
    cut.write_bytes(gz.read_bytes()[:2000])
    msg = _refused(cut)
    assert msg.startswith(f"{cut}: truncated gzip stream: it ends after ") and "truncated binary STL" in msg


@pytest.mark.parametrize("ext", ["stl", "obj", "ply", "off", "vtu", "vtk", "vtp"])
def test_gz_inputs_of_every_format(tmp_path, ext):
    sphere = _sphere()
    plain = save_mesh(Mesh.from_trimesh(sphere), tmp_path / f"s.{ext}")
    gz = tmp_path / f"s.{ext}.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = load_mesh(plain), load_mesh(gz)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.faces, b.faces)


# --------------------------------------------------------------------------- what is kept


def _polygon_mesh() -> Mesh:
    """Triangles, quads and a pentagon, plus a vertex no face uses, in a scrambled order."""
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [2, 1, 0], [3, 0.5, 0], [9, 9, 9],
                    [1.5, 2, 0]], dtype=float)
    return Mesh(pts, {"triangle": np.array([[2, 5, 8], [3, 2, 8]]), "quad": np.array([[0, 1, 2, 3]]),
                      "polygon5": np.array([[1, 4, 6, 5, 2]])})


@pytest.mark.parametrize("ext", ["obj", "ply", "off", "vtu", "vtk", "vtp"])
def test_polygons_and_vertex_order_survive_a_round_trip(tmp_path, ext):
    mesh = _polygon_mesh()
    back = load_mesh(save_mesh(mesh, tmp_path / f"p.{ext}"))
    np.testing.assert_allclose(back.points, mesh.points)  # every vertex, in order, the unused one included
    assert set(back.cells) == set(mesh.cells)
    for k in mesh.cells:
        np.testing.assert_array_equal(back.cells[k], mesh.cells[k])


def test_obj_keeps_vertex_order_that_trimesh_loses(tmp_path):
    p = tmp_path / "q.obj"
    p.write_bytes(b"# comment\nv 5 5 5\nv 0 0 0\nvt 0 0\nv 1 0 0\nv 1 1 0\nvn 0 0 1\nv 0 1 0\no thing\n"
                  b"f 2/1/1 3/1/1 4/1/1 5/1/1\nf -4 -3 -2\n")
    m = load_mesh(p)
    np.testing.assert_array_equal(m.points[0], [5, 5, 5])  # trimesh drops this unused first vertex
    np.testing.assert_array_equal(m.cells["quad"], [[1, 2, 3, 4]])
    np.testing.assert_array_equal(m.cells["triangle"], [[1, 2, 3]])  # negative indices count back


def test_ply_int64_point_data(tmp_path):
    mesh = Mesh.from_trimesh(_sphere())
    ids = np.arange(mesh.num_points, dtype=np.int64) * 1000
    back = load_mesh(save_mesh(mesh, tmp_path / "ok.ply", point_data={"id": ids}))
    np.testing.assert_array_equal(back.point_data["id"], ids)  # fits in 32 bits: stored exactly
    big = ids + 2**40
    with pytest.raises(MeshIOError) as info:
        save_mesh(mesh, tmp_path / "big.ply", point_data={"id": big})
    assert str(info.value) == (f"{tmp_path / 'big.ply'}: 'id' holds 64-bit integers beyond the 32-bit range PLY can "
                               f"store ({big.min()}..{big.max()}); write .vtu, .vtp or .vtk instead")
    assert not (tmp_path / "big.ply").exists()
    for ext in ("vtu", "vtp"):  # formats with 64-bit integers keep them
        back = load_mesh(save_mesh(mesh, tmp_path / f"big.{ext}", point_data={"id": big}))
        assert back.point_data["id"].dtype == np.int64
        np.testing.assert_array_equal(back.point_data["id"], big)


def test_ply_colours_and_face_data_keep_their_types(tmp_path):
    p = tmp_path / "c.ply"
    p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
                  b"property uchar red\nelement face 2\nproperty list uchar int vertex_indices\nproperty int tag\n"
                  b"end_header\n0 0 0 10\n1 0 0 20\n1 1 0 30\n0 1 0 40\n3 0 1 2 7\n4 0 1 2 3 8\n")
    m = load_mesh(p)
    assert m.point_data["red"].dtype == np.uint8 and m.point_data["red"].tolist() == [10, 20, 30, 40]
    assert m.cell_data["tag"]["triangle"].tolist() == [7] and m.cell_data["tag"]["quad"].tolist() == [8]
    np.testing.assert_array_equal(m.cells["quad"], [[0, 1, 2, 3]])


# --------------------------------------------------------------------------- CAD


@pytest.fixture(scope="module")
def cad_files(tmp_path_factory):
    pytest.importorskip("gmsh")
    from pyengine.data.physics._gmsh import gmsh_session

    folder = tmp_path_factory.mktemp("cad")
    with gmsh_session() as gmsh:
        occ = gmsh.model.occ
        occ.addBox(0, 0, 0, 10, 10, 10)
        occ.addBox(10, 0, 0, 10, 5, 5)  # touches the first box
        occ.addSphere(35, 5, 5, 6)
        occ.synchronize()
        for ext in ("step", "brep", "iges"):
            gmsh.write(str(folder / f"asm.{ext}"))
    return folder


@pytest.mark.parametrize("ext", ["step", "brep", "iges"])
def test_cad_assembly_is_tessellated_with_a_component_per_solid(cad_files, ext):
    m = load_mesh(cad_files / f"asm.{ext}", cad_size=1.5)
    comp = m.cell_data["component"]["triangle"]
    assert m.units == (None if ext == "brep" else "mm")
    np.testing.assert_allclose(m.points.min(0), [0, -1, -1], atol=0.05)  # the sphere's tessellation is inside it
    np.testing.assert_allclose(m.points.max(0), [41, 11, 11], atol=0.05)
    if ext != "iges":  # IGES carries faces, not solids: sheets are grouped by connectivity
        assert sorted(np.unique(comp).tolist()) == [0, 1, 2]
        from pyengine.geometry import clean_surface

        s = clean_surface(m.points, m.faces)
        assert s.is_closed
        area = trimesh.Trimesh(m.points, m.faces).area
        assert abs(area - (600 + 250 + 4 * np.pi * 36)) / area < 0.01  # each solid keeps its whole surface
    coarse = load_mesh(cad_files / f"asm.{ext}", cad_size=4.0)
    assert len(coarse.faces) < len(m.faces)
    if ext == "step":  # the default size: 1 % of the diagonal, finer still on the curved sphere
        assert len(load_mesh(cad_files / "asm.step").faces) > len(m.faces)


def test_cad_errors(tmp_path):
    p = tmp_path / "junk.step"
    p.write_bytes(b"ISO-10303-21;\nthis is not a step file\n")
    with pytest.raises(MeshIOError, match=r"junk\.step: OpenCASCADE could not read it|junk\.step: holds no surfaces"):
        load_mesh(p)
    with pytest.raises(ValueError, match="size must be a positive"):
        from pyengine.geometry.cad import read_cad

        read_cad(p, size=-1.0)


def test_a_crash_while_tessellating_is_a_format_error(tmp_path, monkeypatch):
    """OpenCASCADE can segfault on a malformed STEP (a fuzzed file did): the tessellation runs in a
    child process, and a crash there becomes a one-line error naming the file."""
    pytest.importorskip("gmsh")
    import pyengine.geometry.cad as cad

    p = tmp_path / "part.step"
    p.write_bytes(b"ISO-10303-21;\n")
    monkeypatch.setattr(cad, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(MeshIOError, match=r"part\.step: OpenCASCADE crashed reading it \(SIGSEGV\)") as err:
        load_mesh(p)
    assert "\n" not in str(err.value)


def test_meshio_cells_of_the_wrong_width_are_refused(tmp_path, monkeypatch):
    """meshio's gmsh reader reshapes whatever it read: a gmsh file cut at a record boundary inside
    the element section came back as (80, 0)-shaped triangles (found by the truncation sweep)."""
    import meshio

    p = save_mesh(Mesh.from_trimesh(_sphere()), tmp_path / "s.msh")
    real = meshio.read

    def cut_read(path, *a, **k):
        m = real(path, *a, **k)
        return meshio.Mesh(m.points, [("triangle", np.zeros((80, 0), dtype=np.int64))])

    monkeypatch.setattr(meshio, "read", cut_read)
    with pytest.raises(MeshIOError) as info:
        load_mesh(p)
    assert str(info.value) == (f"{p}: triangle cells have shape (80, 0), not (n, 3): the cell section is truncated "
                               f"or corrupt")
    with pytest.raises(ValueError, match=r"Mesh.cells\['triangle'\] must have 3 nodes per cell, got shape \(2, 4\)"):
        Mesh(np.zeros((5, 3)), {"triangle": np.zeros((2, 4), dtype=np.int64)})


def test_corrupt_counts_cannot_exhaust_memory(tmp_path):
    """A gmsh file whose node count says 3e9: meshio would size its arrays from it (the fuzzer drove a
    reader to 9 GB this way). Under the address-space budget it is refused at once."""
    import resource
    import struct

    p = save_mesh(Mesh.from_trimesh(_sphere()), tmp_path / "s.msh")
    data = bytearray(p.read_bytes())
    i = data.index(b"$Nodes\n") + 7 + 8  # numEntityBlocks, then numNodes (size_t each)
    data[i:i + 8] = struct.pack("<Q", 3_000_000_000)
    bad = tmp_path / "bad.msh"
    bad.write_bytes(bytes(data))
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(MeshIOError) as info:
        load_mesh(bad)
    assert str(info.value) == (f"{bad}: its header asks for more memory than a {len(data):,}-byte file can describe "
                               f"(corrupt counts)")
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # the budget is lifted again
