"""CPU tests of the fused GNO kernel integral (pyengine.ops.gno_integral, pyengine.nn.GNOIntegral).

Every result is compared with an independent plain-PyTorch reference written here
(explicit per-edge row index, cat -> Linear/activation -> multiply -> index_add_,
mean divided by the row counts) that uses the same parameters, in float64, for
the forward value and the gradients of every input and every MLP parameter.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pyengine import ops
from pyengine.nn import GNOIntegral

P = torch.ops.pyengine
ACT = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh}


# --------------------------------------------------------------------------- graphs and reference


def random_graph(lens, N, d=3, C=5, dtype=torch.float64, seed=0, col_dtype=torch.int64):
    """Points y (N, d), x (M, d), features (N, C), weights (N,), CSR graph with the given row lengths."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.as_tensor(lens, dtype=torch.long)
    M, E = lens.numel(), int(lens.sum())
    row_ptr = torch.zeros(M + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(lens, 0)
    col = torch.randint(0, N, (E,), generator=g).to(col_dtype)
    y = torch.rand(N, d, generator=g, dtype=dtype)
    x = torch.rand(M, d, generator=g, dtype=dtype)
    f = torch.randn(N, C, generator=g, dtype=dtype)
    w = torch.rand(N, generator=g, dtype=dtype) + 0.5
    return y, x, row_ptr, col, f, w


def random_lens(M, max_deg=9, empty_frac=0.25, seed=1):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, max_deg + 1, (M,), generator=g)
    lens[torch.rand(M, generator=g) < empty_frac] = 0
    return lens


FEEDS_F = ("nonlinear", "nonlinear_kernelonly")


def reference(y, x, row_ptr, col, f, w, Ws, bs, act, transform, reduction, ew=None):
    """Plain gather -> MLP -> multiply -> scatter, independent of pyengine."""
    M = x.shape[0]
    lens = (row_ptr[1:] - row_ptr[:-1]).tolist()
    rows = torch.tensor([i for i, n in enumerate(lens) for _ in range(n)], dtype=torch.long)
    colL = col.long()
    z = [x[rows], y[colL]] + ([f[colL]] if transform in FEEDS_F else [])
    h = torch.cat(z, dim=1)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W.t() + b
        if l + 1 < len(Ws):
            h = ACT[act](h)
    if transform in ("linear", "nonlinear"):
        h = h * f[colL]
    if w is not None:
        h = h * w[colL][:, None]
    if ew is not None:
        h = h * ew[:, None]
    out = torch.zeros(M, h.shape[1], dtype=h.dtype).index_add_(0, rows, h)
    if reduction == "mean":
        cnt = torch.tensor(lens, dtype=h.dtype).clamp(min=1)
        out = out / cnt[:, None]
    return out


def random_mlp(dims, dtype=torch.float64, seed=2):
    g = torch.Generator().manual_seed(seed)
    Ws = [torch.randn(dims[l + 1], dims[l], generator=g, dtype=dtype) / math.sqrt(dims[l]) for l in range(len(dims) - 1)]
    bs = [0.3 * torch.randn(dims[l + 1], generator=g, dtype=dtype) for l in range(len(dims) - 1)]
    return Ws, bs


def in_width(d, C, transform):
    return 2 * d + (C if transform in FEEDS_F else 0)


