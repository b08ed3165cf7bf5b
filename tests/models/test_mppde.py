"""MP-PDE (issue 20): shapes, exact message-passing semantics, gradients, checkpoints, degenerate
inputs, and a stable 20-step rollout on the generated advection-diffusion trajectories."""

import pytest
import torch

from pyengine.models import MPPDE, build
from pyengine.models.mppde import fit_rollout
from pyengine.ops import radius_search

SMALL = dict(hidden=16, layers=2, time_window=2, radius=0.3, max_neighbors=8, dt=0.1)


def _cloud(n, d, seed, channels):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 2 - 1, torch.randn(n, channels, generator=g)


@pytest.mark.parametrize("d", [2, 3])
def test_shapes_determinism_gradients(d):
    pts, feats = _cloud(97, d, 0, 2 * 1 + 3)  # K = 2 frames of C = 1, P = 3 parameters
    torch.manual_seed(1)
    m1 = build("mppde", 5, 2, d, **SMALL)
    torch.manual_seed(1)
    m2 = build("mppde", 5, 2, d, **SMALL)
    out = m1(pts, feats)
    assert out.shape == (97, 2) and torch.isfinite(out).all()
    torch.testing.assert_close(out, m2(pts, feats), rtol=0, atol=0)
    queries = torch.rand(31, d) * 2 - 1
    assert m1(pts, feats, queries).shape == (31, 2)
    out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m1.parameters())
    assert all(float(p.grad.abs().sum()) > 0 for p in m1.parameters())


def _reference_processor(model, pts, feats, *, positions: bool, normalize: bool):
    """The encoder and processor written out per edge (plain PyTorch): returns ``(h, rows, col, deg, x)``.
    ``positions``: the encoder also sees x; ``normalize``: per-channel normalisation after each layer."""
    c = model.config
    u, theta = feats[:, :model.u_dim], feats[:, model.u_dim:]
    row_ptr, col = radius_search(pts, pts, c.radius, max_neighbors=c.max_neighbors)
    rows = torch.repeat_interleave(torch.arange(pts.shape[0]), row_ptr.diff())
    deg = row_ptr.diff().clamp_min(1).to(u.dtype)
    x = pts / c.radius
    h = model.encoder(torch.cat([u, x, theta] if positions else [u, theta], 1))
    act = torch.nn.SiLU()
    for layer in model.processor:
        hid, d, du, p = layer.dims
        a_h, a_x, a_u, a_t = layer.a.weight.split([hid, d, du, p], 1)
        pre = (h[rows] @ a_h.T + h[col] @ layer.b.weight.T + (x[rows] - x[col]) @ a_x.T
               + (u[rows] - u[col]) @ a_u.T + theta[rows] @ a_t.T + layer.a.bias)
        agg = torch.zeros(h.shape[0], hid, dtype=h.dtype).index_add_(0, rows, layer.msg_out(act(pre))) / deg[:, None]
        h = h + layer.update(torch.cat([h, agg, theta], 1))
        if normalize:
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
    return h, rows, col, deg, x


def _reference_forward(model, pts, feats):
    """The paper's equations written out per edge (float64, plain PyTorch), for comparison."""
    c = model.config
    u = feats[:, :model.u_dim]
    h, *_ = _reference_processor(model, pts, feats, positions=True, normalize=True)
    dec = model.decoder(h)
    last = u[:, -model.channels:].repeat(1, c.time_window)
    return last + model._shift * dec


def test_fused_layers_equal_the_papers_equations():
    pts, feats = _cloud(83, 2, 3, 2 + 2)
    torch.manual_seed(2)
    model = build("mppde", 4, 2, 2, **SMALL).double()
    pts, feats = pts.double(), feats.double()
    torch.testing.assert_close(model(pts, feats), _reference_forward(model, pts, feats), rtol=1e-9, atol=1e-10)
    # translation invariance of the messages (positions enter only through differences... and the encoder)
    model.encoder[0].weight.data[:, 2:4] = 0  # remove the encoder's absolute-position input
    shifted = model(pts + torch.tensor([3.0, -1.5], dtype=torch.float64), feats)
    torch.testing.assert_close(shifted, model(pts, feats), rtol=1e-9, atol=1e-10)


