"""Time-conditioned GAOT / RIGNO on the advection-diffusion trajectories (issue 20): RIGNO's paper
conditioning (``time_conditioning="norm"``), the :class:`TimeStepper` that rolls them out, and a short
pushforward fit through :func:`fit_rollout`. The 20-step rollout table is ``python -m bench.rollout``."""

import pytest
import torch

from pyengine.models import build
from pyengine.models.mppde import TimeStepper, fit_rollout

RIGNO = dict(hidden=16, edge_dim=8, regional_ratio=0.3, processor_steps=2, max_neighbors=12)
GAOT = dict(hidden=16, grid=(8, 8), radii_cells=(1.0, 2.0), dim=32, depth=2, vit_heads=2, patch=2,
            encoder_kernel_hidden=(16,), decoder_kernel_hidden=(16,), projection_hidden=16)


def _cloud(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g) * 2 - 1, torch.randn(n, 2, generator=g)


def test_rigno_norm_conditioning_uses_time_and_lead_time():
    pts, feats = _cloud(150, 0)
    torch.manual_seed(0)
    m = build("rigno", 2, 1, 2, time_conditioned=True, time_conditioning="norm", **RIGNO)
    torch.manual_seed(0)
    m2 = build("rigno", 2, 1, 2, time_conditioned=True, time_conditioning="norm", **RIGNO)
    assert m.time_embed is None and len(m.cond_norms) == RIGNO["processor_steps"] + 1
    a = m(pts, feats, time=0.0, lead_time=0.1)
    assert a.shape == (150, 1) and torch.isfinite(a).all()
    torch.testing.assert_close(a, m2(pts, feats, time=0.0, lead_time=0.1), rtol=0, atol=0)
    # time is an input feature: it changes the output at once
    assert not torch.allclose(a, m(pts, feats, time=0.7, lead_time=0.1), rtol=0, atol=1e-7)
    # the lead time enters through the conditional norms, identity at init ...
    torch.testing.assert_close(a, m(pts, feats, time=0.0, lead_time=0.5))
    # ... and acts once their modulation is trained (here: set)
    with torch.no_grad():
        for norm in m.cond_norms:
            norm.modulation.weight.normal_()
    a = m(pts, feats, time=0.0, lead_time=0.1)
    assert not torch.allclose(a, m(pts, feats, time=0.0, lead_time=0.5), rtol=0, atol=1e-6)
    a.square().sum().backward()
    assert all(float(n.modulation.weight.grad.abs().sum()) > 0 for n in m.cond_norms)
    with pytest.raises(ValueError, match="time"):
        m(pts, feats)
    with pytest.raises(ValueError, match="time_conditioning"):
        build("rigno", 2, 1, 2, time_conditioned=True, time_conditioning="film", **RIGNO)
    # the default (embedding) is unchanged and still refuses time without time_conditioned
    plain = build("rigno", 2, 1, 2, **RIGNO)
    with pytest.raises(ValueError, match="time_conditioned=False"):
        plain(pts, feats, time=0.0, lead_time=0.1)


@pytest.mark.parametrize("stepping", ["output", "residual", "derivative"])
def test_time_stepper_steps_and_rollout(stepping):
    pts, _ = _cloud(120, 1)
    state, static = torch.randn(120, 1), torch.randn(120, 2)
    torch.manual_seed(0)
    model = build("rigno", 3, 1, 2, time_conditioned=True, time_conditioning="norm", **RIGNO)
    stepper = TimeStepper(model, 0.05, stepping)
    out = model(pts, torch.cat([state, static], 1), time=0.1, lead_time=0.05)
    expect = {"output": out, "residual": state + out, "derivative": state + 0.05 * out}[stepping]
    torch.testing.assert_close(stepper.step(pts, state, static, time=0.1), expect)
    frames = stepper.rollout(pts, state, 4, params=static, time=0.1)
    assert frames.shape == (4, 120, 1) and torch.isfinite(frames).all()
    # frame k is the k-th step from time 0.1 + (k - 1) dt
    with torch.no_grad():
        s = state
        for k in range(4):
            s = stepper.step(pts, s, static, time=0.1 + k * 0.05)
            torch.testing.assert_close(frames[k], s)


def test_time_stepper_errors():
    with pytest.raises(ValueError, match="time_conditioned=True"):
        TimeStepper(build("rigno", 2, 1, 2, **RIGNO), 0.1)
    model = build("rigno", 2, 1, 2, time_conditioned=True, **RIGNO)
    with pytest.raises(ValueError, match="dt"):
        TimeStepper(model, 0.0)
    with pytest.raises(ValueError, match="stepping"):
        TimeStepper(model, 0.1, "euler")
    stepper = TimeStepper(model, 0.1)
    pts, _ = _cloud(50, 2)
    with pytest.raises(ValueError, match="static"):
        stepper.rollout(pts, torch.randn(50, 1), 2)
    with pytest.raises(ValueError, match="history"):
        stepper.rollout(pts, torch.randn(50, 2), 2, params=torch.randn(50, 1))
    with pytest.raises(TypeError, match="TimeStepper"):
        fit_rollout(model, [], steps=1)


