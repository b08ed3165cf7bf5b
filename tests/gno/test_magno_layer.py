"""pyengine.nn.MAGNOIntegral: GAOT's cosine-attention kernel integral on the fused GNO kernel.

Reference: the layer's formula evaluated per edge in float64 (cosine of the
normalised coordinates, optional quadrature weights in the softmax, kernel MLP of
[x, y], sum over the row), forward and every gradient.
"""

import pytest
import torch
import torch.nn.functional as F

from pyengine import ops
from pyengine.nn import MAGNOIntegral


def reference(layer, y, x, row_ptr, col, f, w=None):
    lens = row_ptr[1:] - row_ptr[:-1]
    rows = torch.repeat_interleave(torch.arange(x.shape[0]), lens)
    col = col.long()
    s = (F.normalize(x[rows], dim=1) * F.normalize(y[col], dim=1)).sum(1)
    e = torch.exp(s) * (1 if w is None else w[col])
    den = torch.zeros(x.shape[0], dtype=e.dtype).index_add(0, rows, e)
    alpha = e / den[rows]
    k = layer.integral.kernel(torch.cat([x[rows], y[col]], 1))
    return torch.zeros(x.shape[0], f.shape[1], dtype=f.dtype).index_add(0, rows, alpha[:, None] * k * f[col])


@pytest.mark.parametrize("use_w", [False, True], ids=["plain", "quadrature"])
def test_magno_matches_reference(use_w):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(120, 3, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.rand(45, 3, generator=g, dtype=torch.float64) * 2 - 1
    row_ptr, col = ops.radius_search(y, x, 0.5)
    f = torch.randn(120, 6, generator=g, dtype=torch.float64)
    w = torch.rand(120, generator=g, dtype=torch.float64) + 0.1 if use_w else None
    layer = MAGNOIntegral(6, 3, hidden=(16, 8)).double()
    leaves = [t.clone().requires_grad_(True) for t in (y, x, f)]
    out = layer(*leaves[:2], row_ptr, col, leaves[2], weights=w)
    ref_leaves = [t.clone().requires_grad_(True) for t in (y, x, f)]
    ref = reference(layer, *ref_leaves[:2], row_ptr, col, ref_leaves[2], w)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    go = torch.randn_like(out)
    params = list(layer.parameters())
    got = torch.autograd.grad(out, leaves + params, go)
    want = torch.autograd.grad(ref, ref_leaves + params, go)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    layer.integral.fused = False
    torch.testing.assert_close(layer(y, x, row_ptr, col, f, weights=w), ref.detach(), rtol=1e-10, atol=1e-12)


def test_magno_quadrature_weights_make_the_integral_density_independent():
    """Duplicating every source with half the weight changes nothing (a density-independent integral)."""
    g = torch.Generator().manual_seed(1)
    y = torch.rand(80, 2, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.rand(20, 2, generator=g, dtype=torch.float64) * 2 - 1
    f = torch.randn(80, 4, generator=g, dtype=torch.float64)
    w = torch.rand(80, generator=g, dtype=torch.float64) + 0.5
    layer = MAGNOIntegral(4, 2, hidden=(8,)).double()
    a = layer(y, x, *ops.radius_search(y, x, 0.6), f, weights=w)
    yy, ff, ww = torch.cat([y, y]), torch.cat([f, f]), torch.cat([w, w]) / 2
    b = layer(yy, x, *ops.radius_search(yy, x, 0.6), ff, weights=ww)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        layer(y, x, *ops.radius_search(y, x, 0.6), f, weights=w - 1)