def test_queries_between_nodes_and_chunked_prediction():
    from pyengine.pipeline.predict import predict_chunked

    pts, feats = _cloud(120, 3, 4, 3)
    model = build("mppde", 3, 1, 3, hidden=8, layers=1, radius=0.4).eval()
    with torch.no_grad():
        at_nodes = model(pts, feats)
        # the same points as a different tensor take the interpolation path and give the node values
        torch.testing.assert_close(model(pts, feats, pts.clone()), at_nodes, rtol=0, atol=0)
        q = torch.rand(77, 3) * 2 - 1
        full = model(pts, feats, q)
    torch.testing.assert_close(predict_chunked(model, pts, feats, q, chunk_size=20), full, rtol=1e-6, atol=1e-7)


def test_config_and_input_errors_are_one_line():
    with pytest.raises(ValueError, match="time_window"):
        build("mppde", 4, 3, 2, time_window=2)  # 3 outputs are not 2 x C
    with pytest.raises(ValueError, match="in_channels"):
        build("mppde", 1, 2, 2, time_window=2)
    with pytest.raises(ValueError, match="radius"):
        build("mppde", 2, 1, 2, radius=0.0)
    with pytest.raises(ValueError, match="message_layers"):
        build("mppde", 2, 1, 2, message_layers=4)
    with pytest.raises(ValueError, match="norm"):
        build("mppde", 2, 1, 2, norm="batch")
    model = build("mppde", 2, 1, 2, hidden=8, layers=1)
    pts, feats = _cloud(20, 2, 0, 2)
    with pytest.raises(ValueError, match="autonomous"):
        model(pts, feats, time=0.0, lead_time=0.1)
    with pytest.raises(ValueError, match="history"):
        model.rollout(pts, feats, 3)
    with pytest.raises(ValueError, match="steps"):
        model.rollout(pts, feats[:, :1], 0, params=feats[:, 1:])
    # per-point quadrature weights from the shared base are accepted and ignored
    torch.testing.assert_close(model(pts, feats, weights=torch.rand(20)), model(pts, feats))


@pytest.mark.parametrize("kind", ["single", "coincident", "collinear", "isolated"])
def test_degenerate_geometries_finite(kind):
    g = torch.Generator().manual_seed(0)
    if kind == "single":
        pts = torch.rand(1, 2, generator=g)
    elif kind == "coincident":
        pts = torch.full((12, 2), 0.3)
    elif kind == "collinear":
        pts = torch.cat([torch.linspace(0, 1, 15)[:, None], torch.zeros(15, 1)], 1)
    else:  # no node has a neighbour but itself
        pts = torch.rand(10, 2, generator=g) * 100
    model = build("mppde", 2, 1, 2, hidden=8, layers=2, radius=0.1).eval()
    with torch.no_grad():
        out = model(pts, torch.randn(pts.shape[0], 2, generator=g), torch.cat([pts, pts + 0.05]))
    assert out.shape == (2 * pts.shape[0], 1) and torch.isfinite(out).all()


def test_checkpoint_through_the_trainer(tmp_path):
    from pyengine.data.physics import advection_diffusion2d, trajectory_windows
    from pyengine.pipeline.checkpoint import load_model
    from pyengine.pipeline.config import TrainConfig
    from pyengine.pipeline.train import Trainer

    sample = advection_diffusion2d(3, h=0.1, n_frames=8, n_holes=(1, 1))
    windows = trajectory_windows(sample, 2)
    torch.manual_seed(0)
    model = build("mppde", 2 + 3, 2, 2, hidden=8, layers=1, time_window=2, radius=0.2, dt=0.02)
    trainer = Trainer(model, windows, fields=["u_next"], config=TrainConfig(epochs=2, batch_size=2, progress=False),
                      out_dir=tmp_path)
    history = trainer.fit()
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    loaded, payload = load_model(tmp_path / "model.pt")
    assert isinstance(loaded, MPPDE) and payload["family"] == "mppde"
    s = windows[0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(s.points, s.features), model.eval()(s.points, s.features))


