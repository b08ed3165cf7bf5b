"""Tests of pyengine.nn.AttentionAggregation (GAOT's attentional GNO).

The layer folds the relative-position terms of keys and values into per-source
tensors; the reference here evaluates the layer's definition literally (per-edge
projection of [y_j - x_i, f_j], per-row softmax, scatter) from the same
parameters, and forward and every gradient (parameters and all inputs) must match
in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyengine import ops
from pyengine.nn import AttentionAggregation

from attention_reference import edge_rows, segment_softmax_ref


def layer_ref(layer, y, x, row_ptr, col, f_y, f_x=None):
    row, col = edge_rows(row_ptr), col.long()
    M, E, H, D = x.shape[0], col.shape[0], layer.heads, layer.head_dim
    q = layer.query(x if f_x is None else torch.cat([x, f_x], 1))[row].view(E, H, D)
    edge_in = torch.cat([y[col] - x[row], f_y[col]], 1)
    k = layer.key(edge_in).view(E, H, D)
    v = layer.value(edge_in).view(E, H, D)
    a = segment_softmax_ref((q * k).sum(-1) / math.sqrt(D), row, M)
    agg = torch.zeros(M, H, D, dtype=v.dtype).index_add(0, row, a.unsqueeze(-1) * v)
    return layer.out(agg.reshape(M, H * D))


def random_problem(M, N, d, C, query_channels=0, radius=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(N, d, generator=g, dtype=torch.float64)
    x = torch.rand(M, d, generator=g, dtype=torch.float64)
    row_ptr, col = ops.radius_search(y, x, radius)
    f_y = torch.randn(N, C, generator=g, dtype=torch.float64)
    f_x = torch.randn(M, query_channels, generator=g, dtype=torch.float64) if query_channels else None
    return y, x, row_ptr, col, f_y, f_x


def compare(layer, y, x, row_ptr, col, f_y, f_x=None):
    inputs = [t.detach().clone().requires_grad_(True) for t in (y, x, f_y)]
    if f_x is not None:
        inputs.append(f_x.detach().clone().requires_grad_(True))
    params = list(layer.parameters())
    out = layer(inputs[0], inputs[1], row_ptr, col, inputs[2], inputs[3] if f_x is not None else None)
    ref = layer_ref(layer, inputs[0], inputs[1], row_ptr, col, inputs[2], inputs[3] if f_x is not None else None)
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=1e-10)
    w = torch.randn_like(out)
    g_out = torch.autograd.grad((out * w).sum(), params + inputs, allow_unused=True)
    g_ref = torch.autograd.grad((ref * w).sum(), params + inputs, allow_unused=True)
    names = [n for n, _ in layer.named_parameters()] + ["y", "x", "f_y", "f_x"][: len(inputs)]
    for name, a, b in zip(names, g_out, g_ref):
        a = torch.zeros_like(b) if a is None and b is not None else a
        b = torch.zeros_like(a) if b is None and a is not None else b
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=lambda m: f"grad of {name}: {m}")
    return out


@pytest.mark.parametrize("d,heads,head_dim,query_channels", [(2, 1, 8, 0), (2, 4, 3, 2), (3, 2, 5, 0)])
def test_layer_matches_reference(d, heads, head_dim, query_channels):
    torch.manual_seed(1)
    layer = AttentionAggregation(5, 6, d, heads=heads, head_dim=head_dim, query_channels=query_channels).double()
    prob = random_problem(M=60, N=90, d=d, C=5, query_channels=query_channels, radius=0.25 if d == 2 else 0.4)
    assert int(prob[2].diff().eq(0).sum()) >= 0
    compare(layer, *prob)


def test_layer_empty_rows_huge_row_and_no_edges():
    torch.manual_seed(2)
    layer = AttentionAggregation(3, 4, 2, heads=2).double()
    y, x, _, _, f_y, _ = random_problem(M=5, N=3000, d=2, C=3)
    row_ptr = torch.tensor([0, 0, 2500, 2500, 2503, 2503])  # empty rows and one huge row
    col = torch.randint(0, 3000, (2503,))
    out = compare(layer, y, x, row_ptr, col, f_y)
    for i in (0, 2, 4):  # no neighbors: W_o 0 + b_o
        torch.testing.assert_close(out[i], layer.out.bias)
    out = compare(layer, y, x, torch.zeros(6, dtype=torch.long), torch.zeros(0, dtype=torch.long), f_y)
    torch.testing.assert_close(out, layer.out.bias.expand(5, 4))


def test_layer_gradcheck():
    torch.manual_seed(3)
    layer = AttentionAggregation(2, 3, 2, heads=2, head_dim=2, query_hidden=4).double()
    y, x, row_ptr, col, f_y, _ = random_problem(M=6, N=10, d=2, C=2, radius=0.5)
    inputs = [t.clone().requires_grad_(True) for t in (y, x, f_y)]
    torch.autograd.gradcheck(lambda y, x, f: layer(y, x, row_ptr, col, f), inputs, atol=1e-8)


def test_layer_float32_close_to_float64():
    torch.manual_seed(4)
    layer = AttentionAggregation(4, 8, 3, heads=4, head_dim=8).double()
    prob = random_problem(M=200, N=300, d=3, C=4, radius=0.3)
    ref = layer(*prob)
    out = layer.float()(*[t.float() if t is not None and t.is_floating_point() else t for t in prob])
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


def test_layer_bad_inputs():
    layer = AttentionAggregation(3, 4, 2)
    y, x, row_ptr, col, f_y, _ = random_problem(M=4, N=6, d=2, C=3, radius=0.8)
    y, x, f_y = y.float(), x.float(), f_y.float()
    with pytest.raises(ValueError, match="y must have shape"):
        layer(y[:, :1], x, row_ptr, col, f_y)
    with pytest.raises(ValueError, match="f_y must have shape"):
        layer(y, x, row_ptr, col, f_y[:, :2])
    with pytest.raises(ValueError, match="row_ptr must have shape"):
        layer(y, x, row_ptr[:-1], col, f_y)
    with pytest.raises(ValueError, match="col has entries >="):
        layer(y, x, row_ptr, torch.full_like(col, 6), f_y)
    with pytest.raises(ValueError, match="f_x given"):
        layer(y, x, row_ptr, col, f_y, torch.zeros(4, 1))
    with pytest.raises(TypeError, match="f_y must be a torch.Tensor"):
        layer(y, x, row_ptr, col, None)
    with pytest.raises(ValueError, match="heads must be a positive int"):
        AttentionAggregation(3, 4, 2, heads=0)


def test_plain_path_equals_fused():
    """fused=False (per-edge keys/values, gather-scatter softmax) gives the fused layer's values and gradients."""
    torch.manual_seed(5)
    y, x = torch.rand(70, 3, dtype=torch.float64), torch.rand(31, 3, dtype=torch.float64)
    row_ptr, col = ops.radius_search(y, x, 0.35)
    f = torch.randn(70, 6, dtype=torch.float64, requires_grad=True)
    layer = AttentionAggregation(6, 8, 3, heads=2).double()
    a = layer(y, x, row_ptr, col, f)
    ga = torch.autograd.grad(a.square().sum(), [f, *layer.parameters()])
    layer.fused = False
    b = layer(y, x, row_ptr, col, f)
    gb = torch.autograd.grad(b.square().sum(), [f, *layer.parameters()])
    torch.testing.assert_close(b, a)
    for u, w in zip(gb, ga):
        torch.testing.assert_close(u, w)