def edge_weights_for(graph, seed=11):
    """Positive per-edge weights (like attention weights) for a graph."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(graph[3].shape[0], generator=g, dtype=graph[0].dtype) + 0.25


def compare_all(graph, hidden, act, transform, reduction, use_w=True, rtol=1e-10, atol=1e-10, use_ew=False,
                out_channels=None):
    """Forward and every gradient of the fused op vs the reference (float64)."""
    y, x, row_ptr, col, f, w = graph
    d, C = y.shape[1], f.shape[1]
    Ws, bs = random_mlp([in_width(d, C, transform), *hidden, out_channels or C])
    f_in = None if transform == "linear_kernelonly" else f
    w_in = w if use_w else None
    ew_in = edge_weights_for(graph) if use_ew else None
    opt = [t for t in (f_in, w_in, ew_in) if t is not None]
    leaves = [t.clone().requires_grad_(True) for t in [y, x] + opt + Ws + bs]

    def split(ts):
        ts = list(ts)
        yy, xx = ts[0], ts[1]
        k = 2
        got = []
        for t in (f_in, w_in, ew_in):
            got.append(ts[k] if t is not None else None)
            k += t is not None
        L = len(Ws)
        return (yy, xx, *got, ts[k : k + L], ts[k + L :])

    yy, xx, ff, ww, ee, W1, b1 = split(leaves)
    out = ops.gno_integral(yy, xx, row_ptr, col, ff, ww, W1, b1, act, transform, reduction, edge_weights=ee)
    ref_leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    yy, xx, ff, ww, ee, W2, b2 = split(ref_leaves)
    ref = reference(yy, xx, row_ptr, col, ff if ff is not None else f, ww, W2, b2, act, transform, reduction, ee)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    gout = torch.randn_like(ref)
    got = torch.autograd.grad(out, leaves, gout, allow_unused=True)
    exp = torch.autograd.grad(ref, ref_leaves, gout, allow_unused=True)
    for k, (a, b) in enumerate(zip(got, exp)):
        if b is None:
            b = torch.zeros_like(leaves[k])
        assert a is not None, f"no gradient for input {k}"
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"grad of input {k}: {m}")


# --------------------------------------------------------------------------- forward + all gradients vs reference


ALL_TRANSFORMS = ["linear", "nonlinear", "linear_kernelonly", "nonlinear_kernelonly"]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_matches_reference_transforms(transform, reduction):
    graph = random_graph(random_lens(61), N=47, d=3, C=5)
    compare_all(graph, (8, 7), "gelu", transform, reduction)


@pytest.mark.parametrize("transform", ALL_TRANSFORMS)
@pytest.mark.parametrize("use_w", [True, False], ids=["with_w", "no_w"])
def test_edge_weights_match_reference(transform, use_w):
    """Per-edge weights (E,), alone and together with per-source weights (N,), with every gradient."""
    graph = random_graph(random_lens(53, max_deg=12), N=41, d=3, C=4, seed=12)
    compare_all(graph, (9, 6), "silu", transform, "sum", use_w=use_w, use_ew=True)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_nonlinear_kernelonly_changes_the_width(reduction):
    """k(x, y, f) alone: f (C = 5) feeds the MLP, whose output width (7) is the layer's."""
    graph = random_graph(random_lens(37), N=30, d=2, C=5, seed=13)
    compare_all(graph, (8,), "gelu", "nonlinear_kernelonly", reduction, use_ew=True, out_channels=7)
    # the long-row / task-split path of the CPU kernel with a width change and int32 columns
    graph = random_graph([0, 2600, 2, 0, 1500], N=50, d=3, C=3, seed=14, col_dtype=torch.int32)
    compare_all(graph, (6,), "tanh", "nonlinear_kernelonly", reduction, use_ew=True, out_channels=2)


@pytest.mark.parametrize("act", ["gelu", "relu", "silu", "tanh"])
@pytest.mark.parametrize("hidden", [(), (6,), (8, 7), (5, 9, 4)])
def test_matches_reference_activations_depths(act, hidden):
    graph = random_graph(random_lens(29, seed=3), N=31, d=2, C=3, seed=4)
    compare_all(graph, hidden, act, "linear", "mean")


def test_no_quadrature_weights_and_int32_col():
    graph = random_graph(random_lens(40), N=20, d=3, C=4, col_dtype=torch.int32)
    compare_all(graph, (8,), "gelu", "nonlinear", "sum", use_w=False)


