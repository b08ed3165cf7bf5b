"""Training-time thinning (issue 17): a family that knows the parent of a resampled subset filters
the parent's cached structures, and the result is exactly what it would build from the subset."""

from __future__ import annotations

import math

import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from pyengine.geometry.quadrature import vertex_areas  # noqa: E402
from pyengine.models import build  # noqa: E402
from pyengine.models.thinning import Thinning, filter_csr  # noqa: E402
from pyengine.ops import radius_search, row_index  # noqa: E402

TINY = dict(hidden=16, grid=(4, 4, 4), dim=32, depth=1, vit_heads=2, radii_cells=(1.0, 2.3))


@pytest.fixture(scope="module")
def body():
    m = trimesh.creation.icosphere(3)
    m.vertices *= [1.0, 0.6, 0.4]
    pts = torch.tensor(m.vertices, dtype=torch.float32)
    return pts, pts / pts.norm(dim=1, keepdim=True), vertex_areas(pts, torch.tensor(m.faces))


def _thinning(pts, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = 0.3 + 0.6 * torch.rand(pts.shape[0], generator=g)
    idx = torch.nonzero(torch.rand(pts.shape[0], generator=g) < p)[:, 0]
    return Thinning(pts, w, idx, 1 / p[idx])


def _edge_set(rp, col, values=None):
    rows = row_index(rp, col.shape[0]).tolist()
    vals = [None] * len(rows) if values is None else values.tolist()
    return {(r, int(c)): v for r, c, v in zip(rows, col.tolist(), vals)}


def test_filter_csr_is_the_subset_search():
    g = torch.Generator().manual_seed(3)
    pts, queries = torch.rand(613, 3, generator=g), torch.rand(97, 3, generator=g)
    idx = torch.nonzero(torch.rand(613, generator=g) < 0.55)[:, 0]
    th = Thinning(pts, None, idx, torch.ones(idx.shape[0]))
    rp, col = radius_search(pts, queries, 0.17)
    rp2, col2, kept = filter_csr(rp, col, th.new_index())
    direct_rp, direct_col = radius_search(pts[idx], queries, 0.17)
    assert torch.equal(rp2, direct_rp)
    assert _edge_set(rp2, col2) == _edge_set(direct_rp, direct_col)
    assert torch.equal(idx[col2.long()], col[kept].long())  # kept names the parent edges


def test_gaot_fast_thinned_balls_equal_the_balls_of_the_subset(body):
    pts, _, w = body
    torch.manual_seed(0)
    model = build("gaot_fast", 3, 1, 3, quadrature=True, **TINY)
    th = _thinning(pts, w)
    tokens, enc, _, spacing, _, _, sinks = model._tokens(pts, w)
    thinned = model._thinned_balls(enc, sinks, th)
    radii = [r * spacing for r in model.config.radii_cells]
    direct, _, _ = model._quadrature_balls(pts[th.index], tokens, radii, th.kept_weights(w))
    for (rp, col, ew, scale), (drp, dcol, dew, dscale) in zip(thinned, direct):
        assert torch.equal(rp, drp)
        a, b = _edge_set(rp, col, ew), _edge_set(drp, dcol, dew)
        assert a.keys() == b.keys()
        assert max(abs(a[e] - b[e]) / b[e] for e in a) < 1e-5
        assert torch.allclose(scale, dscale, rtol=1e-5, atol=1e-7)


def test_gaot_fast_identity_thinning_is_the_plain_forward(body):
    pts, nrm, w = body
    torch.manual_seed(0)
    model = build("gaot_fast", 3, 1, 3, quadrature=True, skip_at_query=True, **TINY).eval()
    th = Thinning(pts, w, torch.arange(pts.shape[0]), torch.ones(pts.shape[0]))
    with torch.no_grad():
        plain = model(pts, nrm, weights=w)
        thinned = model(pts, nrm, weights=w, thinning=th)
    assert torch.allclose(plain, thinned, rtol=1e-5, atol=1e-6)


def test_gaot_fast_thinned_forward_is_differentiable_and_caches_nothing_per_step(body):
    pts, nrm, w = body
    torch.manual_seed(0)
    model = build("gaot_fast", 3, 1, 3, quadrature=True, **TINY)
    model(pts, nrm, weights=w)  # the parent's structures
    before = len(model.graphs._store)
    for seed in range(3):
        th = _thinning(pts, w, seed)
        out = model(pts[th.index], nrm[th.index], pts, weights=th.kept_weights(w), thinning=th)
        out.square().mean().backward()
        assert out.shape == (pts.shape[0], 1) and bool(torch.isfinite(out).all())
    assert len(model.graphs._store) == before
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters()
               if p.requires_grad and p.grad is not None)


def test_thinning_shapes_are_checked(body):
    pts, nrm, w = body
    model = build("gaot_fast", 3, 1, 3, quadrature=True, **TINY)
    th = _thinning(pts, w)
    with pytest.raises(ValueError, match="thinning.index"):
        model(pts[th.index][:-1], nrm[th.index][:-1], weights=th.kept_weights(w)[:-1], thinning=th)
    with pytest.raises(ValueError, match="thinning.weights"):
        model(pts[th.index], nrm[th.index], thinning=Thinning(pts, w[:-1], th.index, th.inverse_keep))


@pytest.mark.parametrize("with_weights", [True, False])
def test_trainer_resampling_builds_each_geometry_once(body, with_weights):
    """Under TrainConfig.resample the thinned steps filter the parents' cached structures: epochs after
    the first build nothing (before, every step rebuilt the token box, balls and embeddings)."""
    from pyengine.data import Sample
    from pyengine.pipeline.config import TrainConfig
    from pyengine.pipeline.train import Trainer

    pts, nrm, w = body
    samples = [Sample(points=pts * s, features=nrm, fields={"u": (pts[:, 0] * s).sin()},
                      weights=w * s * s if with_weights else None) for s in (0.8, 1.0, 1.25)]
    misses = []
    for epochs in (1, 3):
        torch.manual_seed(0)
        model = build("gaot_fast", 3, 1, 3, quadrature=True, skip_at_query=True, **TINY)
        cfg = TrainConfig(epochs=epochs, batch_size=2, progress=False, resample=True, resample_min=0.3, lr=1e-3)
        hist = Trainer(model, samples, fields=["u"], config=cfg).fit()
        assert all(math.isfinite(h["loss"]) for h in hist)
        misses.append(model.graphs.misses)
    assert misses[0] == misses[1]
