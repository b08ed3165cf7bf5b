"""Mesh hygiene and normals on each defect class of real CAD exports, built from clean shapes.

Every test asserts what the cleaning found (counts), that the map back to the input is
right, and that the vertex normals are unit length and consistently oriented (outward on
closed parts).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from pyengine.geometry import Mesh, clean_surface, robust_vertex_normals, surface_normals, vertex_normals
from pyengine.geometry.clean import group_rows, merge_vertices


def _unit(n: np.ndarray) -> None:
    assert np.isfinite(n).all()
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)


def _grid(nx: int, ny: int, x0=0.0, y0=0.0, size=1.0) -> tuple[np.ndarray, np.ndarray]:
    """A flat (nx x ny)-cell sheet in z = 0, wound so its normals point +z."""
    xs, ys = np.linspace(x0, x0 + size, nx + 1), np.linspace(y0, y0 + size, ny + 1)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    pts = np.c_[X.ravel(), Y.ravel(), np.zeros(X.size)]
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    v0 = (i * (ny + 1) + j).ravel()
    v1, v2, v3 = v0 + ny + 1, v0 + ny + 2, v0 + 1
    faces = np.concatenate([np.c_[v0, v1, v2], np.c_[v0, v2, v3]])
    return pts, faces


def _sphere(sub=3, r=1.0, centre=(0, 0, 0)):
    s = trimesh.creation.icosphere(sub, radius=r)
    return np.asarray(s.vertices) + np.asarray(centre, float), np.asarray(s.faces)


def test_clean_mesh_is_left_alone_and_maps_back():
    pts, faces = _sphere(2)
    s = clean_surface(pts, faces)
    assert s.summary() == "cleaned: nothing to remove; 1 component; closed surface"
    np.testing.assert_array_equal(s.vertex_map, np.arange(len(pts)))
    np.testing.assert_array_equal(s.faces, faces)
    np.testing.assert_array_equal(s.face_index, np.arange(len(faces)))
    n = surface_normals(s).normals
    _unit(n)
    assert (np.einsum("ij,ij->i", n, pts) > 0.99).all()


def test_double_sided_sheet_and_doubled_solid():
    pts, faces = _grid(6, 5)
    both = np.concatenate([faces, faces[:, [0, 2, 1]]])  # the same sheet twice, opposite winding
    # what the issue saw: the area-weighted face normals cancel exactly
    face_n = trimesh.Trimesh(pts, both, process=False).face_normals
    sums = np.zeros_like(pts)
    np.add.at(sums, both.reshape(-1), np.repeat(face_n, 3, axis=0))
    assert np.abs(sums).max() < 1e-12
    s = clean_surface(pts, both)
    assert s.counts["duplicate_faces"] == len(faces) and s.counts["opposite_duplicates"] == len(faces)
    assert s.summary().startswith(f"cleaned: {len(faces)} duplicate faces ({len(faces)} opposite-wound) removed")
    n = surface_normals(s).normals
    _unit(n)
    assert abs(n[:, 2]).min() > 1 - 1e-12 and len(np.unique(np.sign(n[:, 2]))) == 1  # one side, consistently
    # a closed body stored twice with opposite winding: one copy stays, normals outward
    sp, sf = _sphere(2)
    s = clean_surface(sp, np.concatenate([sf[:, [0, 2, 1]], sf]))
    assert s.is_closed and s.counts["opposite_duplicates"] == len(sf)
    n = surface_normals(s).normals
    _unit(n)
    assert (np.einsum("ij,ij->i", n, s.points) > 0.99).all()
    # the same through the public per-input-vertex API
    n_in = vertex_normals(Mesh(sp, {"triangle": np.concatenate([sf[:, [0, 2, 1]], sf])}), dtype=torch.float64)
    assert (torch.einsum("ij,ij->i", n_in, torch.as_tensor(sp)) > 0.99).all()


def test_folded_sliver_and_degenerate_faces():
    pts, faces = _grid(8, 8)
    pts = pts.copy()
    # fold: push an interior vertex just across the opposite edge of one of its triangles
    v = 4 * 9 + 4
    pts[v, 0] += 0.125 + 1e-3
    tri = pts[faces]
    assert (np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2] < 0).any()  # a face is folded over
    # a collinear sliver (height 1e-10 of its length) and a face with a repeated vertex
    line = np.array([[2.0, 0.0, 0.0], [2.5, 1e-10, 0.0], [3.0, 0.0, 0.0]])
    pts2 = np.concatenate([pts, line])
    faces2 = np.concatenate([faces, [[5, 5, 6]], [[len(pts), len(pts) + 1, len(pts) + 2]]])
    s = clean_surface(pts2, faces2)
    assert s.counts["degenerate_faces"] == 2
    sn = surface_normals(s)
    _unit(sn.normals)
    used = s.used
    assert (sn.normals[used, 2] > 0.9).all()  # the fold does not flip or cancel anyone's normal
    # the sliver's vertices are in no kept face: local PCA of the sheet, same side as the sheet
    assert sn.fallback[~used].all() and (np.abs(sn.normals[~used, 2]) > 0.99).all()


def test_t_junctions_on_a_closed_box():
    box = trimesh.creation.box()
    top = np.flatnonzero(box.face_normals[:, 2] > 0.5)
    v, f = trimesh.remesh.subdivide(box.vertices, box.faces, face_index=top)  # midpoints on shared edges: T-junctions
    s = clean_surface(v, f)
    assert s.counts["boundary_edges"] > 0 and not s.is_closed  # topologically open at the T-junctions
    n = surface_normals(s).normals
    _unit(n)
    assert (np.einsum("ij,ij->i", n, s.points) > 0.3).all()  # still outward everywhere


@pytest.mark.parametrize("flip_second", [False, True])
def test_touching_solids(flip_second):
    a = trimesh.creation.box()
    b = trimesh.creation.box(transform=trimesh.transformations.translation_matrix([1.0, 1.0, 0.0]))  # share an edge
    c_pts, c_faces = _sphere(2, 0.5, (0.0, 0.0, 1.0))  # touches a's top face at one point
    fb = np.asarray(b.faces)[:, [0, 2, 1]] if flip_second else np.asarray(b.faces)  # b wound inward in the file
    pts = np.concatenate([a.vertices, b.vertices, c_pts])
    faces = np.concatenate([a.faces, fb + 8, c_faces + 16])
    s = clean_surface(pts, faces)
    assert s.num_components == 3 and s.is_closed
    assert s.counts["nonmanifold_edges"] == 1 and s.counts["merged_vertices"] == 2
    assert s.counts["reoriented_faces"] == (12 if flip_second else 0)
    n = surface_normals(s).normals
    _unit(n)
    centres = np.array([[0, 0, 0], [1, 1, 0], [0, 0, 1.0]])
    for comp, centre in enumerate(centres):
        verts = np.unique(s.faces[s.component == comp])
        shared = np.isclose(s.points[verts, :2], 0.5).all(1)  # the edge two boxes share
        d = np.einsum("ij,ij->i", n[verts], s.points[verts] - centre)
        assert (d[~shared] > 0).all()
    assert (np.einsum("ij,ij->i", n, s.points - np.array([0.5, 0.5, 0.3])) > -0.5).all()


def test_open_shell_with_mixed_winding():
    sp, sf = _sphere(3)
    half = sf[sp[sf].mean(1)[:, 2] > 0.05]  # an open cap
    rng = np.random.default_rng(0)
    flip = rng.random(len(half)) < 0.3  # 30 % of the faces wound the other way
    f = np.where(flip[:, None], half[:, [0, 2, 1]], half)
    s = clean_surface(sp, f)
    assert not s.is_closed and s.num_components == 1
    assert s.counts["reoriented_faces"] == flip.sum()  # the minority is turned to match the majority
    n = surface_normals(s).normals
    _unit(n)
    d = np.einsum("ij,ij->i", n[s.used], s.points[s.used])
    assert (d > 0.95).all()
    assert "open surface (1 open component" in s.summary()


def test_mixed_triangles_quads_and_polygons():
    # a hexagonal prism: two hexagons and six quads, plus a triangle fan on one quad's place
    ang = np.linspace(0, 2 * np.pi, 7)[:-1]
    ring = np.c_[np.cos(ang), np.sin(ang)]
    pts = np.concatenate([np.c_[ring, -np.ones(6)], np.c_[ring, np.ones(6)]])
    bottom = np.arange(6)[::-1][None]  # wound to face -z
    top = (np.arange(6) + 6)[None]
    quads = np.array([[i, (i + 1) % 6, (i + 1) % 6 + 6, i + 6] for i in range(1, 6)])
    tris = np.array([[0, 1, 7], [0, 7, 6]])  # the first side as two triangles
    mesh = Mesh(pts, {"triangle": tris, "quad": quads, "polygon6": np.concatenate([bottom, top])})
    assert len(mesh.faces) == 2 + 2 * 5 + 2 * 4
    assert sorted(np.unique(mesh.face_cells).tolist()) == list(range(2 + 5 + 2))
    s = clean_surface(mesh.points, mesh.faces)
    assert s.is_closed and s.counts["reoriented_faces"] == 0
    n = mesh.normals
    _unit(n)
    assert (np.einsum("ij,ij->i", n, pts) > 0.5).all()


def test_vertices_in_no_face():
    sp, sf = _sphere(3)
    stray = np.array([[1.02, 0.0, 0.0], [0.0, 0.0, -1.01], [0.0, 0.7, 0.7], [5.0, 5.0, 5.0]])
    pts = np.concatenate([sp, stray])
    n, s, sn = robust_vertex_normals(pts, sf)
    assert s.counts["unused_vertices"] == 4 and "4 vertices in no face" in s.summary()
    _unit(n)
    assert sn.fallback.sum() == 4
    radial = stray[:3] / np.linalg.norm(stray[:3], axis=1, keepdims=True)
    assert (np.einsum("ij,ij->i", n[len(sp):len(sp) + 3], radial) > 0.95).all()  # local PCA, outward like its neighbours


def test_merge_tolerance_is_relative_to_the_box():
    pts, faces = _sphere(1, r=1000.0)  # a mm-sized body: same relative tolerance as in metres
    jitter = pts + 1e-7 * np.random.default_rng(1).standard_normal(pts.shape)  # 1e-10 of the diagonal
    both = np.concatenate([pts, jitter])
    first, vmap = merge_vertices(both)
    assert len(first) == len(pts) and np.array_equal(vmap[:len(pts)], vmap[len(pts):])
    first, vmap = merge_vertices(both, tolerance=0.0)
    assert len(first) == 2 * len(pts)


def test_group_rows_matches_exact_grouping():
    rng = np.random.default_rng(0)
    for dtype in (np.int64, np.float32, np.float64):
        rows = rng.integers(0, 4, (3000, 3)).astype(dtype)
        first, inv = group_rows(rows)
        np.testing.assert_array_equal(rows[first][inv], rows)
        assert np.array_equal(first, np.sort(first))  # numbered by first appearance
        assert len(first) == len(np.unique(rows, axis=0))


def test_clean_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN or Inf"):
        clean_surface(np.array([[0, 0, 0], [1, 0, np.nan], [0, 1, 0]]), [[0, 1, 2]])
    with pytest.raises(ValueError, match="faces index outside the 3 points"):
        clean_surface(np.eye(3), [[0, 1, 3]])
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        clean_surface(np.zeros((3, 2)), [[0, 1, 2]])