def test_quick_fit_reduces_loss():
    """A short pushforward training brings the one-step error on the training windows well below
    persistence (the model with a zero decoder: u_{t+1} = u_t)."""
    from pyengine.data.physics import advection_diffusion2d, trajectory

    traj = [trajectory(advection_diffusion2d(s, h=0.1, n_frames=12, n_holes=(1, 1))) for s in (0, 1)]
    torch.manual_seed(0)
    model = build("mppde", 1 + 3, 1, 2, hidden=16, layers=2, radius=0.15, dt=0.02)

    def one_step_mse(persistence=False):
        return _one_step_mse(model, traj, persistence)

    before = one_step_mse()
    losses = fit_rollout(model, traj, steps=150, lr=3e-3, max_unroll=1, seed=0)
    assert len(losses) == 150 and all(l == l for l in losses)
    after = one_step_mse()
    assert after < 0.4 * before and after < 0.4 * one_step_mse(persistence=True), (before, after)


def test_rescale_option_is_scale_equivariant():
    """rescale=True: scaling the state scales the prediction (exact for linear PDEs); constant fields stay finite."""
    pts, feats = _cloud(90, 2, 8, 1 + 2)
    model = build("mppde", 3, 1, 2, hidden=8, layers=2, radius=0.3, rescale=True).double().eval()
    pts, feats = pts.double(), feats.double()
    with torch.no_grad():
        out = model(pts, feats)
        scaled = model(pts, torch.cat([7.5 * feats[:, :1], feats[:, 1:]], 1))
        torch.testing.assert_close(scaled, 7.5 * out, rtol=1e-10, atol=1e-12)
        flat = model(pts, torch.cat([torch.ones(90, 1, dtype=torch.float64), feats[:, 1:]], 1))
    assert torch.isfinite(flat).all()


def test_rollout_is_stable_and_beats_persistence_and_the_decay_oracle():
    """Trained with the pushforward trick on a dozen generated trajectories, 20-call rollouts on unseen
    trajectories stay bounded and end well below both persistence (repeating the initial frame) and the
    "decay only" oracle (the best multiple c_k u_0 of the initial frame, fitted to the truth: all a model that
    learns no transport can reach). Summed over the 4 test trajectories, at 20 frames (2026-12-06): the stencil
    configuration reached 0.62 x the oracle (0.59 and 0.73 with training seeds 1 and 2), the paper's configuration
    (MLP decoder, instance norm, positions; same loss and inputs) 0.955 x."""
    from pyengine.data.physics import advection_diffusion2d, trajectory

    kw = dict(h=0.08, n_frames=24, n_holes=(1, 2))
    unit = torch.tensor([1 / 0.35, 1 / 0.35, 1.0])  # the velocity in units of the mean stream speed, as bench.rollout

    def traj(seed):
        pts, frames, params = trajectory(advection_diffusion2d(seed, **kw))
        return pts, frames, params * unit

    train = [traj(s) for s in range(12)]
    torch.manual_seed(0)
    model = build("mppde", 1 + 3, 1, 2, hidden=32, layers=3, radius=0.13, max_neighbors=12, dt=0.02, rescale=True,
                  decoder="stencil", norm="none", positions=False)
    fit_rollout(model, train, steps=400, lr=2e-3, max_unroll=2, seed=0, loss="relative")
    errs, persists, oracles = [], [], []
    for seed in (100, 101, 102, 103):
        pts, frames, params = traj(seed)
        pred = model.rollout(pts, frames[0], 20, params=params)  # frames 1..20
        assert pred.shape == (20, pts.shape[0], 1) and torch.isfinite(pred).all()
        true, u0 = frames[1:21].flatten(1), frames[0].flatten()
        err = (pred.flatten(1) - true).norm(dim=1) / true.norm(dim=1)
        assert float(err.max()) < 1.0, err  # bounded: no blow-up along the rollout
        errs.append(float(err[-1]))
        persists.append(float((u0 - true[-1]).norm() / true[-1].norm()))
        oracles.append(float(((true[-1] @ u0) / (u0 @ u0) * u0 - true[-1]).norm() / true[-1].norm()))
    assert sum(errs) < 0.85 * sum(oracles) and sum(errs) < 0.7 * sum(persists), (errs, oracles, persists)