# Awkward layouts. The CPU kernel cuts the edge range into up to 4 tasks per
# thread and each task into chunks of <= 1024 edges, so a long row spans chunks
# and tasks (its partial sums are merged), and chunks span many short rows.
@pytest.mark.parametrize(
    "lens",
    [
        [0, 0, 3000, 0],  # one huge row between empty rows
        [2500],  # a single row
        [0, 5, 0, 0, 1, 2000, 1, 0, 1700, 0],  # two long rows among tiny ones
        [0, 0, 0],  # no edges at all
        [1] * 2100,  # many rows of one edge
    ],
    ids=["one_huge", "single_row", "two_long", "zero_edges", "unit_rows"],
)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_awkward_graphs(lens, reduction):
    graph = random_graph(lens, N=37, d=2, C=3, seed=5)
    compare_all(graph, (6, 5), "gelu", "linear", reduction)


def test_no_rows():
    y, x, row_ptr, col, f, w = random_graph([], N=5, d=3, C=4)
    Ws, bs = random_mlp([6, 4, 4])
    out = ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs)
    assert out.shape == (0, 4)


def test_float32_close_to_float64():
    graph64 = random_graph(random_lens(300, max_deg=40), N=200, d=3, C=16)
    graph32 = [t.float() if t.is_floating_point() else t for t in graph64]
    Ws, bs = random_mlp([6, 32, 32, 16])
    out64 = ops.gno_integral(*graph64, Ws, bs, "gelu", "linear", "sum")
    out32 = ops.gno_integral(*graph32, [W.float() for W in Ws], [b.float() for b in bs], "gelu", "linear", "sum")
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- gradcheck / opcheck


@pytest.mark.parametrize(
    "transform,reduction,act,C_out",
    [("linear", "mean", "gelu", 2), ("nonlinear", "sum", "silu", 2), ("linear_kernelonly", "mean", "tanh", 2),
     ("nonlinear_kernelonly", "sum", "gelu", 3)],
)
def test_gradcheck(transform, reduction, act, C_out):
    y, x, row_ptr, col, f, w = random_graph([2, 0, 3, 1], N=5, d=2, C=2, seed=7)
    ew = edge_weights_for((y, x, row_ptr, col))
    Ws, bs = random_mlp([in_width(2, 2, transform), 3, C_out])
    f_in = None if transform == "linear_kernelonly" else f
    params, dims = ops.pack_mlp(Ws, bs)
    inputs = [y, x, w, ew, params] + ([f_in] if f_in is not None else [])
    leaves = [t.clone().requires_grad_(True) for t in inputs]

    def fn(yy, xx, ww, ee, pp, ff=None):
        return P.gno_integral(yy, xx, row_ptr, col, ff, ww, ee, pp, dims, act, transform, reduction)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("transform", ALL_TRANSFORMS)
def test_opcheck(transform):
    y, x, row_ptr, col, f, w = random_graph([2, 0, 3, 1, 4], N=6, d=3, C=3, seed=8)
    ew = edge_weights_for((y, x, row_ptr, col))
    Ws, bs = random_mlp([in_width(3, 3, transform), 4, 3])
    params, dims = ops.pack_mlp(Ws, bs)
    f_in = None if transform == "linear_kernelonly" else f.requires_grad_(True)
    args = (y.requires_grad_(True), x, row_ptr, col, f_in, w.requires_grad_(True), ew.requires_grad_(True),
            params.requires_grad_(True), dims, "gelu", transform, "mean")  # fmt: skip
    torch.library.opcheck(P.gno_integral, args)
    grad_out = torch.randn(x.shape[0], 3, dtype=torch.float64)
    bwd_args = (grad_out, y.detach(), x, row_ptr, col, None if f_in is None else f_in.detach(), w.detach(),
                ew.detach(), params.detach(), dims, "gelu", transform, "mean", [True, False, True, True, True])  # fmt: skip
    torch.library.opcheck(P.gno_integral_backward, bwd_args)


