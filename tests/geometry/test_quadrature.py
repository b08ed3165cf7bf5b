"""Quadrature weights against exact measures, brute force and scipy; mesh refinement helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")
from scipy.spatial import ConvexHull, Delaunay  # noqa: E402

from pyengine.data import Sample  # noqa: E402
from pyengine.geometry.quadrature import (density_weights, dual_volumes, intrinsic_dimension,  # noqa: E402
                                          quadrature_weights, vertex_areas)
from pyengine.geometry.refine import jitter, refine_half, subdivide  # noqa: E402


def _brute_areas(p, t, mixed):
    """One triangle at a time, float64, straight from the definitions."""
    out = np.zeros(len(p))
    for tri in t:
        a, b, c = (p[i] for i in tri)
        area = 0.5 * np.linalg.norm(np.cross(b - a, c - a))
        if not mixed:
            for i in tri:
                out[i] += area / 3
            continue
        pts = [a, b, c]
        angles = []
        for k in range(3):
            u, v = pts[(k + 1) % 3] - pts[k], pts[(k + 2) % 3] - pts[k]
            angles.append(math.acos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))
        if max(angles) > math.pi / 2:
            for k, i in enumerate(tri):
                out[i] += area / 2 if angles[k] > math.pi / 2 else area / 4
            continue
        for k, i in enumerate(tri):
            j, l = (k + 1) % 3, (k + 2) % 3
            out[i] += (np.sum((pts[k] - pts[j]) ** 2) / math.tan(angles[l])
                       + np.sum((pts[k] - pts[l]) ** 2) / math.tan(angles[j])) / 8
    return out


def _random_surface(seed=0, n=37):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3))
    hull = ConvexHull(pts)  # a closed triangle surface with obtuse and acute triangles
    return pts, hull.simplices.astype(np.int64), hull.area


@pytest.mark.parametrize("kind", ["barycentric", "mixed"])
def test_vertex_areas_match_brute_force_and_total_area(kind):
    p, t, area = _random_surface()
    w = vertex_areas(p, t, kind)
    np.testing.assert_allclose(w, _brute_areas(p, t, kind == "mixed"), rtol=1e-10, atol=1e-12)
    assert w.sum() == pytest.approx(area, rel=1e-10)
    used = np.unique(t)
    assert (w[used] > 0).all() and (np.delete(w, used) == 0).all()  # interior points: in no triangle


def test_vertex_areas_sphere_and_box_exact_area():
    sphere = trimesh.creation.icosphere(5)
    assert vertex_areas(sphere.vertices, sphere.faces).sum() == pytest.approx(4 * math.pi, rel=2e-3)
    assert vertex_areas(sphere.vertices, sphere.faces, "mixed").sum() == pytest.approx(sphere.area, rel=1e-10)
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    exact = 2 * (1 * 2 + 2 * 3 + 1 * 3)
    torch_w = vertex_areas(torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces))
    assert torch_w.dtype == torch.float32 and float(torch_w.sum()) == pytest.approx(exact, rel=1e-6)


def test_dual_volumes_box_and_2d_domain():
    rng = np.random.default_rng(1)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 2) for z in (0, 0.5)], float)
    pts = np.concatenate([corners, rng.uniform([0, 0, 0], [1, 2, 0.5], size=(53, 3))])
    tets = Delaunay(pts).simplices
    w = dual_volumes(pts, tets)
    assert w.sum() == pytest.approx(1.0, rel=1e-10)  # the box's volume
    # per vertex: a quarter of each incident tetrahedron, brute force
    ref = np.zeros(len(pts))
    for tet in tets:
        v = abs(np.linalg.det(pts[tet[1:]] - pts[tet[0]])) / 6
        ref[tet] += v / 4
    np.testing.assert_allclose(w, ref, rtol=1e-10)
    pts2 = rng.uniform(size=(41, 2))
    tri = Delaunay(pts2).simplices
    assert dual_volumes(pts2, tri).sum() == pytest.approx(ConvexHull(pts2).volume, rel=1e-10)


def test_density_weights_integrate_random_samples():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(6000, 3))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    assert intrinsic_dimension(s) == 2
    assert density_weights(s, k=8).sum() == pytest.approx(4 * math.pi, rel=0.1)
    cube = rng.uniform(size=(6000, 3))
    assert intrinsic_dimension(cube) == 3
    assert density_weights(cube, k=8, dim=3).sum() == pytest.approx(1.0, rel=0.25)  # boundary balls overshoot
    # a cloud twice as dense on one half: weights halve there
    dense = np.concatenate([cube, rng.uniform([0.5, 0, 0], [1, 1, 1], size=(3000, 3))])
    w = density_weights(dense, k=8, dim=3)
    left, right = dense[:, 0] < 0.45, dense[:, 0] > 0.55
    ratio = np.median(w[left]) / np.median(w[right])
    assert 1.6 < ratio < 2.5


def test_quadrature_weights_pick_and_fill():
    box = trimesh.creation.box()
    pts = np.concatenate([box.vertices, [[5.0, 5.0, 5.0]]])  # a dangling vertex
    s = Sample(points=torch.tensor(pts), cells={"triangle": torch.tensor(box.faces)})
    w = quadrature_weights(s)
    assert w.shape == (9,) and bool((w > 0).all())
    assert float(w[:8].sum()) == pytest.approx(6.0)
    assert float(w[8]) == pytest.approx(float(np.median(w[:8].numpy())))
    cloud = Sample(points=torch.rand(500, 3, dtype=torch.float64))
    assert quadrature_weights(cloud).shape == (500,)
    with pytest.raises(ValueError, match="triangle"):
        quadrature_weights(cloud, method="area")
    with pytest.raises(ValueError, match="method"):
        quadrature_weights(cloud, method="voronoi")
    with pytest.raises(ValueError, match="shape"):
        vertex_areas(np.zeros((4, 4)), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="outside"):
        vertex_areas(np.zeros((3, 3)), np.array([[0, 1, 3]]))


def test_sample_carries_weights():
    with pytest.raises(ValueError, match="weights"):
        Sample(points=torch.rand(5, 3), weights=torch.ones(4))
    with pytest.raises(ValueError, match="> 0"):
        Sample(points=torch.rand(5, 3), weights=torch.zeros(5))
    from pyengine.data import Batch

    a = Sample(points=torch.rand(5, 3), weights=torch.rand(5) + 0.1)
    b = Sample(points=torch.rand(7, 3), weights=torch.rand(7) + 0.1)
    batch = Batch.from_samples([a, b])
    assert torch.equal(batch[1].weights, b.weights) and batch.weights.shape == (12,)
    with pytest.raises(ValueError, match="quadrature weights"):
        Batch.from_samples([a, Sample(points=torch.rand(3, 3))])


def test_subdivide_keeps_vertices_and_area():
    m = trimesh.creation.icosphere(2)
    p, t = subdivide(m.vertices, m.faces, 2)
    np.testing.assert_array_equal(p[: len(m.vertices)], m.vertices)
    assert len(t) == 16 * len(m.faces)
    assert vertex_areas(p, t).sum() == pytest.approx(m.area, rel=1e-10)  # planar subdivision keeps the area
    ph, th = refine_half(m.vertices, m.faces, times=2)
    np.testing.assert_array_equal(ph[: len(m.vertices)], m.vertices)
    assert len(m.faces) < len(th) < 16 * len(m.faces)
    assert vertex_areas(ph, th).sum() == pytest.approx(m.area, rel=1e-10)
    right = ph[len(m.vertices):, 0]
    assert (right > -0.2).mean() > 0.95  # the new vertices sit on the refined half


def test_jitter_is_tangential_and_bounded():
    m = trimesh.creation.icosphere(3)
    j = jitter(m.vertices, m.faces, 0.25, seed=3)
    d = j - m.vertices
    assert np.abs(np.sum(d * m.vertex_normals, axis=1)).max() < 1e-3
    assert np.linalg.norm(d, axis=1).max() <= 0.25 * m.edges_unique_length.max() + 1e-12
    assert np.array_equal(j, jitter(m.vertices, m.faces, 0.25, seed=3))
    with pytest.raises(ValueError, match="amount"):
        jitter(m.vertices, m.faces, 0.6)
