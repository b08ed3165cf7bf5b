"""Degenerate geometries give finite predictions or a one-line ValueError, never NaN (issue 14, finding 4)."""

import pytest
import torch

from pyengine.models import build

SMALL = {
    "gno": dict(hidden=8, layers=1, radius=0.35, kernel_hidden=(8,), max_neighbors=12),
    "gino": dict(hidden=8, grid=(6, 6, 6), modes=(3, 3, 3), fno_layers=1, kernel_hidden=(8,), max_neighbors=12),
    "gino-points": dict(variant="points", hidden=8, grid=(6, 6, 6), modes=(3, 3, 3), fno_layers=1, kernel_hidden=(8,),
                        max_neighbors=12),
    "gaot": dict(hidden=8, grid=(4, 4, 4), radii_cells=(1.0, 2.0), heads=2, dim=16, depth=1, vit_heads=2, patch=2,
                 max_neighbors=16),
    "rigno": dict(hidden=8, edge_dim=8, regional_ratio=0.3, processor_steps=1, max_neighbors=12),
}


def _model(key, d, **extra):
    cfg = {**SMALL[key], **extra}
    for k in ("grid", "modes"):
        if k in cfg:
            cfg[k] = cfg[k][:d]
    torch.manual_seed(0)
    return build(key.split("-")[0], 2, 1, d, **cfg)


def _geometry(kind, d, n=40):
    g = torch.Generator().manual_seed(1)
    r = torch.rand(n, d, generator=g) * 2 - 1
    if kind == "coincident":
        return r[:1].repeat(n, 1) + 0.25
    if kind == "flat":  # a plate: the last coordinate is constant
        r[:, -1] = 0.3
        return r
    if kind == "axis_line":  # collinear along x: every other axis has zero extent
        return torch.cat([torch.linspace(-1, 1, n)[:, None], torch.full((n, d - 1), 0.5)], 1)
    if kind == "diagonal_line":
        return torch.linspace(-1, 1, n)[:, None] * torch.ones(1, d)
    if kind == "two_clusters":  # duplicates: regional radii of 0
        return torch.cat([r[:1].repeat(n // 2, 1), r[1:2].repeat(n - n // 2, 1)])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["coincident", "flat", "axis_line", "diagonal_line", "two_clusters"])
@pytest.mark.parametrize("key", list(SMALL))
@pytest.mark.parametrize("d", [2, 3])
def test_degenerate_geometries_predict_finite_values(key, d, kind):
    model = _model(key, d).eval()
    pts = _geometry(kind, d)
    queries = torch.cat([pts[:5], pts[:5] + 0.1])  # on the geometry and off it
    with torch.no_grad():
        out = model(pts, torch.randn(pts.shape[0], 2), queries)
    assert out.shape == (10, 1) and bool(torch.isfinite(out).all()), f"{key} {kind} d={d}"


@pytest.mark.parametrize("key", ["gino", "gino-points", "gaot"])
def test_flat_geometry_without_box_padding(key):
    model = _model(key, 3, padding=0.0).eval()
    pts = _geometry("flat", 3)
    with torch.no_grad():
        assert bool(torch.isfinite(model(pts, torch.randn(pts.shape[0], 2))).all())


@pytest.mark.parametrize("key", list(SMALL))
def test_one_point(key):
    model = _model(key, 3).eval()
    pts = torch.tensor([[0.1, 0.2, 0.3]])
    if key == "rigno":
        with pytest.raises(ValueError, match=r"RIGNO needs at least density_k \+ 1 = 7 input points, got 1"):
            model(pts, torch.randn(1, 2))
        return
    with torch.no_grad():
        assert bool(torch.isfinite(model(pts, torch.randn(1, 2), torch.rand(4, 3))).all())


@pytest.mark.parametrize("key", list(SMALL))
def test_training_step_on_a_plate_has_finite_gradients(key):
    model = _model(key, 3)
    pts = _geometry("flat", 3)
    model(pts, torch.randn(pts.shape[0], 2)).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_regular_geometries_keep_their_box():
    # the guard widens zero-extent axes only: an ordinary cloud gets the same grid as before
    from pyengine.geometry import latent_grid
    from pyengine.models._box import box_grid, nonzero_box

    pts = torch.rand(30, 3)
    a, b = latent_grid(pts, (4, 4, 4), padding=0.05), box_grid(pts, (4, 4, 4), 0.05)
    assert torch.equal(a.points, b.points)
    lo, hi = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 5.0])
    wlo, whi = nonzero_box(lo, hi)
    assert torch.equal(wlo[[0, 2]], lo[[0, 2]]) and torch.equal(whi[[0, 2]], hi[[0, 2]])
    assert float(whi[1] - wlo[1]) == 3.0 and float(wlo[1] + whi[1]) / 2 == 1.0