# --------------------------------------------------------------------------- the layer


@pytest.mark.parametrize("transform", ["linear", "nonlinear", "linear_kernelonly"])
def test_layer_fused_equals_plain_and_reference(transform):
    y, x, row_ptr, col, f, w = random_graph(random_lens(50), N=40, d=3, C=6)
    layer = GNOIntegral(6, 3, hidden=(16, 8), transform=transform, reduction="mean").double()
    mods = list(layer.kernel)
    assert isinstance(layer.kernel, torch.nn.Sequential) and all(isinstance(m, torch.nn.Linear) for m in mods[0::2])
    assert mods[0].in_features == in_width(3, 6, transform) and mods[-1].out_features == 6
    f_in = None if transform == "linear_kernelonly" else f
    out = layer(y, x, row_ptr, col, f_in, w)
    Ws, bs = [m.weight for m in mods[0::2]], [m.bias for m in mods[0::2]]
    ref = reference(y, x, row_ptr, col, f, w, Ws, bs, "gelu", transform, "mean")
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    layer.fused = False
    torch.testing.assert_close(layer(y, x, row_ptr, col, f_in, w), ref, rtol=1e-10, atol=1e-10)
    # parameter gradients reach the Linear modules through the packed params
    layer.fused = True
    layer(y, x, row_ptr, col, f_in, w).square().sum().backward()
    g_fused = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer.fused = False
    layer(y, x, row_ptr, col, f_in, w).square().sum().backward()
    for a, b in zip(g_fused, [p.grad for p in layer.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_layer_with_radius_search_graph():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(300, 3, generator=g)
    x = torch.rand(120, 3, generator=g)
    row_ptr, col = ops.radius_search(y, x, 0.2)
    f = torch.randn(300, 8, generator=g)
    layer = GNOIntegral(8, 3, hidden=(32, 32), transform="linear", reduction="mean")
    out = layer(y, x, row_ptr, col, f)
    layer.fused = False
    torch.testing.assert_close(out, layer(y, x, row_ptr, col, f), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- errors


def _small():
    y, x, row_ptr, col, f, w = random_graph([2, 1, 3], N=4, d=2, C=3)
    Ws, bs = random_mlp([4, 5, 3])
    return y, x, row_ptr, col, f, w, Ws, bs


def test_error_col_out_of_range():
    y, x, row_ptr, col, f, w, Ws, bs = _small()
    col = col.clone()
    col[2] = 4
    with pytest.raises(ValueError, match="col has entries >= the number of points in y"):
        ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs)
    col[2] = -1
    with pytest.raises(ValueError, match="col has negative entries"):
        ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda a: a.update(col=a["col"][:-1]), "row_ptr\\[-1\\] must equal the length of col"),
        (lambda a: a.update(row_ptr=a["row_ptr"][:-1]), "row_ptr"),
        (lambda a: a.update(f=a["f"][:-1]), "f_y must have one row per point of y"),
        (lambda a: a.update(w=a["w"][:-1]), "weights must have one entry per point of y"),
        (lambda a: a.update(x=a["x"][:, :1]), "same coordinate dimension"),
        (lambda a: a.update(f=a["f"][:, :2]), "must equal f_y.shape\\[1\\]"),
        (lambda a: a.update(Ws=[torch.randn(5, 5, dtype=torch.float64), a["Ws"][1]],
                            bs=a["bs"]), "dims\\[0\\] must be 4"),  # fmt: skip
        (lambda a: a.update(Ws=[a["Ws"][0], torch.randn(3, 4, dtype=torch.float64)]), "do not chain"),
    ],
    ids=["col_len", "row_ptr_len", "f_rows", "w_len", "coord_dim", "channels", "mlp_in", "mlp_chain"],
)
def test_error_mismatched_lengths(mutate, match):
    y, x, row_ptr, col, f, w, Ws, bs = _small()
    a = dict(y=y, x=x, row_ptr=row_ptr, col=col, f=f, w=w, Ws=Ws, bs=bs)
    mutate(a)
    with pytest.raises(ValueError, match=match):
        ops.gno_integral(a["y"], a["x"], a["row_ptr"], a["col"], a["f"], a["w"], a["Ws"], a["bs"])


