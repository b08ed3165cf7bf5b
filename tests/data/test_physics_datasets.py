"""Dataset builders: determinism by seed, disk cache hits and misses, parallel == serial."""

import pytest
import torch

from pyengine.data import DiskCache
from pyengine.data.physics import build_darcy_dataset, build_flow_dataset

# Coarse settings keep each solve well under a second; accuracy is tested elsewhere.
COARSE = {"h_body": 0.25, "h_box": 2.0, "box": 4.0, "grading": 2.0}


def _same(a, b):
    return all(
        torch.equal(x.points, y.points) and torch.equal(x.fields["cp"], y.fields["cp"])
        and torch.equal(x.cells["triangle"], y.cells["triangle"]) for x, y in zip(a, b)
    ) and len(a) == len(b)


@pytest.fixture(scope="module")
def serial():
    return build_flow_dataset(3, "ellipsoid", seed=1, resolution=COARSE, workers=0, cache=False, progress=False)


def test_cache_miss_then_hit(tmp_path, serial):
    cache = DiskCache(tmp_path)
    first = build_flow_dataset(3, "ellipsoid", seed=1, resolution=COARSE, workers=0, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (0, 3)
    assert len(list((tmp_path / "potential_flow").glob("*.pt"))) == 3
    again = build_flow_dataset(3, "ellipsoid", seed=1, resolution=COARSE, workers=0, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (3, 3)
    assert _same(first, again) and _same(first, serial)
    # A larger dataset reuses the first three shapes and solves only the new one.
    build_flow_dataset(4, "ellipsoid", seed=1, resolution=COARSE, workers=0, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (6, 4)
    # Any parameter change is a different key: a new velocity misses.
    build_flow_dataset(1, "ellipsoid", seed=1, velocity=(0, 1, 0), resolution=COARSE, workers=0, cache=cache,
                       progress=False)
    assert cache.misses == 5


def test_same_seed_same_data_other_seed_other_shapes(serial):
    again = build_flow_dataset(3, "ellipsoid", seed=1, resolution=COARSE, workers=0, cache=False, progress=False)
    assert _same(serial, again)
    other = build_flow_dataset(3, "ellipsoid", seed=2, resolution=COARSE, workers=0, cache=False, progress=False)
    assert [s.metadata["body"] for s in other] != [s.metadata["body"] for s in serial]
    assert not torch.equal(other[0].fields["cp"][:10], serial[0].fields["cp"][:10])


def test_parallel_build_equals_serial(serial):
    par = build_flow_dataset(3, "ellipsoid", seed=1, resolution=COARSE, workers=2, cache=False, progress=False)
    assert _same(par, serial)


def test_darcy_dataset_cached_and_seeded(tmp_path):
    cache = DiskCache(tmp_path)
    a = build_darcy_dataset(3, seed=5, h=0.08, cache=cache, workers=0, progress=False)
    b = build_darcy_dataset(3, seed=5, h=0.08, cache=cache, workers=0, progress=False)
    assert (cache.hits, cache.misses) == (3, 3)
    assert all(torch.equal(x.fields["u"], y.fields["u"]) for x, y in zip(a, b))
    c = build_darcy_dataset(3, seed=6, h=0.08, cache=False, workers=0, progress=False)
    assert c[0].metadata["holes"] != a[0].metadata["holes"]


def test_bad_dataset_parameters_raise():
    with pytest.raises(ValueError, match="n"):
        build_flow_dataset(0, cache=False)
    with pytest.raises(ValueError, match="kind"):
        build_flow_dataset(2, "boat", cache=False)
    with pytest.raises(ValueError, match="h_body"):
        build_flow_dataset(2, resolution={"h_body": -1.0}, cache=False)
    with pytest.raises(ValueError, match="unknown resolution"):
        build_flow_dataset(2, resolution={"mesh": 1.0}, cache=False)
    with pytest.raises(ValueError, match="workers"):
        build_flow_dataset(1, "ellipsoid", resolution=COARSE, workers=-1, cache=False, progress=False)
