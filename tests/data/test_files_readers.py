"""File datasets, reading: VTP/OpenFOAM through vtk, meshio formats, sidecars, manifests, errors."""

import json

import meshio
import numpy as np
import pytest
from foam_case import write_case

from pyengine.data.files import (DataFileError, FileDataset, cell_to_point, discover, read_openfoam, read_record,
                                 read_vtp, write_vtp)


def _two_triangles():
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [2, 1, 0]], float)
    tri = np.array([[0, 1, 2], [0, 2, 3]])
    quad = np.array([[1, 4, 5, 2]])
    return pts, tri, quad


def test_openfoam_internal_field_and_patches(tmp_path):
    centres, p_int, patch = write_case(tmp_path / "case", nx=3, ny=2, nz=2)
    recs = read_openfoam(tmp_path / "case", patches=["inlet", "walls"])
    inner = recs["internalMesh"]
    assert inner.num_cells == 12 and "hexahedron" in inner.cells
    order = np.lexsort(inner.cell_centers().T[::-1])
    ref = np.lexsort(centres.T[::-1])
    np.testing.assert_allclose(inner.cell_centers()[order], centres[ref], atol=1e-12)
    np.testing.assert_allclose(inner.cell_data["p"][order], p_int[ref], atol=1e-9)
    for name in ("inlet", "walls"):
        fc, pv = patch[name]
        got = recs[name]
        assert got.num_cells == len(fc)
        o, r = np.lexsort(got.cell_centers().T[::-1]), np.lexsort(fc.T[::-1])
        np.testing.assert_allclose(got.cell_centers()[o], fc[r], atol=1e-12)
        np.testing.assert_allclose(got.cell_data["p"][o], pv[r], atol=1e-9)
    assert "outlet" not in recs


def test_openfoam_surface_and_volume_samples(tmp_path):
    centres, p_int, patch = write_case(tmp_path / "cases" / "a")
    write_case(tmp_path / "cases" / "b")
    # the case's closed boundary as the surface (cell data on the patch faces); a folder of cases
    surf = FileDataset({"path": "cases", "fields": ["p"], "patches": ["inlet", "outlet", "walls"], "test": 1},
                       base=tmp_path)
    assert len(surf) == 2 and surf.split == ["train", "test"]
    a = surf.arrays(0)
    assert a.location == "cells" and len(a.points) == 22
    # outward normals after orientation: the surface of a box encloses +volume, area sums to 0
    np.testing.assert_allclose(a.area.sum(0), 0, atol=1e-12)
    assert np.einsum("ij,ij->", a.points - a.points.mean(0), a.area) > 0
    vol = FileDataset({"path": str(tmp_path / "cases"), "fields": ["p"], "patches": ["inlet", "outlet", "walls"],
                       "sample": "volume", "test": 1})
    v = vol.arrays(0)
    assert v.queries.shape == (6, 3) and v.fields["p"].shape == (6,)
    o, r = np.lexsort(v.queries.T[::-1]), np.lexsort(centres.T[::-1])
    np.testing.assert_allclose(v.fields["p"][o], p_int[r], atol=1e-9)
    assert v.points.shape == (24, 3)  # the box's vertices (all on its boundary), patch seams merged


def test_openfoam_errors_name_patches(tmp_path):
    write_case(tmp_path / "case")
    with pytest.raises(DataFileError, match=r"no boundary patch 'body'.*\['inlet', 'outlet', 'walls'\]"):
        read_openfoam(tmp_path / "case", patches=["body"])
    with pytest.raises(DataFileError, match="name the boundary patches"):
        read_record(tmp_path / "case")


