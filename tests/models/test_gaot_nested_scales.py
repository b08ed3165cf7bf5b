"""MAGNO's scales integrated as shells of the largest ball (``pyengine.nn.magno.nested_scales``).

The kernel MLP is shared by the scales, so one pass over the largest ball's edges, split
into shells, must give every scale's integral: checked against the per-scale integrals
(and a float64 brute force of the formula), outputs and gradients, and at the model level
(``_MAGNO.nested_scales`` on and off, and the official forward in test_gaot_official.py).
"""

from __future__ import annotations

import pytest
import torch

from official_gaot_reference import OfficialStyleGAOT, brute_force_radius_graph
from pyengine.models import GAOTConfig, build, from_official
from pyengine.models.gaot import _MAGNO
from pyengine.models.gaot_official import official_radii_cells, official_tokens
from pyengine.nn.magno import MAGNOIntegral, cosine_attention, nested_scales
from pyengine.ops import radius_search


def rel(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def _problem(seed=0, n=157, m=41, d=3, radii=(0.35, 0.6, 0.5), dtype=torch.float64, weights=False):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, d, generator=g) * 2 - 1).to(dtype)
    x = (torch.rand(m, d, generator=g) * 2 - 1).to(dtype)
    x[0] = 5.0  # a query with empty balls
    w = (0.5 + torch.rand(n, generator=g)).to(dtype) if weights else None
    graphs = [radius_search(y, x, r) for r in radii]
    alphas = [cosine_attention(y, x, rp, col, w) for rp, col in graphs]
    return y, x, graphs, alphas, radii


def _brute(y, x, f, layer, r, w=None):
    """out_i = sum_{|y_j - x_i| <= r} softmax_j(cos(x_i, y_j) + log w_j) k(x_i, y_j) f_j, dense float64."""
    lin = [m for m in layer.integral.kernel if isinstance(m, torch.nn.Linear)]
    inside = torch.cdist(x, y) <= r
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).T
    if w is not None:
        cos = cos + torch.log(w)[None]
    a = torch.softmax(cos.masked_fill(~inside, float("-inf")), dim=1).nan_to_num(0.0)
    z = torch.cat([x[:, None].expand(-1, y.shape[0], -1), y[None].expand(x.shape[0], -1, -1)], dim=2)
    for i, l in enumerate(lin):
        z = l(z)
        if i + 1 < len(lin):
            z = torch.nn.functional.gelu(z)
    return (a[:, :, None] * z * f[None]).sum(1)


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_shells_give_every_scale(weights, fused):
    y, x, graphs, alphas, radii = _problem(weights=weights)
    torch.manual_seed(0)
    layer = MAGNOIntegral(5, 3, hidden=(9, 7), fused=fused).double()
    f = torch.randn(y.shape[0], 5, dtype=torch.float64)
    sh = nested_scales(graphs, alphas, radii)
    assert sh is not None and sh.order == [0, 2, 1]
    assert sh.col.shape == graphs[1][1].shape  # the largest ball's edges, once
    got = sh.combine(layer(y, x.repeat_interleave(3, 0), sh.row_ptr, sh.col, f, alpha=sh.u))
    for m, (rp, col) in enumerate(graphs):
        want = layer(y, x, rp, col, f, alpha=alphas[m])
        assert rel(got[m], want) < 1e-12, (m, rel(got[m], want))
        assert got[m][0].abs().max() == 0  # empty balls stay 0
    if not weights:
        for m, r in enumerate(radii):
            assert rel(got[m], _brute(y, x, f, layer, r)) < 1e-12


def test_shell_gradients_equal_the_per_scale_ones():
    y, x, graphs, alphas, radii = _problem(seed=2, radii=(0.4, 0.7))
    torch.manual_seed(1)
    layer = MAGNOIntegral(4, 3, hidden=(8, 8, 6)).double()
    f = torch.randn(y.shape[0], 4, dtype=torch.float64, requires_grad=True)
    sh = nested_scales(graphs, alphas, radii)
    coef = [torch.randn(x.shape[0], 4, dtype=torch.float64) for _ in radii]

    def grads(outs):
        loss = sum((c * o).sum() for c, o in zip(coef, outs))
        return torch.autograd.grad(loss, [f, *layer.parameters()])

    g_shell = grads(sh.combine(layer(y, x.repeat_interleave(2, 0), sh.row_ptr, sh.col, f, alpha=sh.u)))
    g_ref = grads([layer(y, x, rp, col, f, alpha=a) for (rp, col), a in zip(graphs, alphas)])
    for a, b in zip(g_shell, g_ref):
        assert rel(a, b) < 1e-11


