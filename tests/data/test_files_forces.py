"""Force coefficients from surface fields against analytic integrals (sphere, flat plate)."""

import math

import numpy as np
import pytest
import trimesh

from pyengine.data.files import FileDataset, ForceConfig, area_vectors, write_vtp
from pyengine.pipeline.forces import force_coefficients, force_metrics, format_force_table


def _sphere(radius=1.5, subdivisions=4):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(s.vertices), np.asarray(s.faces), float(s.volume)


def _lumped(points, tris):
    a = area_vectors(points, {"triangle": tris})
    out = np.zeros_like(points)
    for j in range(3):
        np.add.at(out, tris[:, j], a / 3)
    return out


def test_closed_surface_uniform_pressure_has_no_force():
    pts, tris, _ = _sphere()
    a = area_vectors(pts, {"triangle": tris})
    c = force_coefficients(a, {"p": np.full(len(a), 123.4)}, ForceConfig())
    assert all(abs(v) < 1e-10 for v in c.values())


def test_sphere_potential_flow_has_zero_drag_and_lift():
    # d'Alembert: Cp = 1 - 9/4 sin^2(theta) around a sphere integrates to no force
    pts, tris, _ = _sphere()
    for flow in ([1.0, 0, 0], [0.6, 0.8, 0]):
        d = np.array(flow) / np.linalg.norm(flow)
        cos = pts @ d / np.linalg.norm(pts, axis=1)
        cp = 1 - 9 / 4 * (1 - cos ** 2)
        c = force_coefficients(_lumped(pts, tris), {"cp": cp}, ForceConfig(pressure="cp", flow_direction=flow))
        assert abs(c["drag"]) < 1e-6 and abs(c["lift"]) < 1e-6 and abs(c["side"]) < 1e-6
        # the upstream half alone: -∫ Cp cos dA = -2 pi R^2 ∫_{-1}^{0} (1 - 9/4 (1 - c^2)) c dc = -2 pi R^2 / 16
        # (the suction near the equator outweighs the stagnation pressure)
        front = cos < 0
        c_half = force_coefficients(_lumped(pts, tris)[front], {"cp": cp[front]},
                                    ForceConfig(pressure="cp", flow_direction=flow))
        assert c_half["drag"] == pytest.approx(-2 * math.pi * 1.5 ** 2 / 16, rel=0.02)


def test_linear_pressure_integrates_to_buoyancy():
    # p = rho g (-z): the force -∮ p n dA equals rho g V upward (divergence theorem), exactly on the
    # polyhedron for vertex (lumped) and cell-centre (midpoint) quadrature alike
    pts, tris, vol = _sphere(radius=0.7)
    rho_g = 9.81 * 1000
    cfg = ForceConfig(dynamic_pressure=2.0, reference_area=0.5, lift_direction=(0, 0, 1))
    c = force_coefficients(_lumped(pts, tris), {"p": -rho_g * pts[:, 2]}, cfg)
    assert c["lift"] == pytest.approx(rho_g * vol / (2.0 * 0.5), rel=1e-10)
    centroids = pts[tris].mean(1)
    c2 = force_coefficients(area_vectors(pts, {"triangle": tris}), {"p": -rho_g * centroids[:, 2]}, cfg)
    assert c2["lift"] == pytest.approx(c["lift"], rel=1e-10)
    assert c["lift"] == pytest.approx(rho_g * 4 / 3 * math.pi * 0.7 ** 3, rel=0.01)  # the sphere itself
    assert abs(c["drag"]) < 1e-6 and abs(c["side"]) < 1e-6


def _plate(n=4, size=2.0, normal_axis=0):
    """An n x n quad plate of side `size` normal to `normal_axis`, its cells facing -axis."""
    u = np.linspace(0, size, n + 1)
    g = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    pts = np.zeros((len(g), 3))
    other = [a for a in range(3) if a != normal_axis]
    pts[:, other[0]], pts[:, other[1]] = g[:, 0], g[:, 1]
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    a = area_vectors(pts, {"quad": quads})
    if a[0, normal_axis] > 0:
        quads = quads[:, ::-1]
    return pts, quads


