"""Surface sampling, normals, curvature, signed distance and GAOT neighborhood embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from pyengine.geometry import (EMBEDDING_NAMES, Mesh, curvature, geometry_embedding, normal_variation,
                               sample_surface, signed_distance, vertex_normals, winding_number)


def _two_panels() -> trimesh.Trimesh:
    """Panel A = [0,1]x[0,1] cut into 200 small triangles, panel B = [2,5]x[0,1] in 2 big ones.

    B has 3x the area of A but 1/100 of its triangles, so a sampler that picked faces
    uniformly (not by area) would put ~1% of the points on B instead of 75%.
    """
    xs = np.linspace(0, 1, 11)
    verts, faces = [], []
    for i in range(10):
        for j in range(10):
            base = len(verts)
            verts += [[xs[i], xs[j], 0], [xs[i + 1], xs[j], 0], [xs[i + 1], xs[j + 1], 0], [xs[i], xs[j + 1], 0]]
            faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    base = len(verts)
    verts += [[2, 0, 0], [5, 0, 0], [5, 1, 0], [2, 1, 0]]
    faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return trimesh.Trimesh(np.array(verts, float), np.array(faces), process=False)


def test_sampling_is_area_weighted():
    mesh = _two_panels()
    n = 20000
    s = sample_surface(mesh, n, seed=3, dtype=torch.float64)
    on_b = (s.points[:, 0] >= 2).double().mean().item()
    sigma = math.sqrt(0.75 * 0.25 / n)
    assert abs(on_b - 0.75) < 5 * sigma
    # uniform inside panel B too: x is uniform on [2, 5] (mean 3.5, variance 0.75)
    xb = s.points[s.points[:, 0] >= 2, 0]
    assert abs(xb.mean().item() - 3.5) < 5 * math.sqrt(0.75 / len(xb))
    assert abs(xb.var().item() - 0.75) < 0.05
    # reproducible by seed
    assert torch.equal(sample_surface(mesh, 100, seed=7).points, sample_surface(mesh, 100, seed=7).points)
    assert not torch.equal(sample_surface(mesh, 100, seed=7).points, sample_surface(mesh, 100, seed=8).points)


def test_sampling_interpolates_vertex_data_and_gives_face_normals():
    sphere = trimesh.creation.icosphere(2)
    lin = sphere.vertices @ np.array([1.0, -2.0, 0.5]) + 3.0  # linear fields are interpolated exactly
    s = sample_surface(Mesh.from_trimesh(sphere), 500, seed=0, point_data={"lin": lin, "xyz": sphere.vertices},
                       dtype=torch.float64)
    ref = s.points @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
    torch.testing.assert_close(s.values["lin"], ref)
    torch.testing.assert_close(s.values["xyz"], s.points)
    torch.testing.assert_close(s.normals, torch.tensor(sphere.face_normals)[s.face_index])
    with pytest.raises(ValueError, match="n must be"):
        sample_surface(sphere, 0)


def test_sphere_vertex_normals_point_outward():
    sphere = trimesh.creation.icosphere(3, radius=2.0)
    n = vertex_normals(Mesh.from_trimesh(sphere), dtype=torch.float64)
    radial = torch.as_tensor(sphere.vertices) / 2.0
    torch.testing.assert_close(n.norm(dim=1), torch.ones(len(n), dtype=torch.float64))
    assert (n * radial).sum(1).min() > 0.999


def test_sphere_curvature():
    r = 2.0
    sphere = trimesh.creation.icosphere(4, radius=r)
    mean, gauss = curvature(sphere, radius=0.4, dtype=torch.float64)
    assert abs(mean.mean().item() - 1 / r) < 0.05 / r
    assert abs(gauss.mean().item() - 1 / r**2) < 0.1 / r**2
    plane = _two_panels()
    plane.merge_vertices()  # the panels are built with per-cell vertex copies
    m_plane, g_plane = curvature(plane, radius=0.2, points=[[0.5, 0.5, 0.0]])
    assert abs(m_plane.item()) < 1e-6 and abs(g_plane.item()) < 1e-6
    with pytest.raises(ValueError, match="radius"):
        curvature(sphere, radius=0)


def test_normal_variation_of_sphere_samples():
    """Exact normals on a sphere of radius R: 1 - n.n' = d^2 / (2 R^2), and the area within
    distance d of a point is pi d^2, so the mean over a ball of radius r is r^2 / (4 R^2)."""
    R, r = 2.0, 0.4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    n = x / x.norm(dim=1, keepdim=True)
    nv = normal_variation(R * n, n, r)
    assert abs(nv.mean().item() - r**2 / (4 * R**2)) < 0.03 * r**2 / (4 * R**2)
    plane = torch.cat([torch.rand(500, 2, generator=g, dtype=torch.float64), torch.zeros(500, 1)], 1)
    up = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(500, 3)
    assert normal_variation(plane, up, 0.1).abs().max() < 1e-12
    with pytest.raises(ValueError, match="normals"):
        normal_variation(plane, up[:10], 0.1)


@pytest.mark.parametrize("method", ["winding", "ray"])
def test_sphere_signed_distance_matches_analytic(method):
    sphere = trimesh.creation.icosphere(3, radius=1.0)
    rng = np.random.default_rng(1)
    q = rng.uniform(-2, 2, size=(400, 3))
    sd = signed_distance(sphere, q, signed=True, sign_method=method, dtype=torch.float64).numpy()
    exact = np.linalg.norm(q, axis=1) - 1.0  # negative inside
    # the icosphere's flat faces sit up to ~0.005 inside the true sphere
    np.testing.assert_allclose(sd, exact, atol=6e-3)
    away = np.abs(exact) > 6e-3
    assert (np.sign(sd[away]) == np.sign(exact[away])).all()
    # a watertight mesh is signed by default
    np.testing.assert_allclose(signed_distance(sphere, q[:20], dtype=torch.float64).numpy(), sd[:20])


def test_winding_number_and_open_surfaces_are_unsigned():
    sphere = trimesh.creation.icosphere(2)
    w = winding_number(sphere, [[0, 0, 0], [0.3, -0.2, 0.1], [3, 0, 0], [0, 0, -5]]).numpy()
    np.testing.assert_allclose(w, [1, 1, 0, 0], atol=1e-9)
    # open the surface: remove the faces of the upper cap
    cap = sphere.triangles_center[:, 2] > 0.7
    open_mesh = trimesh.Trimesh(sphere.vertices, sphere.faces[~cap], process=False)
    assert not open_mesh.is_watertight
    q = np.array([[0, 0, 0], [0, 0, 3.0]])
    d = signed_distance(open_mesh, q, dtype=torch.float64).numpy()  # auto: unsigned
    assert (d >= 0).all()
    # the nearest surface is the rim around the missing cap (brute-force closest point as reference)
    ref = trimesh.proximity.closest_point_naive(open_mesh, q)[1]
    np.testing.assert_allclose(d, ref, atol=1e-9)
    assert d[1] > 2.2 and d[0] > 0.9
    with pytest.raises(ValueError, match="sign_method"):
        signed_distance(sphere, q, sign_method="guess")


# --------------------------------------------------------------------------- geometry embeddings


def _embedding_reference(points: np.ndarray, tokens: np.ndarray, radius: float) -> np.ndarray:
    """Brute-force float64 reference: explicit distances and a per-token numpy eigendecomposition."""
    d = points.shape[1]
    out = np.zeros((len(tokens), 13))
    for i, t in enumerate(tokens):
        nb = points[np.linalg.norm(points - t, axis=1) <= radius]
        out[i, 0] = len(nb)
        if len(nb) == 0:
            continue
        off = (nb - t) / radius
        mean = off.mean(0)
        cov = (off - mean).T @ (off - mean) / len(nb)
        evals, evecs = np.linalg.eigh(cov)
        out[i, 1:1 + d] = mean
        out[i, 4:4 + d] = np.diag(cov)
        out[i, 7:7 + d] = evals[::-1]
        if len(nb) >= 3:
            nrm = evecs[:, 0]
            nrm = nrm if nrm[np.argmax(np.abs(nrm))] > 0 else -nrm
            out[i, 10:10 + d] = nrm
    return out


@pytest.mark.parametrize("dim", [3, 2])
def test_geometry_embedding_matches_brute_force(dim):
    g = torch.Generator().manual_seed(0)
    # anisotropic cloud so the PCA eigenvalues are well separated and the normal well defined
    scale = torch.tensor([1.0, 0.5, 0.1][:dim], dtype=torch.float64)
    points = torch.rand(600, dim, generator=g, dtype=torch.float64) * scale
    tokens = torch.rand(50, dim, generator=g, dtype=torch.float64) * scale
    tokens[0] = 10.0  # far away: an empty neighborhood gives a zero row
    radius = 0.25
    emb = geometry_embedding(points, tokens, radius)
    assert emb.shape == (50, len(EMBEDDING_NAMES))
    ref = _embedding_reference(points.numpy(), tokens.numpy(), radius)
    np.testing.assert_allclose(emb.numpy(), ref, atol=1e-10)
    assert (emb[0] == 0).all() and (emb[1:, 0] > 3).all()
    # float32 agrees to float32 accuracy
    emb32 = geometry_embedding(points.float(), tokens.float(), radius)
    np.testing.assert_allclose(emb32[:, :10].numpy(), ref[:, :10], atol=2e-5)


def test_geometry_embedding_batched_equals_per_cloud():
    g = torch.Generator().manual_seed(1)
    pa, pb = torch.rand(200, 3, generator=g, dtype=torch.float64), torch.rand(150, 3, generator=g, dtype=torch.float64)
    ta, tb = torch.rand(20, 3, generator=g, dtype=torch.float64), torch.rand(30, 3, generator=g, dtype=torch.float64)
    bp = torch.cat([torch.zeros(200), torch.ones(150)]).long()
    bt = torch.cat([torch.zeros(20), torch.ones(30)]).long()
    emb = geometry_embedding(torch.cat([pa, pb]), torch.cat([ta, tb]), 0.3, batch_points=bp, batch_tokens=bt)
    torch.testing.assert_close(emb, torch.cat([geometry_embedding(pa, ta, 0.3), geometry_embedding(pb, tb, 0.3)]))
    with pytest.raises(TypeError):
        geometry_embedding(pa, ta.float(), 0.3)
    # a per-token radius tensor: each row equals the scalar-radius run with that token's radius
    radii = torch.where(torch.arange(20) % 2 == 0, 0.2, 0.35).double()
    per_token = geometry_embedding(pa, ta, radii)
    even, odd = geometry_embedding(pa, ta, 0.2), geometry_embedding(pa, ta, 0.35)
    torch.testing.assert_close(per_token[0::2], even[0::2])
    torch.testing.assert_close(per_token[1::2], odd[1::2])


def test_geometry_embedding_normal_of_a_surface_sample():
    """Tokens on a sphere: the PCA normal of the surface samples around them is the radial direction."""
    sphere = trimesh.creation.icosphere(3)
    s = sample_surface(sphere, 4000, seed=0, dtype=torch.float64)
    tokens = s.points[:40]
    emb = geometry_embedding(s.points, tokens, 0.25)
    normal = emb[:, 10:13]
    radial = tokens / tokens.norm(dim=1, keepdim=True)
    assert (normal * radial).sum(1).abs().min() > 0.98


def test_shapenet_car_inside_outside_agrees_with_trimesh_ray_test():
    from test_geometry_io import CAR_DIR

    from pyengine.geometry import load_mesh

    path = CAR_DIR / "001" / "tri_mesh.ply"
    if not path.is_file():
        pytest.skip(f"shared data {path} not present")
    m = load_mesh(path)
    lo, hi = m.points.min(0), m.points.max(0)
    q = lo + np.random.default_rng(0).random((300, 3)) * (hi - lo)
    sd = signed_distance(m, q, dtype=torch.float64).numpy()
    inside_ray = m.to_trimesh().contains(q)
    assert 0.2 < inside_ray.mean() < 0.8  # both classes present
    np.testing.assert_array_equal(sd < 0, inside_ray)
    ref = trimesh.proximity.closest_point_naive(m.to_trimesh(), q[:50])[1]
    np.testing.assert_allclose(np.abs(sd[:50]), ref, atol=1e-9)


def test_geometry_embedding_reuses_a_given_graph():
    """Passing the CSR of the same search gives the same statistics as searching inside."""
    import pyengine.ops as ops
    from pyengine.geometry import geometry_embedding

    g = torch.Generator().manual_seed(3)
    pts, tok = torch.rand(300, 3, generator=g, dtype=torch.float64), torch.rand(40, 3, generator=g, dtype=torch.float64)
    graph = ops.radius_search(pts, tok, 0.3, max_neighbors=20)
    torch.testing.assert_close(geometry_embedding(pts, tok, 0.3, graph=graph),
                               geometry_embedding(pts, tok, 0.3, max_neighbors=20), rtol=0, atol=0)
