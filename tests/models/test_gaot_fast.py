"""pyengine's GAOT-fast variant: checkpoints written when it was called "gaot" still load."""

import torch

from pyengine.models import build
from pyengine.pipeline.checkpoint import load_model

LEGACY = dict(hidden=16, grid=(4, 4, 4), radii_cells=(1.0, 2.0), decoder_radius_cells=1.5, heads=2, max_neighbors=16,
              geometry_embedding=True, dim=32, depth=1, vit_heads=2, patch=2, padding=0.05, skip_neighbors=3,
              time_conditioned=False)


def test_legacy_gaot_checkpoint_loads_as_gaot_fast():
    torch.manual_seed(0)
    model = build("gaot_fast", 3, 1, 3, **LEGACY).eval()
    pts, f = torch.rand(150, 3), torch.randn(150, 3)
    with torch.no_grad():
        want = model(pts, f)
    state = model.state_dict()
    # earlier versions stored a (dead) bias in every attention key projection
    keys = [k[: -len("weight")] + "bias" for k in state if k.endswith("key.weight")]
    assert keys
    state.update({k: torch.randn(state[k[: -len("bias")] + "weight"].shape[0]) for k in keys})
    payload = {"family": "gaot", "in_channels": 3, "out_channels": 1, "coord_dim": 3, "config": dict(LEGACY),
               "state_dict": state, "normalizer": None, "fields": {"cp": 1}}
    loaded, _ = load_model(payload)
    assert loaded.family == "gaot_fast"
    with torch.no_grad():
        torch.testing.assert_close(loaded(pts, f), want, rtol=1e-5, atol=1e-6)


def test_gaot_with_gaot_fast_options_names_the_variant():
    import pytest

    with pytest.raises(ValueError, match="gaot_fast"):
        build("gaot", 3, 1, 3, heads=2, skip_neighbors=3)
