"""Surface quantities of the file cache (area vectors, orientation, vertex normals, lumped areas)
against float64 per-cell loops written independently of the vectorised code."""

import numpy as np
import pytest
import trimesh

from pyengine.data.files import FileDataset, area_vectors, vertex_normals, write_vtp
from pyengine.data.files.surface import orientation, surface_quantities


def _reference(points, cells):
    """Per cell, in plain float64 loops: area vectors, angle-weighted normals (arccos of the unit
    edge dot product) and the 1/k lumped area vectors; also the enclosed-volume sign."""
    n = len(points)
    areas, normal_sum, lumped = [], np.zeros((n, 3)), np.zeros((n, 3))
    volume = 0.0
    centre = points.mean(axis=0)
    for kind, block in cells.items():
        for cell in block:
            x = points[cell]
            if kind == "triangle":
                a = 0.5 * np.cross(x[1] - x[0], x[2] - x[0])
            else:
                a = 0.5 * np.cross(x[2] - x[0], x[3] - x[1])
            areas.append(a)
            volume += (x[0] - centre) @ a
            unit = a / np.linalg.norm(a)
            k = len(cell)
            for j in range(k):
                e1, e2 = x[(j + 1) % k] - x[j], x[(j - 1) % k] - x[j]
                angle = np.arccos(np.clip(e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2), -1, 1))
                normal_sum[cell[j]] += angle * unit
                lumped[cell[j]] += a / k
    normals = normal_sum / np.linalg.norm(normal_sum, axis=1, keepdims=True)
    return np.array(areas), normals, lumped, (1.0 if volume >= 0 else -1.0)


def _mixed_surface(seed=0):
    """A closed, jittered ellipsoid (icosphere triangles) plus a separate quad-faced box, with an
    awkward number of cells; both outward."""
    rng = np.random.default_rng(seed)
    s = trimesh.creation.icosphere(2)
    pts = s.vertices * [1.3, 0.9, 0.6] + rng.normal(0, 0.01, s.vertices.shape)
    box = trimesh.creation.box()
    bp = box.vertices + [4.0, 0.0, 0.0]
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    # orient the quads outward (box vertex order of trimesh: bit pattern of x, y, z)
    c = bp[quads].mean(axis=1) - bp.mean(axis=0)
    a = np.cross(bp[quads[:, 2]] - bp[quads[:, 0]], bp[quads[:, 3]] - bp[quads[:, 1]])
    quads = np.where((np.einsum("ij,ij->i", a, c) < 0)[:, None], quads[:, ::-1], quads)
    points = np.concatenate([pts, bp])
    return points, {"triangle": s.faces.astype(np.int64), "quad": quads + len(pts)}


@pytest.mark.parametrize("flip", [False, True])
def test_surface_quantities_match_cell_loops(flip):
    points, cells = _mixed_surface()
    if flip:  # the same surface with every cell listed the other way round (inward area vectors)
        cells = {k: c[:, ::-1].copy() for k, c in cells.items()}
    areas, normals, lumped, sign = _reference(points, cells)
    assert sign == (-1.0 if flip else 1.0)
    np.testing.assert_allclose(area_vectors(points, cells), areas, rtol=0, atol=1e-14)
    assert orientation(points, cells) == sign
    q = surface_quantities(points, cells)
    assert q.sign == sign
    # outward whatever the files' cell order: the quantities of the flipped surface are the same
    np.testing.assert_allclose(q.areas, sign * areas, rtol=0, atol=1e-14)
    np.testing.assert_allclose(q.lumped, sign * lumped, rtol=0, atol=1e-14)
    np.testing.assert_allclose(q.normals, sign * normals, rtol=0, atol=2e-6)  # float32 edge dots in the angles
    np.testing.assert_allclose(np.linalg.norm(q.normals, axis=1), 1, atol=1e-12)
    # without orientation: the files' order is kept
    keep = surface_quantities(points, cells, orient=False, lumped=False)
    assert keep.sign == 1.0 and keep.lumped is None
    np.testing.assert_allclose(keep.normals, normals, rtol=0, atol=2e-6)
    np.testing.assert_allclose(vertex_normals(points, cells), normals, rtol=0, atol=2e-6)


def test_inward_files_give_outward_normals(tmp_path):
    """A file whose triangles are listed clockwise (normals into the body, as OpenFOAM patches
    list them) gives the same cached features and area vectors as the outward file."""
    s = trimesh.creation.icosphere(3)
    pts = s.vertices * [1.5, 1.0, 0.7]
    for name, faces in (("out", s.faces), ("in", s.faces[:, ::-1])):
        for i in range(2):
            write_vtp(tmp_path / name / f"s{i}.vtp", pts * (1 + 0.1 * i), {"triangle": faces},
                      point_data={"p": pts[:, 0]})
    a = FileDataset({"path": str(tmp_path / "out"), "fields": ["p"], "test": 1}).arrays(0)
    b = FileDataset({"path": str(tmp_path / "in"), "fields": ["p"], "test": 1}).arrays(0)
    np.testing.assert_allclose(a.features, b.features, rtol=0, atol=2e-6)  # corners summed in another order
    np.testing.assert_allclose(a.area, b.area, rtol=0, atol=1e-15)
    assert np.einsum("ij,ij->i", a.features, pts).min() > 0  # outward on the ellipsoid


def test_surface_quantities_errors():
    points, cells = _mixed_surface()
    extra = np.concatenate([points, [[10.0, 10.0, 10.0]]])  # a vertex no cell uses
    with pytest.raises(ValueError, match="mesh.vtp: 1 of .* vertices belong to no surface cell"):
        surface_quantities(extra, cells, source="mesh.vtp")
    with pytest.raises(ValueError, match="'tetra' are not surface cells"):
        area_vectors(points, {"tetra": np.array([[0, 1, 2, 3]])})
    empty = surface_quantities(points, {}, normals=False)
    assert empty.areas.shape == (0, 3) and empty.sign == 1.0 and np.all(empty.lumped == 0)
