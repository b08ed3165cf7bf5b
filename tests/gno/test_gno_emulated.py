"""The fused GNO integral's CUDA kernels, run on the CPU SIMT emulator (tests/simt).

``torch.ops.pyengine_emu.gno_integral{,_backward}`` is the CUDA entry point of
csrc/gno/gno_cuda.cu compiled for the emulator: the same kernels, thread by
thread, on CPU tensors. Both implementations are checked against the CPU kernel
(itself checked against plain PyTorch in test_gno.py):

* FMA kernels (float64; float32 with TF32 off, PyTorch's default): to rounding;
* tensor-core kernels (float32 with TF32 allowed): against the float64 result,
  within TF32 precision (products of 11-bit mantissas, float32 sums).

Forward value and every gradient, on graphs that exercise the kernels' edge
cases: rows crossing the forward's 256-edge chunks and the backward's CTA tiles,
one huge row, runs of empty rows (the row search), zero edges, layer widths that
are not multiples of 16, more than four 16-wide output tiles, depths 1 to 4.
"""

from __future__ import annotations

import pytest
import torch

from pyengine.ops.gno import pack_mlp
from test_gno import edge_weights_for, in_width, random_graph, random_lens, random_mlp

pytestmark = pytest.mark.emulated
P = torch.ops.pyengine