# -- decoder="cnn": the paper's 1D CNN over the hidden vector -------------------------------------------------------
def test_cnn_decoder_shapes_paper_strides_and_errors():
    from pyengine.models.mppde import _CNNDecoder

    # hidden = 128: the paper's strides for K = 20, 25, 50; exactly K outputs per channel, frame-major
    for K, stride in ((20, 4), (25, 3), (50, 2)):
        dec = _CNNDecoder(128, K, 2, "silu")
        assert dec.conv1.stride == (stride,)
        h = torch.randn(5, 128)
        out = dec(h)
        assert out.shape == (5, 2 * K)
        # frame-major: entry k*C + c is channel c of frame k, i.e. conv2's output (N, C, K) transposed
        raw = dec.conv2(dec.act(dec.conv1(h.unsqueeze(1))))
        torch.testing.assert_close(out.reshape(5, K, 2), raw.transpose(1, 2))
    pts, feats = _cloud(64, 2, 5, 2 * 2 + 1)  # K = 2, C = 2, P = 1
    torch.manual_seed(0)
    a = build("mppde", 5, 4, 2, hidden=16, layers=2, time_window=2, radius=0.4, decoder="cnn")
    torch.manual_seed(0)
    b = build("mppde", 5, 4, 2, hidden=16, layers=2, time_window=2, radius=0.4, decoder="cnn")
    out = a(pts, feats)
    assert out.shape == (64, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out, b(pts, feats), rtol=0, atol=0)
    with pytest.raises(ValueError, match="decoder"):
        build("mppde", 2, 1, 2, decoder="conv")
    with pytest.raises(ValueError, match="hidden >= time_window"):
        build("mppde", 25, 25, 2, hidden=20, time_window=25, decoder="cnn")


def test_cnn_decoder_quick_fit_reduces_loss():
    """decoder='cnn' trains like the MLP decoder: one-step error well below persistence after a short fit."""
    from pyengine.data.physics import advection_diffusion2d, trajectory

    traj = [trajectory(advection_diffusion2d(s, h=0.1, n_frames=12, n_holes=(1, 1))) for s in (0, 1)]
    torch.manual_seed(0)
    model = build("mppde", 1 + 3, 1, 2, hidden=16, layers=2, radius=0.15, dt=0.02, decoder="cnn")

    def one_step_mse(persistence=False):
        return _one_step_mse(model, traj, persistence)

    before = one_step_mse()
    fit_rollout(model, traj, steps=150, lr=3e-3, max_unroll=1, seed=0)
    after = one_step_mse()
    assert after < 0.4 * before and after < 0.4 * one_step_mse(persistence=True), (before, after)


def _one_step_mse(model, traj, persistence=False):
    """Mean one-step squared error of model.step over the trajectories' frame pairs
    (persistence=True: of repeating the current frame, the baseline to beat)."""
    errs = []
    with torch.no_grad():
        for pts, frames, params in traj:
            for t in range(frames.shape[0] - 1):
                pred = frames[t] if persistence else model.step(pts, frames[t], params)
                errs.append(float((pred - frames[t + 1]).square().mean()))
    return sum(errs) / len(errs)