def test_flat_plate_pressure_drag_and_shear():
    pts, quads = _plate(normal_axis=0)  # facing the flow (-x)
    a = area_vectors(pts, {"quad": quads})
    np.testing.assert_allclose(a.sum(0), [-4.0, 0, 0], atol=1e-12)
    cfg = ForceConfig(dynamic_pressure=0.5 * 1.2 * 20 ** 2, reference_area=4.0)
    p0 = 240.0  # stagnation-like pressure on the face: Cd = p0 A / (q A_ref)
    c = force_coefficients(a, {"p": np.full(len(a), p0)}, cfg)
    assert c["drag"] == pytest.approx(p0 / cfg.dynamic_pressure) and abs(c["lift"]) < 1e-12
    # a plate along the flow feels only its wall shear: C_d = tau A / (q A_ref)
    pts, quads = _plate(normal_axis=2)
    a = area_vectors(pts, {"quad": quads})
    tau = np.tile([3.0, 0.0, 0.5], (len(a), 1))
    for sign in (1.0, -1.0):
        cfg = ForceConfig(shear="wss", shear_sign=sign, reference_area=4.0, dynamic_pressure=1.5)
        c = force_coefficients(a, {"p": np.zeros(len(a)), "wss": tau}, cfg)
        assert c["drag"] == pytest.approx(sign * 3.0 / 1.5) and c["lift"] == pytest.approx(sign * 0.5 / 1.5)
    with pytest.raises(ValueError, match="forces.shear 'tau' is not a predicted field"):
        force_coefficients(a, {"p": np.zeros(len(a))}, ForceConfig(shear="tau"))


def test_inward_wound_files_are_oriented_outward(tmp_path):
    pts, tris, vol = _sphere(radius=1.0, subdivisions=3)
    centroids = pts[tris].mean(1)
    p = -centroids[:, 2]
    write_vtp(tmp_path / "out.vtp", pts, {"triangle": tris}, cell_data={"p": p})
    write_vtp(tmp_path / "in.vtp", pts, {"triangle": tris[:, ::-1]}, cell_data={"p": p})
    ds = FileDataset({"path": str(tmp_path), "fields": ["p"], "test": 1})
    cfg = ForceConfig()
    (a_in, a_out) = ds.arrays(0), ds.arrays(1)
    c_in, c_out = force_coefficients(a_in.area, a_in.fields, cfg), force_coefficients(a_out.area, a_out.fields, cfg)
    assert c_in["lift"] == pytest.approx(vol, rel=1e-9) and c_out["lift"] == pytest.approx(vol, rel=1e-9)
    # the normals fed to the model point outward too
    assert (np.einsum("ij,ij->i", a_in.features[:, :3], a_in.points) > 0).all()


def test_force_metrics_r2_and_spearman():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    t = rng.normal(0.3, 0.05, 12)
    p = t + rng.normal(0, 0.01, 12)
    true = [{"drag": a, "lift": 0.1 * a} for a in t]
    pred = [{"drag": b, "lift": 0.1 * a + 0.01} for a, b in zip(t, p)]
    m = force_metrics(true, pred)
    assert m["drag"]["mean_abs_err"] == pytest.approx(np.abs(p - t).mean())
    assert m["drag"]["max_abs_err"] == pytest.approx(np.abs(p - t).max())
    assert m["drag"]["r2"] == pytest.approx(1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum())
    assert m["drag"]["spearman"] == pytest.approx(spearmanr(t, p).statistic)
    assert m["lift"]["max_abs_err"] == pytest.approx(0.01) and "r2" not in m["lift"]
    one = force_metrics(true[:1], pred[:1])
    assert one["drag"]["r2"] is None and one["drag"]["spearman"] is None
    table = format_force_table([f"s{i}" for i in range(12)], true, pred, m)
    assert "Cd true" in table and f"R2 {m['drag']['r2']:.3f}" in table and len(table.splitlines()) == 12 + 5