@pytest.mark.parametrize("name", ["gaot", "rigno"])
def test_pushforward_fit_of_time_conditioned_models(name):
    """fit_rollout trains a time-conditioned GAOT / RIGNO through the TimeStepper: the one-step error on
    the training trajectories ends below both the untrained model's and persistence's (RIGNO, whose
    regional nodes are coarser than the mesh, learns more slowly at this size: a weaker bound)."""
    from pyengine.data.physics import advection_diffusion2d, trajectory

    traj = [trajectory(advection_diffusion2d(s, h=0.1, n_frames=12, n_holes=(1, 1))) for s in (0, 1)]
    torch.manual_seed(0)
    cfg = dict(RIGNO, time_conditioning="norm") if name == "rigno" else GAOT
    stepper = TimeStepper(build(name, 1 + 3, 1, 2, time_conditioned=True, **cfg), 0.02, rescale=name == "rigno")
    # GAOT's bound was 0.5 until its statistical embedding gained the official final ReLU (issue 19),
    # which slows this 120-step fit to 0.54 of the untrained error; 0.7 still asks for a clear gain.
    lr, bound = (1e-2, 0.8) if name == "rigno" else (3e-3, 0.7)

    def one_step_mse(persistence=False):
        errs = []
        with torch.no_grad():
            for pts, frames, params in traj:
                for t in range(frames.shape[0] - 1):
                    pred = frames[t] if persistence else stepper.step(pts, frames[t], params, time=0.02 * t)
                    errs.append(float((pred - frames[t + 1]).square().mean()))
        return sum(errs) / len(errs)

    before = one_step_mse()
    losses = fit_rollout(stepper, traj, steps=120, lr=lr, max_unroll=1, seed=0)
    assert len(losses) == 120 and all(l == l for l in losses)
    after = one_step_mse()
    assert after < bound * before and after < bound * one_step_mse(persistence=True), (before, after)


def test_time_stepper_rescale_is_scale_equivariant():
    pts, _ = _cloud(90, 3)
    state, static = torch.randn(90, 1, dtype=torch.float64), torch.randn(90, 3, dtype=torch.float64)
    model = build("rigno", 4, 1, 2, time_conditioned=True, time_conditioning="norm", **RIGNO).double()
    stepper = TimeStepper(model, 0.02, rescale=True).eval()
    with torch.no_grad():
        a = stepper.step(pts.double(), state, static, time=0.1)
        b = stepper.step(pts.double(), 6.5 * state, static, time=0.1)
        torch.testing.assert_close(b, 6.5 * a, rtol=1e-9, atol=1e-12)
        assert torch.isfinite(stepper.step(pts.double(), torch.zeros_like(state), static)).all()


@pytest.mark.parametrize("name", ["mppde", "rigno"])
def test_relative_loss_is_the_error_over_persistence(name):
    """fit_rollout(loss="relative") is the MSE divided by the mean square of the true change over the
    drawn step (persistence's MSE on that draw): a model that repeats the last frame scores exactly 1."""
    import random

    g = torch.Generator().manual_seed(4)
    pts = torch.rand(40, 2, generator=g)
    frames = torch.cumsum(0.1 * torch.randn(9, 40, 1, generator=g, dtype=torch.float64), 0).float() + 1.0
    params = torch.randn(40, 3, generator=g)
    torch.manual_seed(0)
    if name == "mppde":
        model = build("mppde", 2 * 1 + 3, 2, 2, hidden=8, layers=1, radius=0.4, time_window=2, dt=0.02)
        K = 2
    else:
        model = TimeStepper(build("rigno", 4, 1, 2, time_conditioned=True, time_conditioning="norm", **RIGNO), 0.02)
        K = 1
    mse = fit_rollout(model, [(pts, frames, params)], steps=1, lr=0.0, max_unroll=0, seed=3)[0]
    rel = fit_rollout(model, [(pts, frames, params)], steps=1, lr=0.0, max_unroll=0, seed=3, loss="relative")[0]
    rng = random.Random(3)  # fit_rollout's draws: trajectory, unroll count, start
    rng.randrange(1), rng.randint(0, 0)
    t = rng.randint(0, frames.shape[0] - 2 * K)
    target, last = frames[t + K:t + 2 * K], frames[t + K - 1:t + K]
    change = float((target - last).square().mean())
    assert rel == pytest.approx(mse / change, rel=1e-5)
    assert abs(rel - 1.0) > 1e-3  # an untrained model is not persistence: the check above is not vacuous
    with pytest.raises(ValueError, match="loss must be"):
        fit_rollout(model, [(pts, frames, params)], steps=1, loss="l1")
