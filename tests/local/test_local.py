"""Tests of the local (DISCO-style) integral: the fused basis-sum op
(pyengine.ops.local_basis_aggregate), the bases, and pyengine.nn.LocalIntegral.

The op and the layer are compared with plain gather -> per-edge kernel -> scatter
references (forward and every gradient, float64). Discretisation consistency is
checked against the continuous integral computed by an independent polar
quadrature: refining the sampling must converge to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyengine import ops
from pyengine.nn import LocalBasis, LocalIntegral

from attention_reference import edge_rows, local_aggregate_ref

P = torch.ops.pyengine


def op_inputs(row_ptr, N, B, C, weights=True, index_dtype=torch.int64, seed=0):
    g = torch.Generator().manual_seed(seed)
    E = int(row_ptr[-1])
    col = torch.randint(0, max(N, 1), (E,), generator=g).to(index_dtype)
    psi = torch.randn(E, B, generator=g, dtype=torch.float64)
    f = torch.randn(N, C, generator=g, dtype=torch.float64)
    w = torch.rand(N, generator=g, dtype=torch.float64) + 0.1 if weights else None
    return psi, f, w, col


@pytest.mark.parametrize(
    "layout,N,B,C,weights",
    [
        (dict(M=40, max_deg=10, empty_frac=0.25), 30, 7, 5, True),
        (dict(M=40, max_deg=10, empty_frac=0.25), 30, 1, 1, False),
        (dict(lens=[0, 0]), 4, 3, 2, True),  # no edges
        (dict(lens=[2, 0, 9000, 0, 3]), 500, 5, 3, True),  # a row longer than the CPU split threshold (4096)
        (dict(lens=[3000, 0, 9000, 5]), 2, 3, 4, True),  # and transposed columns longer than it (2 sources)
        (dict(M=3, pattern="empty"), 0, 4, 3, False),  # no sources at all
    ],
)
def test_op_matches_reference(make_csr, layout, N, B, C, weights):
    row_ptr = make_csr(**layout)
    psi, f, w, col = op_inputs(row_ptr, N, B, C, weights)
    ours = [t.clone().requires_grad_(True) if t is not None else None for t in (psi, f, w)]
    ref = [t.clone().requires_grad_(True) if t is not None else None for t in (psi, f, w)]
    out = ops.local_basis_aggregate(ours[0], ours[1], row_ptr, col, ours[2])
    out_ref = local_aggregate_ref(ref[0], ref[1], row_ptr, col, ref[2])
    torch.testing.assert_close(out, out_ref, atol=1e-11, rtol=1e-10)
    gw = torch.randn_like(out)
    (out * gw).sum().backward()
    (out_ref * gw).sum().backward()
    for name, a, b in zip(("psi", "f", "weights"), ours, ref):
        if a is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-9, msg=lambda m: f"grad {name}: {m}")


def test_op_int32_col_float32(make_csr):
    row_ptr = make_csr(M=100, max_deg=20)
    psi, f, w, col = op_inputs(row_ptr, 64, 7, 9, index_dtype=torch.int32)
    out = ops.local_basis_aggregate(psi.float(), f.float(), row_ptr, col, w.float())
    torch.testing.assert_close(out.double(), local_aggregate_ref(psi, f, row_ptr, col, w), atol=1e-4, rtol=1e-4)


def test_op_gradcheck_and_opcheck(make_csr):
    row_ptr = make_csr(lens=[3, 0, 4, 2])
    psi, f, w, col = op_inputs(row_ptr, 5, 3, 2)
    args = [t.clone().requires_grad_(True) for t in (psi, f, w)]
    torch.autograd.gradcheck(lambda p, f, w: ops.local_basis_aggregate(p, f, row_ptr, col, w), args, atol=1e-8)
    torch.library.opcheck(P.local_basis_aggregate, (row_ptr, col, *args))
    torch.library.opcheck(P.local_basis_aggregate, (row_ptr, col, psi, f, None))
    g = torch.randn(4, 3, 2, dtype=torch.float64)
    row_ptr_t, col_t, perm = ops.csr_transpose(row_ptr, col, 5)
    torch.library.opcheck(P.local_basis_aggregate_backward,
                          (g, row_ptr, col, row_ptr_t, col_t, perm, psi, f, w, True, True, True))


def test_op_bad_inputs():
    row_ptr, col = torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1])
    psi, f = torch.randn(3, 4), torch.randn(2, 5)
    with pytest.raises(ValueError, match="col has entries >= the number of source points"):
        ops.local_basis_aggregate(psi, f, row_ptr, torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="psi must have one row per edge"):
        ops.local_basis_aggregate(psi[:2], f, row_ptr, col)
    with pytest.raises(ValueError, match="weights must have one entry per source point"):
        ops.local_basis_aggregate(psi, f, row_ptr, col, torch.ones(3))
    with pytest.raises(TypeError, match="psi has dtype"):
        ops.local_basis_aggregate(psi.double(), f, row_ptr, col)
    with pytest.raises(ValueError, match="row_ptr\\[-1\\] must equal the length of col"):
        ops.local_basis_aggregate(psi, f, torch.tensor([0, 2, 4]), col)


# --------------------------------------------------------------------------- bases


def test_basis_values_at_known_points():
    R = 0.6
    basis = LocalBasis(2, R, num_rings=3, angular_order=1)  # [centre, ring1 x (1, cos, sin), ring2 x (1, cos, sin)]
    assert basis.num_bases == 7
    rel = torch.tensor([[R / 3, 0.0], [0.0, R / 2], [0.0, 0.0], [R, 0.0], [0.0, -2 * R], [-R / 6, 0.0]],
                       dtype=torch.float64)
    expect = torch.tensor([
        [0, 1, 1, 0, 0, 0, 0],
        [0, 0.5, 0, 0.5, 0.5, 0, 0.5],
        [1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0.5, 0.5, -0.5, 0, 0, 0, 0],
    ], dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(basis(rel), expect, atol=1e-12, rtol=0)
    assert LocalBasis(3, 1.0, num_rings=3, angular_order=2).num_bases == 19
    assert LocalBasis(2, 1.0, num_rings=4, angular_order=2).num_bases == 16


def test_basis_continuous_at_boundary_and_centre():
    torch.manual_seed(0)
    for d, order in ((2, 2), (3, 2), (3, 1)):
        basis = LocalBasis(d, 1.0, num_rings=4, angular_order=order)
        u = torch.nn.functional.normalize(torch.randn(50, d, dtype=torch.float64), dim=1)
        assert basis(u * (1 - 1e-9)).abs().max() < 1e-7  # vanishes at the boundary
        near0 = basis(u * 1e-9)
        torch.testing.assert_close(near0[:, 0], torch.ones(50, dtype=torch.float64))
        assert near0[:, 1:].abs().max() < 1e-7
        rel = (u * 1e-3).requires_grad_(True)
        basis(rel).sum().backward()
        assert torch.isfinite(rel.grad).all()
        rel0 = torch.zeros(3, d, dtype=torch.float64, requires_grad=True)
        basis(rel0).sum().backward()
        assert torch.isfinite(rel0.grad).all()


# --------------------------------------------------------------------------- layer


def layer_ref(layer, y, x, row_ptr, col, f_y, weights=None):
    """Plain reference: per-edge kernel matrix K_e = sum_b psi_eb theta_b, message f_j K_e w_j, scatter."""
    row, col = edge_rows(row_ptr), col.long()
    psi = layer.basis(y[col] - x[row])
    K = torch.einsum("eb,bio->eio", psi, layer.theta)
    if weights is None:
        d = layer.coord_dim
        vol = math.pi ** (d / 2) / math.gamma(d / 2 + 1) * layer.radius**d
        w = (vol / row_ptr.diff().clamp_min(1).to(f_y.dtype))[row]
    else:
        w = weights[col]
    msg = torch.einsum("ei,eio->eo", f_y[col] * w.unsqueeze(1), K)
    out = torch.zeros(x.shape[0], layer.out_channels, dtype=f_y.dtype).index_add(0, row, msg)
    return out if layer.bias is None else out + layer.bias


@pytest.mark.parametrize("d,order,use_weights", [(2, 1, True), (2, 2, False), (3, 2, True), (3, 0, False)])
def test_layer_matches_reference(d, order, use_weights):
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(5)
    layer = LocalIntegral(3, 4, d, radius=0.3, angular_order=order).double()
    with torch.no_grad():
        layer.bias.normal_()
    y = torch.rand(150, d, generator=g, dtype=torch.float64)
    x = torch.rand(40, d, generator=g, dtype=torch.float64)
    row_ptr, col = ops.radius_search(y, x, 0.3)
    f = torch.randn(150, 3, generator=g, dtype=torch.float64)
    w = torch.rand(150, generator=g, dtype=torch.float64) if use_weights else None
    inputs = [t.clone().requires_grad_(True) for t in (y, x, f)] + ([w.clone().requires_grad_(True)] if use_weights else [])
    wt = inputs[3] if use_weights else None
    out = layer(inputs[0], inputs[1], row_ptr, col, inputs[2], wt)
    ref = layer_ref(layer, inputs[0], inputs[1], row_ptr, col, inputs[2], wt)
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=1e-10)
    gw = torch.randn_like(out)
    targets = list(layer.parameters()) + inputs
    for a, b in zip(torch.autograd.grad((out * gw).sum(), targets), torch.autograd.grad((ref * gw).sum(), targets)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_layer_gradcheck_and_awkward_graphs():
    torch.manual_seed(6)
    layer = LocalIntegral(2, 2, 2, radius=0.5, num_rings=2).double()
    g = torch.Generator().manual_seed(6)
    y = torch.rand(8, 2, generator=g, dtype=torch.float64)
    x = torch.rand(4, 2, generator=g, dtype=torch.float64)
    row_ptr, col = ops.radius_search(y, x, 0.5)
    f = torch.randn(8, 2, generator=g, dtype=torch.float64)
    args = [t.clone().requires_grad_(True) for t in (y, x, f)]
    torch.autograd.gradcheck(lambda y, x, f: layer(y, x, row_ptr, col, f, torch.full((8,), 0.1, dtype=torch.float64)),
                             args, atol=1e-8)
    # no edges at all: the output is the bias
    out = layer(y, x, torch.zeros(5, dtype=torch.long), torch.zeros(0, dtype=torch.long), f)
    torch.testing.assert_close(out, layer.bias.expand(4, 2))


def test_layer_bad_inputs():
    layer = LocalIntegral(3, 4, 2, radius=0.3)
    y, x, f = torch.rand(6, 2), torch.rand(3, 2), torch.randn(6, 3)
    row_ptr, col = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 5, 1])
    with pytest.raises(ValueError, match="f_y must have shape"):
        layer(y, x, row_ptr, col, f[:, :2])
    with pytest.raises(ValueError, match="y and x must have shapes"):
        layer(y[:, :1], x, row_ptr, col, f)
    with pytest.raises(ValueError, match="col must have shape"):
        layer(y, x, row_ptr, col[:2], f)
    with pytest.raises(ValueError, match="psi must have shape"):
        layer(y, x, row_ptr, col, f, psi=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="basis must be one of"):
        LocalIntegral(3, 4, 2, radius=0.3, basis="zernike")
    with pytest.raises(ValueError, match="radius must be a positive"):
        LocalIntegral(3, 4, 2, radius=-1.0)
    with pytest.raises(ValueError, match="coord_dim must be 2 or 3"):
        LocalIntegral(3, 4, 4, radius=0.3)


# --------------------------------------------------------------------------- discretisation consistency


def smooth_field(p):
    return torch.stack([torch.sin(2 * math.pi * p[:, 0]) * torch.cos(math.pi * p[:, 1]), p[:, 0] ** 2 + p[:, 1]], 1)


def continuous_reference(layer, x, radius, n_phi=96, n_gauss=10):
    """integral_{|r| <= R} K(r) f(x + r) dr by polar quadrature: Gauss-Legendre in |r| on
    each interval between the hats' knots (the integrand is smooth there), uniform in angle."""
    K = layer.basis.num_rings
    gl_t, gl_w = np.polynomial.legendre.leggauss(n_gauss)
    radii, rw = [], []
    for k in range(K):
        a, b = radius * k / K, radius * (k + 1) / K
        radii.append((b - a) / 2 * gl_t + (a + b) / 2)
        rw.append((b - a) / 2 * gl_w)
    radii, rw = np.concatenate(radii), np.concatenate(rw)
    phi = 2 * math.pi * (np.arange(n_phi) + 0.5) / n_phi
    rr, pp = np.meshgrid(radii, phi, indexing="ij")
    rel = torch.tensor(np.stack([rr * np.cos(pp), rr * np.sin(pp)], -1).reshape(-1, 2))
    w = torch.tensor((rw[:, None] * radii[:, None] * (2 * math.pi / n_phi)) * np.ones_like(pp)).reshape(-1)
    psi = layer.basis(rel)  # (Q, B)
    outs = []
    for xi in x:
        f = smooth_field(xi + rel)  # (Q, C)
        a = torch.einsum("qb,qc,q->bc", psi, f, w)
        outs.append(a.reshape(-1) @ layer.theta.reshape(-1, layer.out_channels))
    return torch.stack(outs)