# -- decoder="stencil" (2026-12-06): increments linear in the last frame, learned stencils x per-node coefficients ---
STENCIL = dict(hidden=12, layers=2, radius=0.35, max_neighbors=10, decoder="stencil", norm="none", positions=False)


def _stencil_reference(model, pts, feats):
    """The stencil model written out per edge (float64, plain PyTorch): processor without normalisation, then
    ``d_{i,k,c} = sum_m a_{k,c,m}(h_i, theta_i) mean_j w_m(h_i, x_i - x_j, h_j) (u_{j,c} - u_{i,c}) / dt``."""
    c = model.config
    u, theta = feats[:, :model.u_dim], feats[:, model.u_dim:]
    h, rows, col, deg, x = _reference_processor(model, pts, feats, positions=False, normalize=False)
    act = torch.nn.SiLU()
    dec = model.decoder
    hid, d = dec.dims
    a_h, a_x = dec.a.weight.split([hid, d], 1)
    w = dec.out(act(h[rows] @ a_h.T + (x[rows] - x[col]) @ a_x.T + h[col] @ dec.b.weight.T + dec.a.bias))  # (E, M)
    n, C, K = pts.shape[0], model.channels, c.time_window
    last = u[:, -C:]
    g = torch.zeros(n, dec.m, C, dtype=u.dtype).index_add_(0, rows, w[:, :, None] * (last[col] - last[rows])[:, None])
    g = g / deg[:, None, None]
    a = dec.coef(torch.cat([h, theta], 1)).reshape(n, K, dec.m, C)
    incr = torch.einsum("nkmc,nmc->nkc", a, g).reshape(n, K * C) / c.dt
    return last.repeat(1, K) + model._shift * incr


@pytest.mark.parametrize("window", [1, 3])
def test_stencil_decoder_equals_its_equations_and_starts_at_persistence(window):
    C, P = 2, 3
    pts, feats = _cloud(83, 2, 11, window * C + P)
    pts, feats = pts.double(), feats.double()
    torch.manual_seed(0)
    model = build("mppde", window * C + P, window * C, 2, time_window=window, dt=0.1, **STENCIL).double()
    last = feats[:, (window - 1) * C:window * C].repeat(1, window)
    # zero coefficients at initialisation: the untrained model is persistence, exactly
    torch.testing.assert_close(model(pts, feats), last, rtol=0, atol=0)
    torch.nn.init.normal_(model.decoder.coef[-1].weight)
    torch.nn.init.normal_(model.decoder.coef[-1].bias)
    out = model(pts, feats)
    assert not torch.allclose(out, last)
    torch.testing.assert_close(out, _stencil_reference(model, pts, feats), rtol=1e-9, atol=1e-10)
    # no absolute positions: a shifted cloud gives the same prediction
    torch.testing.assert_close(model(pts + 3.0, feats), out, rtol=1e-9, atol=1e-10)
    # linear in the state with rescale on: the increments scale with u (and constant fields do not move)
    model.config.rescale = True
    scaled = torch.cat([4.0 * feats[:, :window * C], feats[:, window * C:]], 1)
    torch.testing.assert_close(model(pts, scaled), 4.0 * model(pts, feats), rtol=1e-9, atol=1e-10)
    const = torch.cat([torch.full((83, window * C), 2.5, dtype=torch.float64), feats[:, window * C:]], 1)
    torch.testing.assert_close(model(pts, const), const[:, :window * C], rtol=0, atol=1e-9)
    # gradients reach every parameter once the coefficients are non-zero
    model(pts, feats).square().sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_stencil_and_norm_options_errors():
    with pytest.raises(ValueError, match="decoder"):
        build("mppde", 2, 1, 2, decoder="stencils")
    with pytest.raises(ValueError, match="norm"):
        build("mppde", 2, 1, 2, norm="group")
    pts, feats = _cloud(40, 2, 3, 2)
    for norm in ("none", "layer", "instance"):  # the three normalisations run, positions on or off
        for positions in (True, False):
            out = build("mppde", 2, 1, 2, hidden=8, layers=2, norm=norm, positions=positions, decoder="stencil")(pts, feats)
            assert out.shape == (40, 1) and torch.isfinite(out).all()


