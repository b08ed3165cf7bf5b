"""FNO spectral convolution and the ViT token processor, against analytic facts."""

import math

import pytest
import torch

from pyengine.nn.fno import FNOBlock, SpectralConvGrid
from pyengine.nn.transformer import ViTProcessor, sinusoidal_embedding


def _identity_conv(shape_modes, channels=1):
    conv = SpectralConvGrid(channels, channels, shape_modes).double()
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(channels):
            conv.weight[c, c] = 1.0
    conv.weight.data = conv.weight.data.to(torch.cdouble)
    return conv


@pytest.mark.parametrize("grid,modes,freq,kept", [
    ((12, 10), (5, 4), (2, 3), True),       # inside the kept box
    ((12, 10), (5, 4), (-2, 1), True),      # negative first-axis frequency
    ((12, 10), (5, 4), (3, 1), False),      # first axis keeps -2..2 only
    ((12, 10), (5, 4), (1, 4), False),      # last axis keeps 0..3 only
    ((9, 8, 7), (3, 3, 2), (1, -1, 1), True),
    ((9, 8, 7), (3, 3, 2), (0, 0, 2), False),
])
def test_spectral_conv_keeps_exactly_the_retained_modes(grid, modes, freq, kept):
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in grid], indexing="ij")
    phase = sum(2 * math.pi * k * a / n for k, a, n in zip(freq, axes, grid))
    x = torch.cos(phase + 0.3)[None, None]
    y = _identity_conv(modes)(x)
    expected = x if kept else torch.zeros_like(x)
    torch.testing.assert_close(y, expected, atol=1e-10, rtol=0)


def test_spectral_conv_is_translation_equivariant_and_linear():
    torch.manual_seed(0)
    conv = SpectralConvGrid(3, 2, (4, 3)).double()
    conv.weight.data = conv.weight.data.to(torch.cdouble)
    x, z = torch.randn(2, 3, 10, 8, dtype=torch.float64), torch.randn(2, 3, 10, 8, dtype=torch.float64)
    shifted = conv(torch.roll(x, shifts=(3, 5), dims=(2, 3)))
    torch.testing.assert_close(shifted, torch.roll(conv(x), shifts=(3, 5), dims=(2, 3)))
    torch.testing.assert_close(conv(2 * x - z), 2 * conv(x) - conv(z))


def test_spectral_conv_errors():
    with pytest.raises(ValueError, match="modes"):
        SpectralConvGrid(1, 1, (0, 2))
    conv = SpectralConvGrid(2, 2, (6, 3))
    with pytest.raises(ValueError, match="cannot hold"):
        conv(torch.randn(1, 2, 5, 8))
    with pytest.raises(ValueError, match="expected x"):
        conv(torch.randn(1, 3, 8, 8))


def test_fno_block_gradients():
    torch.manual_seed(1)
    block = FNOBlock(2, (3, 2, 2)).double()
    for p in block.parameters():
        if p.is_complex():
            p.data = p.data.to(torch.cdouble)
    x = torch.randn(1, 2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: block(t), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("grid,patch", [((4, 6), 2), ((6, 4, 2), 2), ((3, 5), 1)])
def test_vit_patches_are_spatially_contiguous_and_round_trip(grid, patch):
    proc = ViTProcessor(grid, channels=2, dim=16, depth=1, heads=2, patch=patch)
    coords = torch.stack(torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij"), -1).reshape(1, -1, len(grid))
    patches = proc._patchify(coords.double())  # (1, n_patches, p^d * d)
    per_patch = patches.view(patches.shape[1], -1, len(grid))
    # every patch covers one p^d block: coordinates // patch are constant inside it
    assert bool(((per_patch // patch) == (per_patch[:, :1] // patch)).all())
    torch.testing.assert_close(proc._unpatchify(patches, len(grid)), coords.double())


def test_vit_processor_conditioning_and_shapes():
    torch.manual_seed(2)
    proc = ViTProcessor((4, 4, 4), channels=8, dim=32, depth=2, heads=4, patch=2, cond_dim=16)
    x = torch.randn(3, 64, 8)
    cond = sinusoidal_embedding(torch.tensor([0.0, 0.5, 1.0]), 16)
    y = proc(x, cond)
    assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="cond"):
        proc(x)
    with pytest.raises(ValueError, match="divisible"):
        ViTProcessor((4, 5), channels=2, patch=2)
    # adaptive norms start as identity modulation, so conditioning changes nothing until trained
    torch.testing.assert_close(y, proc(x, torch.randn(3, 16)))