def test_not_nested_or_not_factorising_is_refused():
    y, x, graphs, alphas, radii = _problem(radii=(0.4, 0.7))
    assert nested_scales(graphs[:1], alphas[:1], radii[:1]) is None  # one scale: nothing to share
    capped = [radius_search(y, x, r, max_neighbors=3) for r in radii]  # nearest 3: not the same as a ball
    capped_alpha = [cosine_attention(y, x, rp, col) for rp, col in capped]
    big = capped[1]
    # a smaller "ball" that is not inside the larger graph
    rp0, col0 = graphs[0]
    assert nested_scales([(rp0, col0), big], [alphas[0], capped_alpha[1]], radii) is None
    # weights that do not renormalise the largest scale's (e.g. windowed, scale-dependent)
    bent = [alphas[0] * (1 + 0.1 * torch.rand_like(alphas[0])), alphas[1]]
    assert nested_scales(graphs, bent, radii) is None
    # wrong lengths
    assert nested_scales(graphs, [alphas[0][:-1], alphas[1]], radii) is None


def _model_case(seed=0):
    grid = (4, 4, 4)
    radius, scales = 0.55, (1.0, 1.5)
    ref = OfficialStyleGAOT(3, 2, grid, channels=8, enc_hidden=(16, 12, 16), dec_hidden=(16, 12), n_scales=2,
                            patch=2, hidden=32, layers=2, heads=4, kv_heads=2)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(ref.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    cfg = GAOTConfig(hidden=8, grid=grid, radii_cells=official_radii_cells(radius, scales, grid),
                     encoder_kernel_hidden=(16, 12, 16), decoder_kernel_hidden=(16, 12), dim=32, depth=2,
                     vit_heads=4, kv_heads=2, patch=2, projection_hidden=256, domain=((-1.0,) * 3, (1.0,) * 3))
    pts = torch.rand(230, 3, generator=g) * 1.8 - 0.9
    feats = torch.randn(230, 3, generator=g)
    return ref, cfg, pts, feats, (radius, scales, grid)


def test_model_uses_shells_and_matches_per_scale_and_official(monkeypatch):
    ref, cfg, pts, feats, (radius, scales, grid) = _model_case()
    model = from_official(ref.state_dict(), cfg).double().train()
    p64, f64 = pts.double(), feats.double()
    out = model(p64, f64)
    geo = model._geometry(p64, None)
    assert geo["shells"] is not None and model._queries(geo, p64)[4] is not None
    g_shell = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    monkeypatch.setattr(_MAGNO, "nested_scales", False)
    out_ref = model(p64, f64)
    g_ref = torch.autograd.grad(out_ref.square().sum(), list(model.parameters()))
    assert rel(out, out_ref) < 1e-12
    for a, b in zip(g_shell, g_ref):
        assert rel(a, b) < 1e-10
    monkeypatch.setattr(_MAGNO, "nested_scales", True)
    # float32 against the official forward, with the shells
    tokens = official_tokens(grid)
    enc = [brute_force_radius_graph(pts, tokens, radius * s) for s in scales]
    dec = [brute_force_radius_graph(tokens, pts, radius * s) for s in scales]
    with torch.no_grad():
        want = ref(tokens, pts, feats, pts, enc, dec)
        got = from_official(ref.state_dict(), cfg)(pts, feats)
    assert rel(got, want) < 1e-4


def test_capped_graphs_give_the_per_scale_result(monkeypatch):
    """With max_neighbors the balls may or may not nest: either way the outputs are the per-scale ones."""
    model = build("gaot", 3, 1, 3, hidden=8, grid=(4, 4, 4), radii_cells=(1.0, 2.0), max_neighbors=5, dim=32,
                  depth=1, vit_heads=4, encoder_kernel_hidden=(8,), decoder_kernel_hidden=(8,)).double()
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(300, 3, generator=g, dtype=torch.float64)
    feats = torch.randn(300, 3, generator=g, dtype=torch.float64)
    out = model(pts, feats)
    monkeypatch.setattr(_MAGNO, "nested_scales", False)
    assert rel(out, model(pts, feats)) < 1e-12
