"""SpectralConvPoints against the dense Fourier-matrix layer it replaces (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from pyengine.nn import SpectralConvPoints


def dense_reference(layer, points, x, weights=None):
    """The peer codebases' formulation: an explicit (N, K) Fourier matrix."""
    n_modes = layer.n_modes
    axes = [torch.arange(n, dtype=torch.float64) - n // 2 for n in n_modes]
    k = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(n_modes))
    theta = points.double() * (2 * math.pi / layer.period)
    E = torch.exp(-1j * (theta @ k.T))  # (N, K)
    q = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64) if weights is None else weights
    coeffs = (x * q[:, None]).to(torch.complex128).T @ E  # (Cin, K)
    W = layer.weight.to(torch.complex128).reshape(layer.in_channels, layer.out_channels, -1)
    mixed = torch.einsum("ik,iok->ok", coeffs, W)
    y = E.conj() @ mixed.T  # (N, Cout)
    return y if x.is_complex() else y.real


@pytest.mark.parametrize("d,n_modes", [(1, 9), (2, (6, 5)), (3, (4, 5, 3))], ids=str)
def test_matches_dense_fourier_layer(d, n_modes):
    layer = SpectralConvPoints(3, 2, n_modes, d, eps=1e-12, period=2.5)
    N = 157
    points = torch.rand(N, d, dtype=torch.float64) * 2.0
    x = torch.randn(N, 3, dtype=torch.float64)
    w = torch.rand(N, dtype=torch.float64)
    for weights in (None, w):
        torch.testing.assert_close(layer(points, x, weights), dense_reference(layer, points, x, weights),
                                   rtol=1e-9, atol=1e-11)
    xc = torch.randn(N, 3, dtype=torch.complex128)
    torch.testing.assert_close(layer(points, xc), dense_reference(layer, points, xc), rtol=1e-9, atol=1e-11)


def test_gradients_match_dense_layer():
    layer = SpectralConvPoints(2, 3, (5, 4), 2, eps=1e-12)
    points = (torch.rand(80, 2, dtype=torch.float64) * 6).requires_grad_()
    x = torch.randn(80, 2, dtype=torch.float64, requires_grad=True)
    g = torch.randn(80, 3, dtype=torch.float64)
    grads = torch.autograd.grad((layer(points, x) * g).sum(), (points, x, layer.weight))
    ref = torch.autograd.grad((dense_reference(layer, points, x) * g).sum(), (points, x, layer.weight))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a.to(b.dtype), b, rtol=1e-7, atol=1e-9)


def test_plan_reuse_and_single_precision():
    layer = SpectralConvPoints(4, 4, 6, 3, eps=1e-6)
    points = torch.rand(500, 3) * 6
    x = torch.randn(500, 4)
    plan = layer.make_plan(points)
    out = layer(points, x, plan=plan)
    assert out.dtype == torch.float32 and out.shape == (500, 4)
    torch.testing.assert_close(out, layer(points, x), rtol=0, atol=0)
    ref = dense_reference(layer, points, x.double())
    assert float((out.double() - ref).detach().norm() / ref.detach().norm()) < 1e-5
    with pytest.raises(ValueError, match="x must be"):
        layer(points, torch.randn(500, 3))
    with pytest.raises(ValueError, match="plan"):
        layer(points[:10], x[:10], plan=plan)
