"""Windowed (fixed length-scale) surface normals: against a Gauss-Legendre reference, exact cases,
convergence under refinement, the cancelling-sheet fallback and the 'smooth_normals' recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from pyengine.data import Sample  # noqa: E402
from pyengine.geometry.normals import robust_vertex_normals  # noqa: E402
from pyengine.geometry.refine import subdivide  # noqa: E402
from pyengine.geometry.windowed_normals import windowed_normals  # noqa: E402
from pyengine.pipeline.prepare import SMOOTH_NORMALS_RADIUS, feature_channels, prepare_sample  # noqa: E402


def _reference(p, t, q, rho, n=24):
    """float64, one triangle at a time: a 24 x 24 Gauss-Legendre rule on the Duffy-collapsed square
    (a rule independent of the sub-triangle centroids under test)."""
    g, gw = np.polynomial.legendre.leggauss(n)
    g, gw = (g + 1) / 2, gw / 2
    s, u = np.meshgrid(g, g, indexing="ij")
    b1, b2, ww = (s * (1 - u)).ravel(), (s * u).ravel(), (np.outer(gw, gw) * s).ravel()
    out = np.zeros((len(q), 3))
    for tri in t:
        a, b, c = p[tri]
        y = a + b1[:, None] * (b - a) + b2[:, None] * (c - a)
        w = np.clip(1 - ((q[:, None] - y[None]) ** 2).sum(-1) / rho ** 2, 0, None) ** 2
        out += (w * ww).sum(1)[:, None] * np.cross(b - a, c - a)[None]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _angle_deg(a, b):
    return np.degrees(np.arccos(np.clip((a * b).sum(1), -1, 1)))


def _bumpy_sphere(seed=0, level=2):
    rng = np.random.default_rng(seed)
    m = trimesh.creation.icosphere(level)
    return m.vertices * (1 + 0.05 * rng.standard_normal((len(m.vertices), 1))), np.asarray(m.faces)


@pytest.mark.parametrize("rho_edges", [0.7, 1.5, 3.1])
def test_matches_gauss_legendre_reference(rho_edges):
    p, t = _bumpy_sphere(seed=int(rho_edges * 10))
    edge = np.linalg.norm(p[t[:, 1]] - p[t[:, 0]], axis=1).mean()
    rng = np.random.default_rng(1)
    q = np.concatenate([p[rng.choice(len(p), 29, replace=False)], 1.02 * p[rng.choice(len(p), 8)]])
    got = windowed_normals(p, t, q, rho_edges * edge)
    assert got.shape == (37, 3) and got.dtype == np.float64
    assert np.allclose(np.linalg.norm(got, axis=1), 1)
    assert _angle_deg(got, _reference(p, t, q, rho_edges * edge)).max() < 0.3


def test_flat_plane_is_exact_and_sphere_is_radial():
    m = trimesh.creation.box(extents=(4, 4, 0.5))
    p, t = subdivide(m.vertices, m.faces, 3)
    top = p[(p[:, 2] > 0.2) & (np.abs(p[:, :2]).max(1) < 1.5)]
    n = windowed_normals(p, t, top, 0.3)
    assert np.abs(n - [0, 0, 1]).max() < 1e-12
    s = trimesh.creation.icosphere(4)
    n = windowed_normals(s.vertices, s.faces, s.vertices, 0.1)
    assert _angle_deg(n, s.vertices / np.linalg.norm(s.vertices, axis=1, keepdims=True)).max() < 0.5


def test_converges_under_subdivision_where_vertex_normals_do_not():
    """The windowed field of the coarse surface and of its 16x subdivision agree at every fine vertex
    (the same surface); the vertex normals of the two meshes do not (facet jumps)."""
    m = trimesh.creation.box(extents=(2.0, 1.0, 0.6))
    p, t = subdivide(m.vertices, m.faces, 2)
    pf, tf = subdivide(p, t, 2)
    rho = 2 * np.linalg.norm(p[t[:, 1]] - p[t[:, 0]], axis=1).mean()
    coarse, fine = windowed_normals(p, t, pf, rho), windowed_normals(pf, tf, pf, rho)
    assert np.linalg.norm(fine - coarse) / np.linalg.norm(coarse) < 0.005
    # vertex normals: the coarse mesh's normal at its own vertices against the fine mesh's at the same points
    vc = robust_vertex_normals(p, t)[0]
    vf = robust_vertex_normals(pf, tf)[0][: len(p)]
    assert np.linalg.norm(vf - vc) < 1e-9  # corners keep their fans...
    new = windowed_normals(pf, tf, pf[len(p):], rho)
    raw_new = robust_vertex_normals(pf, tf)[0][len(p):]
    # ...but new vertices on a face carry that face's normal: at the box edges they jump by 45 degrees
    assert _angle_deg(new, raw_new).max() > 20


def test_cancelling_sheets_use_the_fallback_or_raise():
    # two coincident-ish planes facing away from each other, 0.01 apart: a window of 0.2 sees both
    a = trimesh.creation.box(extents=(2, 2, 0.01))
    p, t = subdivide(a.vertices, a.faces, 3)
    mid = p[(np.abs(p[:, :2]).max(1) < 0.5)]
    with pytest.raises(ValueError, match="cancelling normals"):
        windowed_normals(p, t, mid, 0.2)
    fb = np.tile([0.0, 0.0, 1.0], (len(mid), 1))
    assert np.array_equal(windowed_normals(p, t, mid, 0.2, fallback=fb), fb)
    far = np.array([[10.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="no surface"):
        windowed_normals(p, t, far, 0.2)


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_radius_is_one_line(radius):
    m = trimesh.creation.icosphere(1)
    with pytest.raises(ValueError, match="radius must be a positive finite length"):
        windowed_normals(m.vertices, m.faces, m.vertices, radius)


def test_smooth_normals_recipe_is_mesh_independent():
    m = trimesh.creation.box(extents=(2.0, 0.8, 0.5))
    p, t = subdivide(m.vertices, m.faces, 3)
    pf, tf = subdivide(p, t, 2)
    assert feature_channels("smooth_normals") == 3

    def feats(pts, tri, recipe):
        s = Sample(points=torch.as_tensor(pts), cells={"triangle": torch.as_tensor(tri)})
        return prepare_sample(s, recipe)[0].features[: len(p)].numpy()

    smooth_c, smooth_f = feats(p, t, "smooth_normals"), feats(pf, tf, "smooth_normals")
    assert np.allclose(np.linalg.norm(smooth_c, axis=1), 1)
    assert np.linalg.norm(smooth_f - smooth_c) / np.linalg.norm(smooth_c) < 0.01
    # the radius is in frame units: scaling the body (the frame's scale) changes nothing
    assert np.allclose(feats(7.5 * p, t, "smooth_normals"), smooth_c, atol=1e-9)
    assert SMOOTH_NORMALS_RADIUS > 0
    with pytest.raises(ValueError, match="needs a triangle surface"):
        prepare_sample(Sample(points=torch.rand(20, 3, dtype=torch.float64)), "smooth_normals")


def test_smooth_normals_recipe_evaluates_the_inputs_at_separate_queries():
    # A function on the surface has a value at any query: prepare_sample gives it at the queries
    # (Sample.query_features) instead of leaving the model to interpolate between vertices.
    m = trimesh.creation.icosphere(2)
    p, t = np.asarray(m.vertices), np.asarray(m.faces)
    g = np.random.default_rng(0)
    off = p[:40] + 0.02 * g.standard_normal((40, 3))  # near the surface, off the vertices
    queries = np.concatenate([p[:10], off])
    s = Sample(points=torch.as_tensor(p), cells={"triangle": torch.as_tensor(t)}, queries=torch.as_tensor(queries))
    prepared = prepare_sample(s, "smooth_normals")[0]
    qf = prepared.query_features
    assert qf.shape == (50, 3) and prepared.features_at_queries is qf
    # at queries on vertices: the vertices' own features; off them: windowed_normals at the query
    assert torch.allclose(qf[:10], prepared.features[:10], atol=1e-12)
    scale = float(np.ptp(p, axis=0).max()) / 2  # the unit frame's half box side
    want = windowed_normals(p, t, off, SMOOTH_NORMALS_RADIUS * scale)
    assert np.allclose(qf[10:].numpy(), want, atol=1e-9)
    # per-vertex recipes have no value off the vertices; without separate queries the features serve
    assert prepare_sample(s, "normals")[0].query_features is None
    plain = prepare_sample(Sample(points=torch.as_tensor(p), cells={"triangle": torch.as_tensor(t)}),
                           "smooth_normals")[0]
    assert plain.query_features is None and plain.features_at_queries is plain.features


def test_sample_query_features_are_checked():
    pts = torch.rand(12, 3, dtype=torch.float64)
    q = torch.rand(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"query_features must have shape \(5, 2\)"):
        Sample(points=pts, features=torch.rand(12, 2), queries=q, query_features=torch.rand(4, 2))
    with pytest.raises(ValueError, match="the sample has no features"):
        Sample(points=pts, queries=q, query_features=torch.rand(5, 2))
    with pytest.raises(ValueError, match="query_features contains NaN"):
        Sample(points=pts, features=torch.rand(12, 2), queries=q, query_features=torch.full((5, 2), float("nan")))
    s = Sample(points=pts, features=torch.rand(12, 2), queries=q, query_features=torch.rand(5, 2))
    assert s.query_features.dtype == torch.float64 and s.to("cpu").query_features is not None
    assert Sample(points=pts, features=torch.rand(12, 2), queries=q).features_at_queries is None
