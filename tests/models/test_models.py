"""Model families: interface, batching, caching, determinism, chunked prediction, conditioning."""

import pytest
import torch

from pyengine.data import Batch, Sample
from pyengine.models import available, build
from pyengine.pipeline.predict import predict_chunked

SMALL = {
    "gno": dict(hidden=16, layers=2, radius=0.35, kernel_hidden=(16,), max_neighbors=12),
    "gino": dict(hidden=8, grid=(8, 8, 8), modes=(3, 3, 3), fno_layers=1, kernel_hidden=(16,), max_neighbors=12),
    "gaot": dict(hidden=16, grid=(4, 4, 4), radii_cells=(1.0, 2.0), dim=32, depth=1, vit_heads=2, patch=2,
                 encoder_kernel_hidden=(16, 16), decoder_kernel_hidden=(16,), projection_hidden=16),
    "gaot_fast": dict(hidden=16, grid=(4, 4, 4), radii_cells=(1.0, 2.0), heads=2, dim=32, depth=1, vit_heads=2,
                      patch=2, max_neighbors=16),
    "rigno": dict(hidden=16, edge_dim=8, regional_ratio=0.3, processor_steps=1, max_neighbors=12),
}


def _small(name, d):
    cfg = dict(SMALL[name])
    for key in ("grid", "modes"):
        if key in cfg:
            cfg[key] = cfg[key][:d]
    return cfg


def _cloud(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, d, generator=g) * 2 - 1
    return pts, torch.randn(n, 2, generator=g)


def test_registry_lists_the_families():
    assert {"gaot", "gaot_fast", "gino", "gno", "rigno", "gnot", "mgno", "mgtfno", "mppde", "nuno"} <= set(available())
    with pytest.raises(ValueError, match="unknown model"):
        build("fno9000", 1, 1, 3)
    with pytest.raises(ValueError, match="unknown gaot config"):
        build("gaot", 1, 1, 3, hiden=3)
    with pytest.raises(ValueError, match="coord_dim"):
        build("gno", 1, 1, 4)