def _advected_bump(seed, m=13, frames=14, dt=0.05, speed=0.6):
    """Exact advection-diffusion of a Gaussian bump on a jittered m x m grid: uniform velocity b of random
    direction, diffusivity kappa in [0.002, 0.01]; params = [b / speed, kappa scaled to [-1, 1]]."""
    g = torch.Generator().manual_seed(seed)
    ax = (torch.arange(m) + 0.5) / m
    pts = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    pts = pts + (torch.rand(pts.shape, generator=g) - 0.5) * 0.4 / m
    ang = torch.rand(1, generator=g) * 2 * torch.pi
    b = speed * torch.cat([torch.cos(ang), torch.sin(ang)])
    kappa = 0.002 + 0.008 * torch.rand(1, generator=g)
    start = 0.5 - 0.3 * b / speed + 0.1 * (torch.rand(2, generator=g) - 0.5)  # upstream: the bump crosses the middle
    amp = (0.5 + torch.rand(1, generator=g)) * (1 if seed % 2 else -1)
    t = torch.arange(frames) * dt
    var = 0.1 ** 2 + 2 * kappa * t
    centres = start + t[:, None] * b
    u = amp * 0.1 ** 2 / var[:, None] * torch.exp(-((pts[None] - centres[:, None]) ** 2).sum(-1) / (2 * var[:, None]))
    n = pts.shape[0]
    params = torch.cat([b.expand(n, 2) / speed, ((kappa - 0.006) / 0.004).expand(n, 1)], 1)
    return pts, u.unsqueeze(-1), params


def test_rollout_learns_transport_on_exact_advection_diffusion():
    """A known, exactly solved problem: a Gaussian bump advected (random direction) and diffused. After a short
    training on 8 trajectories the 10-step rollout of unseen ones must beat, clearly, both persistence and the
    best "decay only" prediction c_k u_0 (which has no transport): the model has to learn b . grad u across flow
    directions. The paper's configuration (MLP decoder, instance norm, absolute positions) ended at 0.85 x the
    decay oracle here, the stencil decoder at 0.59 x (2026-12-06)."""
    train = [_advected_bump(s) for s in range(8)]
    torch.manual_seed(0)
    model = build("mppde", 1 + 3, 1, 2, hidden=32, layers=2, radius=0.17, max_neighbors=12, dt=0.05, rescale=True,
                  **{k: v for k, v in STENCIL.items() if k in ("decoder", "norm", "positions")})
    fit_rollout(model, train, steps=800, lr=3e-3, max_unroll=1, seed=0, loss="relative")
    errs, persists, oracles = [], [], []
    for seed in (100, 101, 102):
        pts, frames, params = _advected_bump(seed)
        pred = model.rollout(pts, frames[0], 10, params=params)
        assert torch.isfinite(pred).all()
        true, u0 = frames[1:11].flatten(1), frames[0].flatten()
        err = (pred.flatten(1) - true).norm(dim=1) / true.norm(dim=1)
        assert float(err.max()) < 1.0, err  # bounded along the rollout
        errs.append(float(err[-1]))
        persists.append(float((u0 - true[-1]).norm() / true[-1].norm()))
        fit = (true[-1] @ u0) / (u0 @ u0) * u0
        oracles.append(float((fit - true[-1]).norm() / true[-1].norm()))
    assert sum(errs) < 0.75 * sum(oracles) and sum(errs) < 0.5 * sum(persists), (errs, oracles, persists)