def test_key_has_no_bias_and_old_checkpoints_with_one_load():
    """A key bias b adds <q_i, b> to every score of row i, so it cancels in the softmax: the layer has
    none, and state dicts saved with one (earlier pyengine) load and give the outputs they gave."""
    y, x, row_ptr, col, f_y, _ = random_problem(30, 80, 3, 5, seed=4)
    layer = AttentionAggregation(5, 8, 3, heads=2).double()
    assert layer.key.bias is None
    state = layer.state_dict()
    bias = torch.randn(layer.key.out_features, dtype=torch.float64)
    old = dict(state, **{"key.bias": bias})
    fresh = AttentionAggregation(5, 8, 3, heads=2).double()
    fresh.load_state_dict(old)  # strict: the old key is accepted and dropped
    out = fresh(y, x, row_ptr, col, f_y)
    # the old layer's output, evaluated literally with the bias in every per-edge key
    with torch.no_grad():
        fresh.key.bias = torch.nn.Parameter(bias)
        ref = layer_ref(fresh, y, x, row_ptr, col, f_y)
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=1e-10)


def test_edge_weights_and_row_scale_match_reference():
    """edge_weights and row_scale (issue 17): ``out(s_i sum_j w_ij e^{s_ij} v_ij / sum_j w_ij e^{s_ij})``
    against a literal float64 evaluation, fused and plain, values and gradients; s = 0 gives the bias."""
    torch.manual_seed(6)
    layer = AttentionAggregation(4, 6, 3, heads=2, head_dim=3).double()
    y, x, row_ptr, col, f_y, _ = random_problem(M=41, N=77, d=3, C=4, radius=0.35)
    g = torch.Generator().manual_seed(7)
    w = torch.rand(col.shape[0], generator=g, dtype=torch.float64) + 1e-3
    s = torch.rand(41, generator=g, dtype=torch.float64)
    s[:5] = 0.0
    row, c = edge_rows(row_ptr), col.long()
    H, D = layer.heads, layer.head_dim
    f = f_y.clone().requires_grad_(True)
    q = layer.query(x)[row].view(-1, H, D)
    edge_in = torch.cat([y[c] - x[row], f[c]], 1)
    k, v = layer.key(edge_in).view(-1, H, D), layer.value(edge_in).view(-1, H, D)
    logits = (q * k).sum(-1) / math.sqrt(D)
    e = w[:, None] * torch.exp(logits - logits.max())
    den = torch.zeros(41, H, dtype=e.dtype).index_add(0, row, e)
    agg = torch.zeros(41, H, D, dtype=v.dtype).index_add(0, row, (e / den[row]).unsqueeze(-1) * v)
    ref = layer.out(agg.reshape(41, H * D) * s[:, None])
    g_ref = torch.autograd.grad(ref.square().sum(), [f])[0]
    for fused in (True, False):
        layer.fused = fused
        out = layer(y, x, row_ptr, col, f, edge_weights=w, row_scale=s)
        torch.testing.assert_close(out, ref, atol=1e-11, rtol=1e-10)
        torch.testing.assert_close(torch.autograd.grad(out.square().sum(), [f])[0], g_ref, atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(out[:5], layer.out.bias.expand(5, -1))
    with pytest.raises(ValueError, match="row_scale must have shape"):
        layer(y, x, row_ptr, col, f, row_scale=s[:-1])


def test_score_bound_matches_cosine_reference_and_bounds_scores():
    """score_bound (issue 17): ``s_ij = b sigmoid(theta_h) cos(q_i, W_k [y_j, f_j])`` against a literal
    float64 evaluation, fused and plain, values and gradients (theta included); every score stays
    within ``[-b, b]`` however large the queries grow."""
    torch.manual_seed(8)
    b = 2.5
    layer = AttentionAggregation(4, 6, 3, heads=2, head_dim=3, score_bound=b).double()
    with torch.no_grad():
        layer.theta.copy_(torch.tensor([-0.7, 1.3]))
        layer.query[2].weight.mul_(1e3)  # a "sharpened" query: the bound must still hold
    y, x, row_ptr, col, f_y, _ = random_problem(M=37, N=71, d=3, C=4, radius=0.35, seed=9)
    w = torch.rand(col.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 1e-3
    row, c = edge_rows(row_ptr), col.long()
    H, D = layer.heads, layer.head_dim
    f = f_y.clone().requires_grad_(True)
    q = layer.query(x).view(-1, H, D)
    K = layer.key(torch.cat([y, f], 1)).view(-1, H, D)
    cos = (torch.nn.functional.normalize(q, dim=-1)[row] * torch.nn.functional.normalize(K, dim=-1)[c]).sum(-1)
    logits = b * torch.sigmoid(layer.theta) * cos
    assert float(logits.detach().abs().max()) <= b * float(torch.sigmoid(layer.theta.detach()).max()) + 1e-12
    e = w[:, None] * torch.exp(logits - logits.max())
    den = torch.zeros(37, H, dtype=e.dtype).index_add(0, row, e)
    v = layer.value(torch.cat([y[c] - x[row], f[c]], 1)).view(-1, H, D)
    agg = torch.zeros(37, H, D, dtype=v.dtype).index_add(0, row, (e / den[row]).unsqueeze(-1) * v)
    ref = layer.out(agg.reshape(37, H * D))
    params = [f, *layer.parameters()]
    g_ref = torch.autograd.grad(ref.square().sum(), params, allow_unused=True)
    for fused in (True, False):
        layer.fused = fused
        out = layer(y, x, row_ptr, col, f, edge_weights=w)
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-9)
        g = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
        for a, r in zip(g, g_ref):
            a = torch.zeros_like(r) if a is None else a
            r = torch.zeros_like(a) if r is None else r
            torch.testing.assert_close(a, r, atol=1e-9, rtol=1e-8)
    for bad in (0, -1.0, float("inf"), "2"):
        with pytest.raises(ValueError, match="score_bound must be"):
            AttentionAggregation(4, 6, 3, score_bound=bad)
    assert AttentionAggregation(4, 6, 3).theta is None  # unbounded by default: older checkpoints load