@pytest.mark.parametrize("name", ["gno", "gino", "gaot", "gaot_fast", "rigno"])
@pytest.mark.parametrize("d", [2, 3])
def test_shapes_queries_and_determinism(name, d):
    points, feats = _cloud(157, d, 0)
    queries = torch.rand(61, d) * 1.6 - 0.8  # a different sampling than the inputs
    torch.manual_seed(3)
    m1 = build(name, 2, 3, d, **_small(name, d))
    torch.manual_seed(3)
    m2 = build(name, 2, 3, d, **_small(name, d))
    out = m1(points, feats, queries)
    assert out.shape == (61, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(out, m2(points, feats, queries), rtol=0, atol=0)
    assert m1(points, feats).shape == (157, 3)
    out.sum().backward()
    grads = [p.grad for p in m1.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["gno", "gino", "gaot", "gaot_fast", "rigno"])
def test_bf16_autocast_trains(name):
    """The Trainer's mixed precision (bf16 autocast) runs every family: fused ops
    that compute in float32 are registered with autocast (CPU autocast stands in for CUDA's)."""
    points, feats = _cloud(157, 3, 0)
    torch.manual_seed(3)
    model = build(name, 2, 1, 3, **_small(name, 3))
    with torch.no_grad():
        ref = model(points, feats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(points, feats)
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert float((out.detach().float() - ref).abs().max()) < 0.1 * float(ref.abs().max()) + 0.05  # bf16-level agreement


@pytest.mark.parametrize("name", ["gno", "gaot", "gaot_fast", "rigno", "gino"])
def test_graphs_are_cached_per_geometry(name):
    points, feats = _cloud(120, 3, 1)
    model = build(name, 2, 1, 3, **_small(name, 3))
    model(points, feats)
    misses = model.graphs.misses
    model(points.clone(), feats * 2)  # same geometry, new features: no new graphs
    assert model.graphs.misses == misses and model.graphs.hits > 0
    model(points + 0.01, feats)
    assert model.graphs.misses > misses


@pytest.mark.parametrize("name", ["gno", "gaot", "gaot_fast", "rigno", "gino"])
def test_chunked_prediction_equals_one_pass(name):
    points, feats = _cloud(200, 3, 2)
    queries = torch.rand(333, 3) * 1.8 - 0.9
    model = build(name, 2, 2, 3, **_small(name, 3)).eval()
    with torch.no_grad():
        full = model(points, feats, queries)
    chunked = predict_chunked(model, points, feats, queries, chunk_size=50)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gaot", "gaot_fast", "gno"])
def test_batched_forward_matches_per_geometry(name):
    model = build(name, 2, 1, 3, **_small(name, 3))
    samples = [Sample(*_cloud(n, 3, n), queries=torch.rand(n // 3, 3)) for n in (90, 130, 71)]
    batch = Batch.from_samples(samples)
    out = model.forward_batch(batch)
    assert out.shape == (sum(s.num_queries for s in samples), 1)
    for i, s in enumerate(samples):
        rows = out[batch.query_ptr[i]:batch.query_ptr[i + 1]]
        torch.testing.assert_close(rows, model(s.points, s.features, s.queries), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gaot", "gaot_fast", "rigno"])
def test_time_conditioning_and_rollout(name):
    points, _ = _cloud(100, 2, 4)
    state = torch.randn(100, 1)
    model = build(name, 2, 1, 2, time_conditioned=True, **_small(name, 2))
    static = torch.randn(100, 1)
    a = model(points, torch.cat([state, static], 1), time=0.0, lead_time=0.1)
    b = model(points, torch.cat([state, static], 1), time=0.5, lead_time=0.1)
    assert a.shape == (100, 1)
    if name in ("rigno", "gaot"):  # time enters additively / as input features, so outputs differ at once
        assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="time"):
        model(points, torch.cat([state, static], 1))
    if name.startswith("gaot"):
        states = model.rollout(points, state, steps=3, lead_time=0.1, static=static)
        assert len(states) == 3 and states[-1].shape == (100, 1)


def test_bad_inputs_raise_clear_errors():
    model = build("gno", 2, 1, 3, **_small("gno", 3))
    points, feats = _cloud(50, 3, 5)
    with pytest.raises(ValueError, match="points must be"):
        model(points[:, :2], feats)
    with pytest.raises(ValueError, match="features must be"):
        model(points, feats[:10])
    with pytest.raises(ValueError, match="needs features"):
        model(points, None)
    bad = points.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad, feats)
    with pytest.raises(ValueError, match="queries must be"):
        model(points, feats, torch.rand(5, 2))


@pytest.mark.parametrize("variant", ["grid", "points"])
def test_gino_activation_reaches_every_layer(variant):
    cfg = dict(_small("gino", 3), activation="tanh", variant=variant)
    model = build("gino", 2, 1, 3, **cfg)
    acts = [m for m in model.modules() if isinstance(m, (torch.nn.GELU, torch.nn.Tanh))]
    assert acts and all(isinstance(m, torch.nn.Tanh) for m in acts)
    if variant == "grid":
        assert all(isinstance(b.act, torch.nn.Tanh) for b in model.blocks)
    with pytest.raises(ValueError, match="activation"):
        build("gino", 2, 1, 3, **dict(cfg, activation="swish"))


def test_gaot_radii_are_in_real_token_spacings():
    """radii_cells = 1 means the distance between neighbouring tokens (extent / (n - 1)) in both GAOT variants."""
    from pyengine.geometry import latent_grid

    points, feats = _cloud(300, 3, 6)
    model = build("gaot", 2, 1, 3, **dict(_small("gaot", 3), radii_cells=(1.5,)))
    model(points, feats)
    (geo,) = [v for v in model.graphs._store.values() if isinstance(v, dict)]
    nearest = torch.cdist(geo["tokens"], geo["tokens"]).topk(2, largest=False).values[:, 1].min()
    assert abs(geo["radii"][0] - 1.5 * float(nearest)) < 1e-6
    model = build("gaot_fast", 2, 1, 3, **_small("gaot_fast", 3))
    model(points, feats)
    (tokens, _, _, spacing, _, _, _), = [v for v in model.graphs._store.values() if isinstance(v, tuple) and len(v) == 7]
    grid = latent_grid(points, (4, 4, 4), padding=0.05)
    assert abs(spacing - float(grid.spacing.max())) < 1e-6
    # the spacing is a real distance between tokens (the old extent / n was 0.75 of it for n = 4)
    assert float((torch.cdist(tokens, tokens) - spacing).abs().min()) < 1e-5


def test_rigno_paper_options_delaunay_support_and_edge_masking():
    from scipy.spatial import Delaunay

    from pyengine.models.rigno import _delaunay_radius

    points, feats = _cloud(300, 3, 7)
    nodes = points[:40].double()
    r = _delaunay_radius(nodes)
    tri = Delaunay(nodes.numpy()).simplices
    for node in (0, 7, 33):  # the longest Delaunay edge at the node, computed here per simplex
        longest = max(float((nodes[a] - nodes[node]).norm()) for s in tri if node in s for a in s)
        assert abs(float(r[node]) - longest) < 1e-12
    cfg = dict(_small("rigno", 3), support="delaunay", edge_drop=0.5)
    torch.manual_seed(0)
    model = build("rigno", 2, 1, 3, **cfg)
    out1, out2 = model(points, feats), model(points, feats)  # training mode: different masks
    assert not torch.allclose(out1, out2)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(points, feats), model(points, feats))  # no masking in eval
    with pytest.raises(ValueError, match="edge_drop"):
        build("rigno", 2, 1, 3, **dict(cfg, edge_drop=1.0))
