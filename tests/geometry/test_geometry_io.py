"""Mesh IO: round trips per format family, merging, errors, and real ShapeNet car surfaces."""

from __future__ import annotations

import os
import pathlib

import meshio
import numpy as np
import pytest
import torch
import trimesh

from pyengine.data import Sample
from pyengine.geometry import Mesh, MeshIOError, load_mesh, save_mesh, supported_formats

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = pathlib.Path(os.environ.get("PYENGINE_SHARED_DATA", REPO.parent / "shared" / "data"))
CAR_DIR = SHARED_DATA / "shapenet_car_mini"


def _sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=2, radius=1.5)


def _cube_tets() -> Mesh:
    """The unit cube split into 6 tetrahedra around its main diagonal (Kuhn triangulation)."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    idx = {tuple(c.astype(int)): n for n, c in enumerate(corners)}
    tets = []
    for perm in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        p = np.zeros(3, dtype=int)
        path = [idx[tuple(p)]]
        for axis in perm:
            p[axis] = 1
            path.append(idx[tuple(p)])
        tets.append(path)
    tets = np.array(tets)
    return Mesh(corners, cells={"tetra": tets},
                point_data={"u": corners[:, 0] + 2 * corners[:, 2], "vec": corners * 3.0},
                cell_data={"id": {"tetra": np.arange(6, dtype=float)}})


def _same_surface(a: Mesh, b_points: np.ndarray, b_faces: np.ndarray, atol=1e-5):
    """Same oriented triangles up to vertex renumbering (float32 formats round coordinates)."""
    from scipy.spatial import cKDTree

    dist, to_b = cKDTree(b_points).query(a.points)
    assert dist.max() < atol

    def canon(f):  # rotate each triangle so its smallest index comes first: keeps the winding
        f = np.asarray(f)
        rolled = np.stack([np.roll(f, -k, axis=1) for k in range(3)])
        first = np.argmin(f, axis=1)
        return sorted(map(tuple, rolled[first, np.arange(len(f))]))

    assert canon(to_b[a.faces]) == canon(b_faces)


@pytest.mark.parametrize("ext", [".stl", ".obj", ".ply", ".off", ".glb"])
def test_surface_round_trip(tmp_path, ext):
    sphere = _sphere()
    path = save_mesh(sphere, tmp_path / f"s{ext}")
    m = load_mesh(path)
    # duplicates merged: STL stores 3 vertices per face, yet the sphere comes back with 162
    assert m.points.shape == (len(sphere.vertices), 3)
    assert m.cells["triangle"].shape == (len(sphere.faces), 3)
    _same_surface(m, sphere.vertices, sphere.faces)
    # outward normals survive the round trip (face winding kept)
    assert (np.einsum("ij,ij->i", m.normals, m.points / 1.5) > 0.95).all()


@pytest.mark.parametrize("ext", [".vtu", ".vtk", ".msh", ".xdmf"])
def test_volume_round_trip_keeps_data(tmp_path, ext):
    cube = _cube_tets()
    path = save_mesh(cube, tmp_path / f"cube{ext}", point_data={"p": np.linspace(0, 1, 8)})
    m = load_mesh(path)
    np.testing.assert_allclose(m.points, cube.points)
    np.testing.assert_array_equal(m.cells["tetra"], cube.cells["tetra"])
    np.testing.assert_allclose(m.point_data["u"], cube.point_data["u"])
    np.testing.assert_allclose(m.point_data["vec"], cube.point_data["vec"])
    np.testing.assert_allclose(m.point_data["p"], np.linspace(0, 1, 8))
    np.testing.assert_allclose(m.cell_data["id"]["tetra"], np.arange(6))
    if ext == ".msh":  # gmsh files carry entity tags; save_mesh supplies zeros when absent
        np.testing.assert_array_equal(m.cell_data["gmsh:geometrical"]["tetra"], 0)


def test_meshio_blocks_of_one_type_are_concatenated(tmp_path):
    """A file written by meshio itself, with two triangle blocks, a quad block and 2-D points."""
    pts = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [2, 0], [2, 1]], dtype=float)
    cells = [("triangle", [[0, 1, 2]]), ("quad", [[1, 4, 5, 2]]), ("triangle", [[0, 2, 3]])]
    path = tmp_path / "blocks.vtu"
    meshio.write(path, meshio.Mesh(pts, cells, cell_data={"c": [[1.0], [2.0], [3.0]]}))
    m = load_mesh(path)
    np.testing.assert_allclose(m.points, np.c_[pts, np.zeros(6)])  # 2-D padded with z = 0
    np.testing.assert_array_equal(m.cells["triangle"], [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(m.cell_data["c"]["triangle"], [1.0, 3.0])
    np.testing.assert_array_equal(m.cell_data["c"]["quad"], [2.0])
    assert m.faces.shape == (4, 3)  # 2 triangles + the quad split in two
    np.testing.assert_allclose(m.to_trimesh().area, 2.0)
    assert (m.normals[:, 2] > 0.999).all()


def test_tetra_boundary_is_the_outward_cube_surface():
    cube = _cube_tets()
    faces = cube.faces
    assert faces.shape == (12, 3)  # two triangles per cube side
    tri = cube.points[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = tri.mean(1) - 0.5
    assert (np.einsum("ij,ij->i", normal, outward) > 0).all()
    assert cube.to_trimesh().is_watertight
    np.testing.assert_allclose(cube.to_trimesh().volume, 1.0)


def test_volume_mesh_saved_to_surface_format_writes_its_boundary(tmp_path):
    cube = _cube_tets()
    with pytest.warns(UserWarning, match="geometry only"):
        path = save_mesh(cube, tmp_path / "cube.stl")
    m = load_mesh(path)
    assert m.faces.shape == (12, 3) and m.to_trimesh().is_watertight
    np.testing.assert_allclose(m.to_trimesh().volume, 1.0)


def test_ply_point_data_and_point_cloud(tmp_path):
    sphere = _sphere()
    mesh = Mesh.from_trimesh(sphere)
    p = save_mesh(mesh, tmp_path / "s.ply", point_data={"press": sphere.vertices[:, 2], "v": sphere.vertices})
    m = load_mesh(p)
    np.testing.assert_allclose(m.point_data["press"], m.points[:, 2], atol=1e-6)
    np.testing.assert_allclose(m.point_data["v_1"], m.points[:, 1], atol=1e-6)  # (N, 3) split per column
    cloud = Mesh(np.random.default_rng(0).random((50, 3)))
    m2 = load_mesh(save_mesh(cloud, tmp_path / "cloud.ply"))
    assert m2.cells == {} and m2.faces.shape == (0, 3) and m2.normals is None
    np.testing.assert_allclose(m2.points, cloud.points, atol=1e-6)


def test_glb_scene_is_concatenated_with_transforms(tmp_path):
    box = trimesh.creation.box()
    ball = trimesh.creation.icosphere(1)
    scene = trimesh.Scene()
    scene.add_geometry(box)
    scene.add_geometry(ball, transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    path = tmp_path / "scene.glb"
    scene.export(path)
    m = load_mesh(path)
    assert len(m.faces) == len(box.faces) + len(ball.faces)
    assert len(m.points) == len(box.vertices) + len(ball.vertices)
    np.testing.assert_allclose(m.points.max(0), [6, 1, 1], atol=1e-6)  # the ball moved to x = 5


def test_to_sample():
    m = Mesh.from_trimesh(_sphere())
    m.point_data["z"] = m.points[:, 2].copy()
    s = m.to_sample(features=("normals", "z"), fields=("z",), dtype=torch.float64)
    assert isinstance(s, Sample) and s.features.shape == (len(m.points), 4)
    assert torch.equal(s.fields["z"], s.points[:, 2])
    assert s.cells["triangle"].shape == m.faces.shape
    with pytest.raises(KeyError, match="nope"):
        m.to_sample(features=("nope",))


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(MeshIOError, match=r"nothere\.stl: no such file"):
        load_mesh(tmp_path / "nothere.stl")


@pytest.mark.parametrize("ext", [".stl", ".vtu", ".obj"])
def test_empty_file(tmp_path, ext):
    p = tmp_path / f"empty{ext}"
    p.write_bytes(b"")
    with pytest.raises(MeshIOError, match=r"empty.*the file is empty"):
        load_mesh(p)


@pytest.mark.parametrize("name,content", [
    ("garbage.stl", b"solid x\n this is not a facet\nendsolid\n"),
    ("truncated.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n"
                      b"property float y\nproperty float z\nend_header\n\x00\x01\x02"),
    ("garbage.vtu", b"<VTKFile type='UnstructuredGrid'><broken"),
    ("garbage.msh", b"$MeshFormat\n4.1 0 8\n$EndMeshFormat\n$Nodes\n1 2\n"),
    ("garbage.obj", b"this is not an obj file\nat all\n"),
])
def test_corrupt_files_raise_mesh_io_error_naming_the_file(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(MeshIOError) as info:
        load_mesh(p)
    msg = str(info.value)
    assert msg.startswith(str(p)) and len(msg.splitlines()) == 1
    assert info.value.__cause__ is None  # no parser traceback chained in


def test_unsupported_extension(tmp_path):
    p = tmp_path / "model.xyzw"
    p.write_text("1 2 3\n")
    with pytest.raises(MeshIOError, match=r"unsupported mesh format '\.xyzw'"):
        load_mesh(p)
    with pytest.raises(MeshIOError, match="unsupported"):
        save_mesh(_sphere(), tmp_path / "out.xyzw")
    assert ".vtu" in supported_formats() and ".glb" in supported_formats()


def test_save_errors(tmp_path):
    with pytest.raises(MeshIOError, match="geometry only"):
        save_mesh(_sphere(), tmp_path / "s.stl", point_data={"p": np.zeros(162)})
    with pytest.raises(ValueError, match="point_data\\['p'\\]"):
        save_mesh(_sphere(), tmp_path / "s.vtu", point_data={"p": np.zeros(5)})
    with pytest.raises(TypeError, match="Mesh"):
        save_mesh(np.zeros((3, 3)), tmp_path / "s.vtu")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_embedded_mesh_loads():
    m = load_mesh(REPO / "meshes" / "icosphere.stl")
    assert m.to_trimesh().is_watertight
    np.testing.assert_allclose(np.linalg.norm(m.points, axis=1), 1.0, atol=1e-6)


# --------------------------------------------------------------------------- real data


def test_shapenet_car_surfaces():
    if not CAR_DIR.is_dir():
        pytest.skip(f"shared data {CAR_DIR} not present")
    folders = sorted(p for p in CAR_DIR.iterdir() if (p / "tri_mesh.ply").is_file())
    assert folders, f"no tri_mesh.ply under {CAR_DIR}"
    for folder in folders:
        m = load_mesh(folder / "tri_mesh.ply")
        ref = trimesh.load(folder / "tri_mesh.ply", process=False)
        assert m.points.shape == (3586, 3) and m.faces.shape == (7168, 3)
        np.testing.assert_allclose(m.points, ref.vertices)
        tm = m.to_trimesh()
        assert tm.is_watertight and tm.volume > 0  # closed, outward-wound
        press = np.load(folder / "press.npy")
        press = np.concatenate([press[:16], press[112:]])
        s = Mesh(m.points, m.cells, point_data={"p": press}).to_sample(fields=("p",))
        assert s.features.shape == (3586, 3) and s.fields["p"].shape == (3586,)
        assert float(s.fields["p"].min()) < 0 < float(s.fields["p"].max())