@pytest.fixture
def tf32(request):
    """Sets torch.backends.cuda.matmul.allow_tf32 (the switch the CUDA op follows) for one test."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = request.param
    yield request.param
    torch.backends.cuda.matmul.allow_tf32 = old


def run_op(ops, graph, Ws, bs, act, transform, reduction, dtype, need=(True, True, True, True, True), g=None,
           ew=None):
    """Forward and backward of one op namespace; returns [out, grad_y, grad_x, grad_f, grad_w, grad_ew, grad_params]."""
    y, x, row_ptr, col, f, w = graph
    params, dims = pack_mlp(Ws, bs)
    f_in = None if transform == "linear_kernelonly" else f
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    args = [cast(y), cast(x), row_ptr, col, cast(f_in), cast(w), cast(ew), cast(params), dims, act, transform,
            reduction]
    out = ops.gno_integral(*args)
    if g is None:
        g = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
    need = list(need) + [True] * (5 - len(need))
    need = [need[0], need[1], need[2] and f_in is not None, need[3] and w is not None, need[4] and ew is not None]
    grads = ops.gno_integral_backward(g.to(dtype), *args, need)
    return [out, *grads]


def compare(got, ref, tol_rel):
    names = ["out", "grad_y", "grad_x", "grad_f", "grad_w", "grad_ew", "grad_params"]
    for name, a, b in zip(names, got, ref):
        assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        if b.numel() == 0:
            continue
        scale = max(float(b.abs().max()), 1e-12)
        torch.testing.assert_close(a.double(), b.double(), rtol=tol_rel, atol=tol_rel * scale,
                                   msg=lambda m: f"{name}: {m}")  # fmt: skip


# Row-length layouts: ~1000 edges each, so the emulator stays quick.
LAYOUTS = {
    "random": lambda: random_lens(60, max_deg=30, empty_frac=0.25),
    "one_huge_row": lambda: [0, 3, 1300, 0, 0, 5, 40],  # > 1024 (FMA pieces), > 256 (TC chunks)
    "empty_runs": lambda: [0] * 40 + [7] + [0] * 300 + [33, 1] + [0] * 9 + [300] + [0] * 5,
    "zero_edges": lambda: [0, 0, 0],
}

TC_TOL = 4e-3  # TF32: relative to the largest entry of each output


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("transform", ["linear", "nonlinear", "linear_kernelonly"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("tf32", [True], indirect=True, ids=["tf32"])
def test_tensor_cores_match_cpu(emu, tf32, layout, transform, reduction):
    graph = random_graph(LAYOUTS[layout](), N=90, d=3, C=24)
    Ws, bs = random_mlp([in_width(3, 24, transform), 40, 20, 24])
    ref = run_op(P, graph, Ws, bs, "gelu", transform, reduction, torch.float64)
    got = run_op(emu, graph, Ws, bs, "gelu", transform, reduction, torch.float32)
    compare(got, ref, TC_TOL)


@pytest.mark.parametrize("layout", ["random", "one_huge_row"])
@pytest.mark.parametrize("transform,C_out", [("linear", 12), ("nonlinear_kernelonly", 7)])
@pytest.mark.parametrize("tf32", [True, False], indirect=True, ids=["tf32", "ieee"])
def test_edge_weights_and_nonlinear_kernelonly(emu, tf32, layout, transform, C_out):
    """Per-edge weights (with per-source weights) and k(x, y, f) of another width than f, both kernels."""
    graph = random_graph(LAYOUTS[layout](), N=70, d=3, C=12, seed=3)
    ew = edge_weights_for(graph)
    Ws, bs = random_mlp([in_width(3, 12, transform), 24, C_out])
    ref = run_op(P, graph, Ws, bs, "gelu", transform, "sum", torch.float64, ew=ew)
    got = run_op(emu, graph, Ws, bs, "gelu", transform, "sum", torch.float32, ew=ew)
    compare(got, ref, TC_TOL if tf32 else 2e-5)
    assert got[5].shape == (graph[3].shape[0],)


@pytest.mark.parametrize(
    "hidden,C,act,col_dtype",
    [
        ((), 5, "gelu", torch.int64),  # a single Linear layer
        ((80,), 70, "silu", torch.int32),  # five 16-wide output tiles: two groups
        ((9, 17, 33), 3, "gelu", torch.int64),  # three hidden layers, odd widths
        ((16,), 200, "tanh", torch.int32),  # wide output, 7 channels per lane
    ],
)
@pytest.mark.parametrize("tf32", [True], indirect=True, ids=["tf32"])
def test_tensor_cores_widths_depths_activations(emu, tf32, hidden, C, act, col_dtype):
    graph = random_graph(random_lens(50, max_deg=25), N=60, d=2, C=C, col_dtype=col_dtype)
    Ws, bs = random_mlp([4, *hidden, C])
    ref = run_op(P, graph, Ws, bs, act, "linear", "mean", torch.float64)
    got = run_op(emu, graph, Ws, bs, act, "linear", "mean", torch.float32)
    compare(got, ref, TC_TOL)


@pytest.mark.parametrize("tf32", [True], indirect=True, ids=["tf32"])
def test_tensor_cores_relu(emu, tf32):
    """ReLU's derivative jumps at 0 and TF32 moves pre-activations by ~1e-3, so a few
    edges near the kink may differ: the forward is compared entry by entry, the
    gradients in aggregate (a kernel bug would be off by O(1) everywhere)."""
    graph = random_graph(random_lens(50, max_deg=25), N=60, d=2, C=40)
    Ws, bs = random_mlp([4, 80, 40])
    ref = run_op(P, graph, Ws, bs, "relu", "linear", "mean", torch.float64)
    got = run_op(emu, graph, Ws, bs, "relu", "linear", "mean", torch.float32)
    compare(got[:1], ref[:1], TC_TOL)
    for a, b in zip(got[1:], ref[1:]):
        if b.numel():
            assert float((a.double() - b).abs().mean() / b.abs().mean()) < 5e-3


@pytest.mark.parametrize("need", [(False, False, False, False), (False, True, False, False), (True, False, True, False)],
                         ids=["params_only", "x_only", "y_and_f"])  # fmt: skip
@pytest.mark.parametrize("tf32", [True], indirect=True, ids=["tf32"])
def test_tensor_cores_partial_gradients(emu, tf32, need):
    graph = random_graph(random_lens(40, max_deg=30), N=50, d=3, C=8)
    Ws, bs = random_mlp([6 + 8, 32, 8])
    ref = run_op(P, graph, Ws, bs, "gelu", "nonlinear", "sum", torch.float64, need)
    got = run_op(emu, graph, Ws, bs, "gelu", "nonlinear", "sum", torch.float32, need)
    compare(got, ref, TC_TOL)
    for k, wanted in enumerate(need):
        assert (got[1 + k].numel() > 0) == wanted
    assert got[5].numel() == 0  # no edge weights given


@pytest.mark.parametrize("layout", ["random", "one_huge_row", "empty_runs"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("tf32", [False], indirect=True, ids=["ieee"])
@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_fma_kernels_match_cpu(emu, tf32, layout, dtype, act):
    graph = random_graph(LAYOUTS[layout](), N=90, d=3, C=24)
    Ws, bs = random_mlp([6 + 24, 40, 20, 24])
    ref = run_op(P, graph, Ws, bs, act, "nonlinear", "mean", dtype)
    got = run_op(emu, graph, Ws, bs, act, "nonlinear", "mean", dtype)
    compare(got, ref, 1e-10 if dtype == torch.float64 else 2e-5)


def test_tf32_switch_selects_the_kernel(emu):
    """float32 follows PyTorch's matmul policy: exact FMA by default, tensor cores once TF32 is allowed."""
    graph = random_graph(random_lens(40, max_deg=30), N=50, d=3, C=16)
    Ws, bs = random_mlp([6, 64, 16])
    ref = run_op(P, graph, Ws, bs, "gelu", "linear", "sum", torch.float64)[0]
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        errs = {}
        for allow in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = allow
            out = run_op(emu, graph, Ws, bs, "gelu", "linear", "sum", torch.float32)[0]
            errs[allow] = float((out.double() - ref).abs().max() / ref.abs().max())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    assert errs[False] < 1e-6, errs
    assert 1e-5 < errs[True] < TC_TOL, errs


@pytest.mark.parametrize("tf32", [True, False], indirect=True, ids=["tf32", "ieee"])
def test_too_wide_mlp_is_a_clear_error(emu, tf32):
    graph = random_graph([3, 2], N=4, d=3, C=8)
    Ws, bs = random_mlp([6, 2048, 8])  # weights alone exceed the 227 KiB of shared memory
    with pytest.raises(ValueError, match="shared memory"):
        run_op(emu, graph, Ws, bs, "gelu", "linear", "sum", torch.float32)


def test_more_than_256_channels_is_a_clear_error(emu):
    graph = random_graph([3, 2], N=4, d=2, C=300)
    Ws, bs = random_mlp([4, 300])
    with pytest.raises(ValueError, match="at most 256 channels"):
        run_op(emu, graph, Ws, bs, "gelu", "linear", "sum", torch.float32)
