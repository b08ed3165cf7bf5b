import numpy as np
import pytest
import torch

from pyengine.data import DiskCache, content_hash


def test_hash_is_content_based_and_structure_sensitive():
    a = torch.arange(6.0).reshape(2, 3)
    assert content_hash(a, 0.1) == content_hash(a.clone(), 0.1)
    assert content_hash(a, 0.1) == content_hash(a.numpy(), 0.1)
    assert content_hash(a, 0.1) != content_hash(a, 0.2)
    assert content_hash(a) != content_hash(a.reshape(3, 2))
    assert content_hash(a) != content_hash(a.double())
    assert content_hash(["ab", "c"]) != content_hash(["a", "bc"])
    assert content_hash({"x": 1, "y": 2}) == content_hash({"y": 2, "x": 1})
    with pytest.raises(TypeError, match="cannot hash"):
        content_hash(object())


def test_hits_misses_and_corrupt_entries(tmp_path):
    cache = DiskCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"v": torch.tensor([1.0, 2.0])}

    k = content_hash(np.ones(3), "graph")
    v1 = cache.get_or_compute("graphs", k, compute)
    v2 = cache.get_or_compute("graphs", k, compute)
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)
    assert torch.equal(v1["v"], v2["v"])
    cache.path("graphs", k).write_bytes(b"not a torch file")
    cache.get_or_compute("graphs", k, compute)
    assert (cache.misses, len(calls)) == (2, 2)
    assert not list((tmp_path / "graphs").glob(".tmp-*"))
    cache.clear()
    assert not list((tmp_path / "graphs").glob("*.pt"))


def test_disabled_cache_always_computes(tmp_path):
    cache = DiskCache(tmp_path, enabled=False)
    assert cache.get_or_compute("x", "k", lambda: 3) == 3
    assert cache.get_or_compute("x", "k", lambda: 4) == 4
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="namespace"):
        DiskCache(tmp_path).path("../evil", "k")
