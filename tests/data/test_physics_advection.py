"""Time-dependent advection-diffusion family (issue 20): physics checks, caching, training windows."""

import numpy as np
import pytest
import torch

from pyengine.data.physics import (advection_diffusion2d, build_advection_diffusion_dataset, trajectory,
                                   trajectory_windows)
from pyengine.data.physics.advection_diffusion2d import KAPPA_RANGE, _nodal_gradient


def test_without_holes_the_flow_is_the_stream_and_bumps_drift_and_spread_exactly():
    """No holes: the potential flow is exactly uniform, and away from the square's edges each Gaussian bump
    moves with the stream and spreads as the free-space solution: variance w^2 + 2 kappa t, amplitude
    a w^2 / (w^2 + 2 kappa t)."""
    s = advection_diffusion2d(11, h=0.03, n_frames=11, dt=0.02, n_holes=(0, 0))
    U = np.array(s.metadata["stream"])
    b = s.features[:, :2].double().numpy()
    np.testing.assert_allclose(b, np.broadcast_to(U, b.shape), atol=1e-9)
    kappa = s.metadata["kappa"]
    assert KAPPA_RANGE[0] <= kappa <= KAPPA_RANGE[1]
    np.testing.assert_allclose(s.features[:, 2].numpy(), 2 * (kappa - KAPPA_RANGE[0]) / np.ptp(KAPPA_RANGE) - 1,
                               atol=1e-6)
    p = s.points.double().numpy()
    bumps = s.metadata["bumps"]
    t = 0.2

    def exact(t):
        out = np.zeros(p.shape[0])
        for c, w, a in zip(bumps["centres"], bumps["widths"], bumps["amplitudes"]):
            var = w * w + 2 * kappa * t
            out += a * w * w / var * np.exp(-((p - np.asarray(c) - U * t) ** 2).sum(1) / (2 * var))
        return out

    u = s.fields["u"].double().numpy()
    np.testing.assert_allclose(u[:, 0], exact(0.0), atol=1e-5)
    inner = (p.min(1) > 0.25) & (p.max(1) < 0.75)  # the edges' influence has not reached these nodes
    err = np.abs(u[inner, -1] - exact(t)[inner]).max()
    moved = np.abs(u[inner, -1] - u[inner, 0]).max()
    assert err < 0.05 * np.abs(u[:, 0]).max() and err < 0.2 * moved, (err, moved)


def test_holes_deflect_the_flow_and_the_solution_stays_bounded():
    s = advection_diffusion2d(5, h=0.05, n_frames=30, n_holes=(2, 2))
    holes = np.array(s.metadata["holes"])
    assert len(holes) == 2
    b = s.features[:, :2].numpy()
    U = np.array(s.metadata["stream"])
    assert np.abs(b - U).max() > 0.1 * np.linalg.norm(U)  # not the uniform stream near the holes
    u = s.fields["u"].numpy()
    assert np.isfinite(u).all()
    assert np.abs(u[:, -1]).max() <= 1.05 * np.abs(u[:, 0]).max()  # no growth (diffusion and outflow)


def test_nodal_gradient_is_exact_for_linear_fields():
    g = np.random.default_rng(0)
    pts = g.random((30, 2))
    from scipy.spatial import Delaunay

    tris = Delaunay(pts).simplices
    grad = _nodal_gradient(pts, tris, 2.0 * pts[:, 0] - 3.0 * pts[:, 1] + 1)
    np.testing.assert_allclose(grad, np.broadcast_to([2.0, -3.0], grad.shape), atol=1e-9)


def test_dataset_is_cached_and_seeded(tmp_path):
    kw = dict(h=0.12, n_frames=5, n_holes=(1, 1), workers=0, progress=False)
    a = build_advection_diffusion_dataset(2, seed=3, cache=tmp_path, **kw)
    files = sorted(tmp_path.rglob("*"))
    assert any(f.is_file() for f in files)
    b = build_advection_diffusion_dataset(3, seed=3, cache=tmp_path, **kw)  # extends: first two from the cache
    for x, y in zip(a, b):
        torch.testing.assert_close(x.fields["u"], y.fields["u"], rtol=0, atol=0)
    c = build_advection_diffusion_dataset(2, seed=4, cache=False, **kw)
    assert c[0].metadata["seed"] != a[0].metadata["seed"]


def test_windows_and_trajectory_layout():
    s = advection_diffusion2d(1, h=0.12, n_frames=9, n_holes=(1, 1))
    pts, frames, params = trajectory(s)
    assert frames.shape == (9, pts.shape[0], 1) and params.shape == (pts.shape[0], 3)
    w = trajectory_windows(s, 2)
    assert len(w) == 3  # t = 0, 2, 4 (each needs 4 frames: t = 6 would need 10)
    torch.testing.assert_close(w[1].features[:, :2], s.fields["u"][:, 2:4])
    torch.testing.assert_close(w[1].fields["u_next"], s.fields["u"][:, 4:6])
    torch.testing.assert_close(w[1].features[:, 2:], s.features)
    with pytest.raises(ValueError, match="n_frames"):
        advection_diffusion2d(1, n_frames=1)
    with pytest.raises(ValueError, match="no window"):
        trajectory_windows(s, 5)
