"""2D Darcy family: manufactured-solution convergence and sample sanity."""

import math

import numpy as np
import pytest

from pyengine.data.physics import darcy2d, mesh_domain, random_holes, solve_darcy

PI = math.pi


def exact(x):
    return np.sin(PI * x[0]) * np.sin(PI * x[1])


def kappa(x):
    return 1.0 + x[0] * x[1]


def source(x):
    # f = -div(kappa grad u) for u = sin(pi x) sin(pi y), kappa = 1 + x y (worked out by hand).
    gx = PI * np.cos(PI * x[0]) * np.sin(PI * x[1])
    gy = PI * np.sin(PI * x[0]) * np.cos(PI * x[1])
    return -(x[1] * gx + x[0] * gy) + 2 * PI**2 * kappa(x) * exact(x)


@pytest.mark.parametrize("order, min_ratio", [(1, 8.0), (2, 20.0)])
def test_manufactured_solution_converges(order, min_ratio):
    """Nodal error falls at the element order's rate on a holed domain (h -> h/4)."""
    holes = random_holes(np.random.default_rng(1))
    assert len(holes) >= 1
    errors = []
    for h in (0.08, 0.02):
        p, t, _ = mesh_domain(holes, h)
        u = solve_darcy(p, t, kappa, source, g=exact, holes="dirichlet", order=order)
        errors.append(np.abs(u - exact(p.T)).max())
    assert errors[0] / errors[1] > min_ratio, errors
    assert errors[1] < (1e-3 if order == 1 else 1e-5)


def test_mesh_has_the_holes():
    holes = np.array([[0.5, 0.5, 0.2, 0.1, 0.3]])
    p, t, on_outer = mesh_domain(holes, 0.03)
    a = p[t[:, 1]] - p[t[:, 0]]
    b = p[t[:, 2]] - p[t[:, 0]]
    area = 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()
    assert area == pytest.approx(1 - math.pi * 0.2 * 0.1, rel=2e-3)
    assert on_outer.sum() > 4 * int(1 / 0.03) - 4


def test_random_sample_is_physical_and_seeded():
    s = darcy2d(7)
    assert s.dim == 2 and s.features.shape == (s.num_points, 2)
    u = s.fields["u"].double().numpy()
    p = s.points.double().numpy()
    outer = (p.min(1) < 1e-9) | (p.max(1) > 1 - 1e-9)
    np.testing.assert_allclose(u[outer], 0.0, atol=1e-12)
    # Positive source, zero Dirichlet data: the solution is positive inside (maximum principle).
    assert u[~outer].min() > 0
    assert (s.features[:, 0] > 0).all()  # permeability
    again = darcy2d(7)
    assert np.array_equal(u, again.fields["u"].double().numpy())
    other = darcy2d(8)
    assert other.metadata["holes"] != s.metadata["holes"]


def test_bad_darcy_parameters_raise():
    with pytest.raises(ValueError, match="h"):
        mesh_domain(np.zeros((0, 5)), h=-0.1)
    with pytest.raises(ValueError, match="n_holes"):
        random_holes(np.random.default_rng(0), (3, 1))
    p, t, _ = mesh_domain(np.zeros((0, 5)), 0.2)
    with pytest.raises(ValueError, match="holes"):
        solve_darcy(p, t, kappa, source, holes="robin")
    with pytest.raises(ValueError, match="order"):
        solve_darcy(p, t, kappa, source, order=3)