def test_error_types_and_options():
    y, x, row_ptr, col, f, w, Ws, bs = _small()
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.gno_integral(y.half(), x.half(), row_ptr, col, f.half(), w.half(), [W.half() for W in Ws],
                         [b.half() for b in bs])  # fmt: skip
    with pytest.raises(TypeError, match="dtype"):
        ops.gno_integral(y, x.float(), row_ptr, col, f, w, Ws, bs)
    with pytest.raises(TypeError, match="col must be int64 or int32"):
        ops.gno_integral(y, x, row_ptr, col.float(), f, w, Ws, bs)
    with pytest.raises(ValueError, match="activation"):
        ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs, activation="elu")
    with pytest.raises(ValueError, match="does not use f_y"):
        P.gno_integral(y, x, row_ptr, col, f, w, None, *ops.pack_mlp(Ws, bs), "gelu", "linear_kernelonly", "sum")
    with pytest.raises(ValueError, match="needs f_y"):
        P.gno_integral(y, x, row_ptr, col, None, w, None, *ops.pack_mlp(Ws, bs), "gelu", "linear", "sum")
    with pytest.raises(ValueError, match="edge_weights must have one entry per edge"):
        ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs, edge_weights=torch.ones(col.shape[0] + 1,
                                                                                     dtype=torch.float64))
    with pytest.raises(ValueError, match="edge_weights must be 1-D|edge_weights must have 1"):
        ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs, edge_weights=torch.ones(col.shape[0], 1,
                                                                                     dtype=torch.float64))
    with pytest.raises(TypeError, match="edge_weights"):
        ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs, edge_weights=torch.ones(col.shape[0]))
    with pytest.raises(ValueError, match="at most 3 hidden layers"):
        ops.gno_integral(y, x, row_ptr, col, f, w, *random_mlp([4, 3, 3, 3, 3, 3]))
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.gno_integral(y, x, torch.tensor([0, 4, 3, 6]), col, f, w, Ws, bs)


def test_layer_errors():
    y, x, row_ptr, col, f, w, Ws, bs = _small()
    with pytest.raises(ValueError, match="transform"):
        GNOIntegral(3, 2, transform="quadratic")
    layer = GNOIntegral(3, 2, hidden=(5,), transform="linear_kernelonly").double()
    with pytest.raises(ValueError, match="does not use f_y"):
        layer(y, x, row_ptr, col, f, w)
    layer = GNOIntegral(3, 2, hidden=(5,)).double()
    with pytest.raises(ValueError, match="needs f_y"):
        layer(y, x, row_ptr, col, None, w)
    layer.kernel[1] = torch.nn.GELU(approximate="tanh")  # not what the fused kernel computes
    with pytest.raises(ValueError, match="fused=False"):
        layer(y, x, row_ptr, col, f, w)
    layer.fused = False
    assert layer(y, x, row_ptr, col, f, w).shape == (3, 3)


