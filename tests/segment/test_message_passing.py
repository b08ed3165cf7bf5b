"""Tests of pyengine.nn.MessagePassing against a plain concatenate -> MLP -> index_add reference.

The reference is written here from the block's formula (it concatenates
``[h_i, h_j, e_ij]`` per edge, which the layer avoids) and uses the layer's own
parameters; forward and all gradients are compared in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyengine.nn import MessagePassing

ACT = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh}


def graph(lens, node_dim=5, edge_dim=4, seed=0, col_dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    lens = torch.as_tensor(lens, dtype=torch.long)
    M, E = lens.numel(), int(lens.sum())
    row_ptr = torch.zeros(M + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(lens, 0)
    col = torch.randint(0, max(M, 1), (E,), generator=g).to(col_dtype)
    h = torch.randn(M, node_dim, generator=g, dtype=torch.float64)
    e = torch.randn(E, edge_dim, generator=g, dtype=torch.float64)
    return h, row_ptr, col, e


def mlp_apply(seq, z, act):
    mods = list(seq)
    for k, m in enumerate(mods[0::2]):
        z = z @ m.weight.t() + m.bias
        if 2 * k + 1 < len(mods):
            z = ACT[act](z)
    return z


def reference(layer, h, row_ptr, col, e, act):
    lens = (row_ptr[1:] - row_ptr[:-1]).tolist()
    rows = torch.tensor([i for i, n in enumerate(lens) for _ in range(n)], dtype=torch.long)
    z = torch.cat([h[rows], h[col.long()], e], dim=1)
    e_new = e + mlp_apply(layer.edge_mlp, z, act)
    agg = torch.zeros(h.shape[0], e.shape[1], dtype=h.dtype).index_add_(0, rows, e_new)
    if layer.reduction == "mean":
        agg = agg / torch.tensor(lens, dtype=h.dtype).clamp(min=1)[:, None]
    h_new = h + mlp_apply(layer.node_mlp, torch.cat([h, agg], dim=1), act)
    return h_new, e_new


def lens_random(M, seed=1):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 8, (M,), generator=g)
    lens[torch.rand(M, generator=g) < 0.25] = 0
    return lens


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("act,layers", [("gelu", 1), ("relu", 2), ("silu", 1), ("tanh", 3)])
@pytest.mark.parametrize(
    "lens", [None, [0, 0, 900, 0, 3], [0, 0, 0]], ids=["random", "one_huge_row", "zero_edges"]
)
def test_matches_reference_with_gradients(reduction, act, layers, lens):
    lens = lens_random(43) if lens is None else lens
    h, row_ptr, col, e = graph(lens)
    layer = MessagePassing(5, 4, hidden=9, num_hidden_layers=layers, reduction=reduction, activation=act).double()
    h1, e1 = h.clone().requires_grad_(True), e.clone().requires_grad_(True)
    h2, e2 = h.clone().requires_grad_(True), e.clone().requires_grad_(True)
    out_h, out_e = layer(h1, row_ptr, col, e1)
    ref_h, ref_e = reference(layer, h2, row_ptr, col, e2, act)
    torch.testing.assert_close(out_h, ref_h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out_e, ref_e, rtol=1e-10, atol=1e-10)
    gh, ge = torch.randn_like(ref_h), torch.randn_like(ref_e)
    params = list(layer.parameters())
    got = torch.autograd.grad((out_h, out_e), [h1, e1, *params], (gh, ge), allow_unused=True)
    exp = torch.autograd.grad((ref_h, ref_e), [h2, e2, *params], (gh, ge), allow_unused=True)
    for k, (a, b) in enumerate(zip(got, exp)):
        a = torch.zeros_like(b) if a is None and b is not None else a
        b = torch.zeros_like(a) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m: f"grad {k}: {m}")


def test_gradcheck_and_int32_col():
    h, row_ptr, col, e = graph([2, 0, 3, 1], node_dim=3, edge_dim=2, col_dtype=torch.int32)
    layer = MessagePassing(3, 2, hidden=4, reduction="mean").double()
    fn = lambda hh, ee: layer(hh, row_ptr, col, ee)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (h.requires_grad_(True), e.requires_grad_(True)))


def test_errors():
    h, row_ptr, col, e = graph([2, 1, 3])
    layer = MessagePassing(5, 4, hidden=8).double()
    bad = col.clone()
    bad[0] = 3
    with pytest.raises(ValueError, match="col has entries outside"):
        layer(h, row_ptr, bad, e)
    with pytest.raises(ValueError, match="e must have shape"):
        layer(h, row_ptr, col, e[:-1])
    with pytest.raises(ValueError, match="row_ptr must have shape"):
        layer(h, row_ptr[:-1], col, e)
    with pytest.raises(ValueError, match="h must have shape"):
        layer(h[:, :3], row_ptr, col, e)
    with pytest.raises(ValueError, match="end at the number of edges"):
        layer(h, row_ptr, col[:-1], e[:-1])
    with pytest.raises(ValueError, match="non-decreasing"):
        layer(h, torch.tensor([0, 4, 3, 6]), col, e)
    with pytest.raises(TypeError, match="col"):
        layer(h, row_ptr, col.double(), e)
    with pytest.raises(ValueError, match="reduction"):
        MessagePassing(5, 4, reduction="max")


def reference_node_only(layer, h, row_ptr, col, act):
    lens = (row_ptr[1:] - row_ptr[:-1]).tolist()
    rows = torch.tensor([i for i, n in enumerate(lens) for _ in range(n)], dtype=torch.long)
    msg = mlp_apply(layer.edge_mlp, torch.cat([h[rows], h[col.long()]], dim=1), act)
    agg = torch.zeros(h.shape[0], msg.shape[1], dtype=h.dtype).index_add_(0, rows, msg)
    if layer.reduction == "mean":
        agg = agg / torch.tensor(lens, dtype=h.dtype).clamp(min=1)[:, None]
    return h + mlp_apply(layer.node_mlp, torch.cat([h, agg], dim=1), act)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
@pytest.mark.parametrize("reduction,act,layers", [("sum", "gelu", 1), ("mean", "silu", 2), ("mean", "relu", 3)])
@pytest.mark.parametrize("lens", [None, [0, 0, 2500, 0, 3], [0, 0]], ids=["random", "one_huge_row", "zero_edges"])
def test_node_only_matches_reference(fused, reduction, act, layers, lens):
    lens = lens_random(37) if lens is None else lens
    h, row_ptr, col, _ = graph(lens)
    layer = MessagePassing(5, 0, hidden=7, num_hidden_layers=layers, reduction=reduction, activation=act,
                           fused=fused).double()  # fmt: skip
    h1, h2 = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
    out, e_out = layer(h1, row_ptr, col)
    assert e_out is None
    ref = reference_node_only(layer, h2, row_ptr, col, act)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ref)
    params = list(layer.parameters())
    for a, b in zip(torch.autograd.grad(out, [h1, *params], g), torch.autograd.grad(ref, [h2, *params], g)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_node_only_gradcheck_and_errors():
    h, row_ptr, col, e = graph([2, 0, 3, 1], node_dim=3, edge_dim=2)
    layer = MessagePassing(3, 0, hidden=4).double()
    assert torch.autograd.gradcheck(lambda hh: layer(hh, row_ptr, col)[0], (h.requires_grad_(True),))
    with pytest.raises(ValueError, match="pass e=None"):
        layer(h, row_ptr, col, e)
    with pytest.raises(ValueError, match="num_hidden_layers <= 3"):
        MessagePassing(3, 0, num_hidden_layers=4)
    assert MessagePassing(3, 0, num_hidden_layers=4, fused=False) is not None