def test_vtp_round_trip_with_polygons(tmp_path):
    pts, tri, quad = _two_triangles()
    pdata = {"u": np.arange(18.0).reshape(6, 3)}
    write_vtp(tmp_path / "a.vtp", pts, {"triangle": tri, "quad": quad}, pdata, {"p": np.array([1.0, 2.0, 3.0])})
    r = read_vtp(tmp_path / "a.vtp")
    np.testing.assert_array_equal(r.cells["triangle"], tri)
    np.testing.assert_array_equal(r.cells["quad"], quad)
    np.testing.assert_array_equal(r.cell_data["p"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(r.point_data["u"], pdata["u"])
    # a pentagon is fan-split; its cell data follows every piece
    pent = np.array([[0, 1, 4, 5, 3]])
    write_vtp(tmp_path / "b.vtp", pts, {"polygon5": pent}, cell_data={"p": np.array([7.0])})
    r = read_vtp(tmp_path / "b.vtp")
    assert r.cells["triangle"].shape == (3, 3)
    np.testing.assert_array_equal(r.cell_data["p"], [7.0, 7.0, 7.0])


def test_meshio_formats_keep_cell_data(tmp_path):
    pts, tri, _ = _two_triangles()
    meshio.write(tmp_path / "a.vtu", meshio.Mesh(pts, [("triangle", tri)], cell_data={"p": [np.array([3.0, 5.0])]}))
    r = read_record(tmp_path / "a.vtu")
    np.testing.assert_array_equal(r.cell_data["p"], [3.0, 5.0])
    # cell -> point: each vertex gets the mean over the cells that use it
    v = cell_to_point(r.cell_data["p"], r.cells, r.num_points)
    np.testing.assert_allclose(v[:4], [4.0, 3.0, 4.0, 5.0])
    assert v[4] == 0 and v[5] == 0


def test_sidecars_and_errors_name_file_and_field(tmp_path):
    pts, tri, _ = _two_triangles()
    meshio.write(tmp_path / "s.vtu", meshio.Mesh(pts, [("triangle", tri)], point_data={"q": np.zeros(6)}))
    np.save(tmp_path / "s.npy", np.arange(6.0))
    rows = [{"geometry": "s.vtu", "fields": ["s.npy"], "split": "train"},
            {"geometry": "s.vtu", "fields": ["p=s.npy"], "split": "test"}]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    ds = FileDataset({"path": "m.json", "fields": ["s"]}, base=tmp_path)
    a = ds.arrays(0)  # vertices 4 and 5 belong to no triangle: dropped, with the map kept
    np.testing.assert_array_equal(a.fields["s"], np.arange(4.0))
    np.testing.assert_array_equal(a.point_ids, np.arange(4))
    with pytest.raises(DataFileError, match=r"s\.vtu: no field 's'; point data \['p', 'q'\]; cell data \[\]"):
        ds.arrays(1)
    # a length that fits neither the points nor the cells
    np.save(tmp_path / "bad.npy", np.zeros(7))
    (tmp_path / "m2.json").write_text(json.dumps([{"geometry": "s.vtu", "fields": ["p=bad.npy"], "split": "train"},
                                                  {"geometry": "s.vtu", "split": "test"}]))
    ds = FileDataset({"path": "m2.json", "fields": ["p"]}, base=tmp_path)
    with pytest.raises(DataFileError, match=r"bad\.npy: field 'p' has 7 rows, matching neither the 6 points nor "
                                            r"the 2 cells of .*s\.vtu; point data \['q'\]"):
        ds.arrays(0)
    # a missing file
    (tmp_path / "m3.json").write_text(json.dumps([{"geometry": "gone.vtp", "split": "train"},
                                                  {"geometry": "s.vtu", "split": "test"}]))
    with pytest.raises(DataFileError, match=r"gone\.vtp: no such file"):
        FileDataset({"path": "m3.json", "fields": ["q"]}, base=tmp_path).arrays(0)
    # cell data asked at points
    meshio.write(tmp_path / "c.vtu", meshio.Mesh(pts, [("triangle", tri)], cell_data={"p": [np.ones(2)]}))
    (tmp_path / "m4.json").write_text(json.dumps([{"geometry": "c.vtu", "split": "train"},
                                                  {"geometry": "c.vtu", "split": "test"}]))
    with pytest.raises(DataFileError, match=r"field 'p' is cell data; set cell_to_point: true or location: cells"):
        FileDataset({"path": "m4.json", "fields": ["p"], "location": "points"}, base=tmp_path).arrays(0)


def test_discover_folder_glob_and_csv(tmp_path):
    pts, tri, _ = _two_triangles()
    for i in range(3):
        write_vtp(tmp_path / f"run{i}.vtp", pts, {"triangle": tri}, cell_data={"p": np.full(2, float(i))})
    np.save(tmp_path / "run1.wss.npy", np.zeros((2, 3)))
    specs = discover(tmp_path)
    assert [s.geometry.name for s in specs] == ["run0.vtp", "run1.vtp", "run2.vtp"]
    assert specs[1].field_files == [("wss", tmp_path / "run1.wss.npy")]
    assert len(discover(str(tmp_path / "run[02].vtp"))) == 2
    (tmp_path / "m.csv").write_text("geometry,split,u_inf,yaw\nrun0.vtp,train,30,0\nrun1.vtp,val,40,5\n")
    specs = discover(tmp_path / "m.csv")
    assert [s.split for s in specs] == ["train", "test"] and specs[1].scalars == {"u_inf": 40.0, "yaw": 5.0}
    (tmp_path / "bad.csv").write_text("geometry,u_inf\nrun0.vtp,fast\n")
    with pytest.raises(DataFileError, match=r"row 1, column 'u_inf': 'fast' is not a number"):
        discover(tmp_path / "bad.csv")
    with pytest.raises(DataFileError, match="matches no geometry file"):
        discover(str(tmp_path / "*.stl"))
    # folder without a split column: the last `test` samples are held out
    ds = FileDataset({"path": str(tmp_path), "fields": ["p"], "test": 1})
    assert ds.split == ["train", "train", "test"]
    s = ds.sample(2)
    assert s.metadata["location"] == "cells" and s.fields["p"].tolist() == [2.0, 2.0]
    # conditioning columns become constant input channels after the normals
    ds = FileDataset({"path": str(tmp_path / "m.csv"), "fields": ["p"], "conditioning": ["u_inf"]})
    f = ds.sample(1).features
    assert f.shape == (2, 4) and f[:, 3].tolist() == [40.0, 40.0]
    with pytest.raises(DataFileError, match=r"no per-sample scalar 'rho' for conditioning; scalars: \['u_inf', 'yaw'\]"):
        FileDataset({"path": str(tmp_path / "m.csv"), "fields": ["p"], "conditioning": ["rho"]}).arrays(0)


def test_config_errors_are_one_line():
    from pyengine.data.files import file_config_from_dict

    with pytest.raises(ValueError, match=r"unknown option\(s\) \['feilds'\]"):
        file_config_from_dict({"path": "x", "feilds": ["p"]})
    with pytest.raises(ValueError, match="location must be one of"):
        file_config_from_dict({"path": "x", "fields": ["p"], "location": "faces"})
    with pytest.raises(ValueError, match="points_per_step must be a positive integer"):
        file_config_from_dict({"path": "x", "fields": ["p"], "points_per_step": 0})
    with pytest.raises(ValueError, match=r"forces: unknown option\(s\) \['area'\]"):
        file_config_from_dict({"path": "x", "fields": ["p"], "forces": {"area": 1}})


def test_volume_sample_from_a_tetrahedral_mesh(tmp_path):
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(0)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    pts = np.concatenate([corners, rng.random((60, 3))])
    tets = Delaunay(pts).simplices
    u = pts @ np.array([1.0, 2.0, 3.0])
    for name in ("a", "b"):
        meshio.write(tmp_path / f"{name}.vtu", meshio.Mesh(pts, [("tetra", tets)], point_data={"u": u}))
    ds = FileDataset({"path": str(tmp_path), "fields": ["u"], "sample": "volume", "test": 1})
    v = ds.arrays(0)
    # queries: every volume point with its value; geometry input: the cube's boundary (its 8 corners
    # and the few random points Delaunay puts on no face are dropped), normals outward
    np.testing.assert_array_equal(v.queries, pts)
    np.testing.assert_array_equal(v.fields["u"], u)
    on_boundary = np.isclose(v.points, 0).any(1) | np.isclose(v.points, 1).any(1)
    assert on_boundary.all() and len(v.points) >= 8
    outward = np.einsum("ij,ij->i", v.features, v.points - 0.5)
    assert (outward > 0).all()
    s = ds.sample(0)
    assert s.queries.shape == (68, 3) and s.fields["u"].shape == (68,)


def test_stl_with_npz_sidecar_per_face_and_per_vertex(tmp_path):
    import trimesh

    box = trimesh.creation.box()
    box.export(tmp_path / "box.stl")
    raw = trimesh.load(tmp_path / "box.stl", process=False)  # STL: 3 vertices per face, file order
    nv, nf = len(raw.vertices), len(raw.faces)
    np.savez(tmp_path / "box.npz", p=np.arange(nf, dtype=float), t=np.ones((nv, 3)))
    box.export(tmp_path / "box2.stl")
    np.savez(tmp_path / "box2.npz", p=np.zeros(nf), t=np.zeros((nv, 3)))
    specs = discover(tmp_path)
    assert [s.field_files for s in specs] == [[(None, tmp_path / "box.npz")], [(None, tmp_path / "box2.npz")]]
    a = FileDataset({"path": str(tmp_path), "fields": ["p"], "test": 1}).arrays(0)
    assert a.location == "cells" and a.fields["p"].tolist() == list(range(nf))
    b = FileDataset({"path": str(tmp_path), "fields": ["t"], "test": 1}).arrays(0)
    assert b.location == "points" and b.fields["t"].shape == (nv, 3)
    with pytest.raises(DataFileError, match=r"fields \['p', 't'\] mix point data and cell data; set cell_to_point"):
        FileDataset({"path": str(tmp_path), "fields": ["p", "t"], "test": 1}).arrays(0)
    both = FileDataset({"path": str(tmp_path), "fields": ["p", "t"], "test": 1, "cell_to_point": True}).arrays(0)
    assert both.fields["p"].shape == (nv,) and both.fields["t"].shape == (nv, 3)