def test_thread_count_does_not_change_results():
    """One thread (no shared rows, one gradient buffer) vs the default pool (split rows, per-thread buffers)."""
    graph = random_graph([0, 2500, 3, 0, 1800, 1], N=60, d=3, C=4, seed=9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        compare_all(graph, (6,), "gelu", "nonlinear", "mean")
    finally:
        torch.set_num_threads(before)


def test_double_backward_raises_instead_of_silently_wrong():
    y, x, row_ptr, col, f, w, Ws, bs = _small()
    f = f.clone().requires_grad_(True)
    out = ops.gno_integral(y, x, row_ptr, col, f, w, Ws, bs)
    (g,) = torch.autograd.grad(out.square().sum(), f, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


# --------------------------------------------------------------------------- neuralop mapping


class _NeuralopStyleBlock(torch.nn.Module):
    """neuralop 2.0's IntegralTransform semantics, written here from its documented formula: kernel of
    [y_j, x_i] (+ f_j), GELU MLP in ``channel_mlp.fcs``, per-edge weights, sum reduction."""

    def __init__(self, widths, transform):
        super().__init__()
        self.transform_type, self.reduction, self.weighting_fn = transform, "sum", None
        self.channel_mlp = torch.nn.Module()
        self.channel_mlp.fcs = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.channel_mlp.non_linearity = F.gelu

    def forward(self, y, row_ptr, col, x, f=None, weights=None):
        lens = row_ptr[1:] - row_ptr[:-1]
        rows = torch.repeat_interleave(torch.arange(x.shape[0]), lens)
        z = torch.cat([y[col], x[rows]] + ([f[col]] if self.transform_type in FEEDS_F else []), 1)
        for i, fc in enumerate(self.channel_mlp.fcs):
            z = fc(z)
            if i + 1 < len(self.channel_mlp.fcs):
                z = F.gelu(z)
        if self.transform_type in ("linear", "nonlinear"):
            z = z * f[col]
        if weights is not None:
            z = z * weights[:, None]
        return torch.zeros(x.shape[0], z.shape[1], dtype=z.dtype).index_add(0, rows, z)


@pytest.mark.parametrize("transform", ALL_TRANSFORMS)
def test_from_neuralop_reproduces_the_block(transform):
    y, x, row_ptr, col, f, w = random_graph(random_lens(40), N=30, d=3, C=4, seed=15)
    ew = edge_weights_for((y, x, row_ptr, col))
    out_c = 6 if transform == "nonlinear_kernelonly" else 4
    block = _NeuralopStyleBlock([in_width(3, 4, transform), 16, 8, out_c], transform).double()
    layer = GNOIntegral.from_neuralop(block, 3)
    f_in = None if transform == "linear_kernelonly" else f
    torch.testing.assert_close(layer(y, x, row_ptr, col, f_in), block(y, row_ptr, col, x, f_in), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer(y, x, row_ptr, col, f_in, edge_weights=ew), block(y, row_ptr, col, x, f_in, ew),
                               rtol=1e-10, atol=1e-12)
    assert layer.out_channels == out_c


def test_from_neuralop_with_the_real_package():
    """Against neuralop itself (float32: its native segment_csr returns float32)."""
    it = pytest.importorskip("neuralop.layers.integral_transform")
    graph = random_graph(random_lens(40), N=30, d=3, C=4, seed=16, dtype=torch.float32)
    y, x, row_ptr, col, f, w = graph
    ew = edge_weights_for(graph)
    for transform in ALL_TRANSFORMS:
        torch.manual_seed(0)
        block = it.IntegralTransform(channel_mlp_layers=[in_width(3, 4, transform), 16, 4],
                                     transform_type=transform, use_torch_scatter=False)
        nbrs = {"neighbors_index": col, "neighbors_row_splits": row_ptr}
        f_in = None if transform == "linear_kernelonly" else f
        layer = GNOIntegral.from_neuralop(block, 3)
        with torch.no_grad():
            torch.testing.assert_close(layer(y, x, row_ptr, col, f_in), block(y, nbrs, x, f_in), rtol=1e-5,
                                       atol=1e-6)
            if f_in is None:
                continue  # neuralop 2.0 multiplies (E, C) in place by (1, E, 1) weights: only batched f works
            torch.testing.assert_close(layer(y, x, row_ptr, col, f_in, edge_weights=ew),
                                       block(y, nbrs, x, f_in[None], weights=ew)[0], rtol=1e-5, atol=1e-6)