def test_refinement_converges_to_the_continuous_integral():
    torch.manual_seed(7)
    R = 0.15
    layer = LocalIntegral(2, 3, 2, radius=R, num_rings=3, angular_order=2, bias=False).double()
    x = 0.3 + 0.4 * torch.rand(6, 2, dtype=torch.float64)
    with torch.no_grad():
        exact = continuous_reference(layer, x, R)
        errs, errs_mc = [], []
        for n in (16, 32, 64, 128):
            h = 1.0 / n
            g = (torch.arange(n, dtype=torch.float64) + 0.5) * h
            y = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
            row_ptr, col = ops.radius_search(y, x, R)
            f = smooth_field(y)
            out = layer(y, x, row_ptr, col, f, torch.full((n * n,), h * h, dtype=torch.float64))
            errs.append(float((out - exact).abs().max() / exact.abs().max()))
            out_mc = layer(y, x, row_ptr, col, f)  # default |ball| / deg weights
            errs_mc.append(float((out_mc - exact).abs().max() / exact.abs().max()))
    assert errs[-1] < 5e-3, errs
    assert errs[-1] < errs[1] / 3 and errs[2] < errs[0], errs
    assert errs_mc[-1] < 2e-2 and errs_mc[-1] < errs_mc[0], errs_mc


def test_op_double_backward_raises_clearly(make_csr):
    row_ptr = make_csr(lens=[2, 3])
    psi, f, w, col = op_inputs(row_ptr, 4, 2, 3)
    f.requires_grad_(True)
    (gf,) = torch.autograd.grad(ops.local_basis_aggregate(psi, f, row_ptr, col, w).square().sum(), f,
                                create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gf.sum().backward()
