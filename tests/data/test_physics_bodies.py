"""Parametric OCC bodies: closed surfaces of the right size and shape, clear parameter errors."""

import math

import numpy as np
import pytest

from pyengine.data.physics import AhmedBody, CarBody, Ellipsoid, flow_bodies, random_body, sphere


def test_ellipsoid_surface_volume_and_extent():
    a, b, c = 0.6, 0.3, 0.2
    m = Ellipsoid(a, b, c).surface(mesh_size=0.05)
    assert m.is_watertight and m.volume > 0
    assert m.volume == pytest.approx(4 / 3 * math.pi * a * b * c, rel=0.02)
    np.testing.assert_allclose(m.bounds, [[-a, -b, -c], [a, b, c]], atol=2e-3)


def test_ahmed_volume_matches_construction():
    body = AhmedBody(length=1.0, height=0.3, width=0.4, slant_angle=30.0, fillet_radius=0.08, slant_length=0.2)
    m = body.surface(mesh_size=0.03)
    assert m.is_watertight
    L, H, W, r, ls = 1.0, 0.3, 0.4, 0.08, 0.2
    fillets = (1 - math.pi / 4) * r * r * (2 * W + 2 * H)  # four rounded front edges (corner overlaps ~ r^3)
    slant = 0.5 * ls * ls * math.tan(math.radians(30.0)) * W
    assert m.volume == pytest.approx(L * H * W - fillets - slant, rel=0.01)
    np.testing.assert_allclose(m.bounds, [[-L / 2, -W / 2, -H / 2], [L / 2, W / 2, H / 2]], atol=2e-3)
    # The slant lowers the rear roof: no surface point near the rear top edge.
    assert not np.any((m.vertices[:, 0] > L / 2 - 0.01) & (m.vertices[:, 2] > H / 2 - 0.05))


def test_square_back_without_fillet_is_a_box():
    m = AhmedBody(length=1.0, height=0.3, width=0.4, slant_angle=0.0, fillet_radius=0.0).surface(0.1)
    assert m.volume == pytest.approx(0.12, rel=1e-6)


def test_car_body_is_one_closed_solid():
    car = CarBody()
    m = car.surface(mesh_size=0.05)
    assert m.is_watertight and m.body_count == 1
    main_box = car.length * car.width * car.height
    assert main_box < m.volume < main_box + car.cabin_length * car.width * (car.cabin_height + 0.05) + 0.01


def test_random_bodies_are_seeded():
    a = flow_bodies(4, "mixed", seed=3)
    assert a == flow_bodies(4, "mixed", seed=3)
    assert a != flow_bodies(4, "mixed", seed=4)
    assert flow_bodies(2, "mixed", seed=3) == a[:2]  # shape i depends on (seed, i) only
    for kind in ("ellipsoid", "ahmed", "car"):
        rng = np.random.default_rng(0)
        assert random_body(kind, rng).kind == kind


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AhmedBody(slant_angle=50.0), "slant_angle"),
        (lambda: AhmedBody(slant_angle=-1.0), "slant_angle"),
        (lambda: AhmedBody(length=-1.0), "length"),
        (lambda: AhmedBody(fillet_radius=0.2), "fillet_radius"),
        (lambda: AhmedBody(slant_angle=45.0, slant_length=0.5), "slant"),
        (lambda: Ellipsoid(a=0.0), "a"),
        (lambda: sphere(-1.0), "a"),
        (lambda: CarBody(cabin_length=2.0), "cabin_length"),
        (lambda: CarBody(corner_radius=0.2), "corner_radius"),
        (lambda: CarBody(wheel_radius=0.5), "wheel_radius"),
        (lambda: random_body("boat", np.random.default_rng(0)), "kind"),
        (lambda: flow_bodies(0), "n"),
        (lambda: Ellipsoid().surface(mesh_size=-1.0), "mesh_size"),
    ],
)
def test_bad_body_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
