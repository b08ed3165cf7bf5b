"""Potential flow (gmsh + scikit-fem P2) against analytic solutions."""

import math

import numpy as np
import pytest
import torch
import trimesh

from pyengine.data import Sample
from pyengine.data.physics import AhmedBody, CarBody, Ellipsoid, potential_flow, sphere


def _rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _sphere_cp(points, direction):
    """Analytic Cp = 1 - 9/4 sin^2(theta) on a sphere, theta from the flow direction."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    cos = points @ d / np.linalg.norm(points, axis=1)
    return 1.0 - 2.25 * (1.0 - cos**2)


@pytest.fixture(scope="module")
def unit_sphere_flow():
    return potential_flow(sphere(1.0), volume=True)


def test_sphere_matches_analytic_cp(unit_sphere_flow):
    surf, _ = unit_sphere_flow
    assert isinstance(surf, Sample)
    p = surf.points.double().numpy()
    assert surf.num_points > 500
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-6)  # nodes lie on the true sphere
    err = _rel_l2(surf.fields["cp"].double().numpy(), _sphere_cp(p, (1, 0, 0)))
    assert err < 0.03, f"sphere Cp relative L2 error {err:.4f}"
    # Stagnation points (Cp = 1) and the equator (Cp = -5/4) within a few per cent.
    cp = surf.fields["cp"].double().numpy()
    assert cp.max() > 0.95 and abs(cp.min() + 1.25) < 0.1


def test_surface_is_the_closed_outward_body_boundary(unit_sphere_flow):
    surf, vol = unit_sphere_flow
    tri = surf.cells["triangle"].numpy()
    p = surf.points.double().numpy()
    mesh = trimesh.Trimesh(p, tri, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals: positive enclosed volume
    assert abs(mesh.volume - 4 / 3 * math.pi) < 0.02 * 4 / 3 * math.pi
    # Every surface node is a vertex of the volume mesh.
    volume_nodes = {tuple(x) for x in vol.points.double().numpy()}
    assert all(tuple(x) in volume_nodes for x in p)


def test_volume_velocity_is_free_stream_far_away(unit_sphere_flow):
    _, vol = unit_sphere_flow
    x = vol.points.double().numpy()
    u = vol.fields["velocity"].double().numpy()
    assert vol.cells["tetra"].shape[1] == 4 and vol.fields["phi"].shape == (vol.num_points,)
    r = np.linalg.norm(x, axis=1)
    far = r > 4.0
    # The dipole decays like r^-3: at r > 4 the perturbation is below ~1%.
    assert np.abs(u[far] - [1, 0, 0]).max() < 0.03
    # Velocity is tangential on the body: u . n ~ 0 at the surface nodes (n = radial direction).
    surf, _ = unit_sphere_flow
    ps, us = surf.points.double().numpy(), surf.fields["velocity"].double().numpy()
    un = np.sum(us * ps, axis=1) / np.linalg.norm(ps, axis=1)
    assert np.sqrt(np.mean(un**2)) < 0.05


def test_direction_and_scale_invariance():
    # A sphere of radius 2 in a flow along -z at speed 3: same Cp as a function of theta.
    s = potential_flow(sphere(2.0), velocity=(0.0, 0.0, -3.0))
    p = s.points.double().numpy()
    err = _rel_l2(s.fields["cp"].double().numpy(), _sphere_cp(p, (0, 0, -1)))
    assert err < 0.03, err
    assert s.metadata["body_radius"] == pytest.approx(2.0, rel=1e-3)


def test_prolate_spheroid_stagnation_symmetry_and_equator():
    a, b = 0.6, 0.25
    s = potential_flow(Ellipsoid(a, b, b), h_body=0.15)
    p = s.points.double().numpy()
    cp = s.fields["cp"].double().numpy()
    # Stagnation points at the noses: Cp ~ 1.
    for sign in (1, -1):
        i = np.argmin(np.linalg.norm(p - [sign * a, 0, 0], axis=1))
        assert cp[i] > 0.93, (sign, cp[i])
    # Potential flow is fore-aft symmetric: the mean Cp in slices at x and -x agrees.
    edges = np.linspace(-a, a, 13)
    slices = np.digitize(p[:, 0], edges[1:-1])
    means = np.array([cp[slices == k].mean() for k in range(12)])
    assert np.abs(means - means[::-1]).max() < 0.05, means  # Cp spans 1.35 here
    # Lamb's closed form for a prolate spheroid in axial flow: u_eq / U = 2 / (2 - alpha0).
    e = math.sqrt(1 - (b / a) ** 2)
    alpha0 = 2 * (1 - e * e) / e**3 * (0.5 * math.log((1 + e) / (1 - e)) - e)
    cp_eq = 1 - (2 / (2 - alpha0)) ** 2
    eq = np.abs(p[:, 0]) < 0.02
    assert eq.sum() > 10
    assert abs(cp[eq].mean() - cp_eq) < 0.05 * abs(cp_eq), (cp[eq].mean(), cp_eq)


def test_trimesh_body_from_file(tmp_path):
    path = tmp_path / "sphere.stl"
    trimesh.creation.icosphere(subdivisions=4, radius=1.0).export(path)
    s = potential_flow(str(path), h_body=0.12)
    p = s.points.double().numpy()
    err = _rel_l2(s.fields["cp"].double().numpy(), _sphere_cp(p, (1, 0, 0)))
    # The faceted input (2562 vertices) costs a little accuracy against the exact sphere.
    assert err < 0.04, err


def test_ahmed_body_runs_and_is_physical():
    s = potential_flow(AhmedBody(), h_body=0.12, h_box=2.0)
    cp = s.fields["cp"].numpy()
    assert np.all(cp <= 1.0 + 1e-6)  # |u|^2 >= 0
    # The front face centre is a stagnation point.
    p = s.points.numpy()
    i = np.argmin(np.linalg.norm(p - [-1.044 / 2, 0, 0], axis=1))
    assert cp[i] > 0.9
    assert s.metadata["body"]["kind"] == "ahmed"
    assert s.fields["velocity"].shape == (s.num_points, 3)


def test_car_body_surface_is_closed_and_physical():
    s = potential_flow(CarBody(), h_body=0.15, h_box=2.0)
    mesh = trimesh.Trimesh(s.points.double().numpy(), s.cells["triangle"].numpy(), process=False)
    assert mesh.is_watertight and mesh.volume > 0  # one closed body (box, cabin and wheels fused)
    cp = s.fields["cp"].numpy()
    assert cp.max() > 0.9 and np.all(cp <= 1.0 + 1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"h_body": -0.1}, "h_body"),
        ({"h_box": 0.0}, "h_box"),
        ({"box": 1.0}, "box"),
        ({"grading": float("nan")}, "grading"),
        ({"h_body": 2.0, "h_box": 1.0}, "h_body"),
        ({"velocity": (0, 0, 0)}, "velocity"),
        ({"velocity": (1, 0)}, "velocity"),
        ({"rtol": 2.0}, "rtol"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        potential_flow(sphere(1.0), **kwargs)


def test_bad_bodies_raise(tmp_path):
    open_surface = trimesh.creation.icosphere(2)
    open_surface.update_faces(np.arange(len(open_surface.faces)) > 3)
    with pytest.raises(ValueError, match="closed"):
        potential_flow(open_surface)
    with pytest.raises(ValueError, match="does not exist"):
        potential_flow(tmp_path / "missing.stl")
    with pytest.raises(ValueError, match="body must be"):
        potential_flow(torch.zeros(3))
