"""GraphCache: identity hits touch no tensor data; copies, in-place edits and reused ids fall back correctly."""

import pytest
import torch

import pyengine.models.base as base
from pyengine.models import GraphCache


@pytest.fixture
def counted_hash(monkeypatch):
    calls = []
    real = base.content_hash

    def spy(*parts):
        calls.append(parts[0])
        return real(*parts)

    monkeypatch.setattr(base, "content_hash", spy)
    return calls


def test_identity_hit_skips_the_content_hash(counted_hash):
    cache, pts = GraphCache(), torch.rand(50, 3)
    built = []
    first = cache.get("g", (pts,), (0.1,), lambda: built.append(1) or "graph")
    assert first == "graph" and len(counted_hash) == 1
    for _ in range(5):
        assert cache.get("g", (pts,), (0.1,), lambda: built.append(1) or "other") == "graph"
    assert len(counted_hash) == 1 and len(built) == 1 and cache.hits == 5


def test_equal_copy_hits_by_content_and_params_separate(counted_hash):
    cache, pts = GraphCache(), torch.rand(50, 3)
    cache.get("g", (pts,), (0.1,), lambda: "a")
    assert cache.get("g", (pts.clone(),), (0.1,), lambda: "b") == "a"  # same values: content hit
    assert cache.get("g", (pts,), (0.2,), lambda: "c") == "c"  # other parameters: a miss
    assert cache.get("h", (pts,), (0.1,), lambda: "d") == "d"  # other kind: a miss
    assert cache.misses == 3 and cache.hits == 1


def test_in_place_edit_is_a_miss():
    cache, pts = GraphCache(), torch.rand(50, 3)
    cache.get("g", (pts,), (0.1,), lambda: "before")
    pts[0, 0] += 1.0  # bumps the version counter: the identity key must not be trusted
    assert cache.get("g", (pts,), (0.1,), lambda: "after") == "after"


def test_freed_tensor_id_reuse_is_not_a_hit():
    cache = GraphCache()
    for i in range(200):  # CPython reuses ids of freed objects: each new tensor must still get its own graph
        pts = torch.full((8, 3), float(i))
        assert cache.get("g", (pts,), (), lambda: i) == i
        del pts
    assert cache.misses == 200


def test_eviction_keeps_fast_map_bounded():
    cache = GraphCache(max_entries=4)
    keep = [torch.rand(5, 3) for _ in range(40)]
    for t in keep:
        cache.get("g", (t,), (), lambda: 0)
    assert len(cache._store) == 4 and len(cache._fast) <= 4 * 4 + 1
    assert cache.get("g", (keep[-1],), (), lambda: 1) == 0  # most recent survives


def test_compiled_hit_has_no_graph_break():
    """A hit inside torch.compile is traced as guards on the tensors' identity: no graph break,
    no host sync, and the cached structure is what the compiled code uses."""
    cache, pts = GraphCache(), torch.rand(30, 3)
    def step(x):
        return x - cache.get("centre", (x,), (), lambda: x.mean(0, keepdim=True))

    eager = step(pts)  # the eager miss fills the cache
    explanation = torch._dynamo.explain(step)(pts)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(step, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(pts), eager)
    other = torch.rand(30, 3)  # a different tensor: the guard fails, the miss is traced and correct
    torch.testing.assert_close(compiled(other), other - other.mean(0, keepdim=True))
