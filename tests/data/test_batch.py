"""Batch: padding-free collation with offsets, per-sample slicing, PyG round trip."""

from __future__ import annotations

import pytest
import torch

from pyengine import ops
from pyengine.data import Batch, Sample


def _samples(dtype=torch.float64) -> list[Sample]:
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    a = Sample(points=r(5, 3), features=r(5, 2), queries=r(4, 3),
               fields={"p": r(4), "u": r(4, 3)}, cells={"triangle": torch.tensor([[0, 1, 2], [2, 3, 4]])},
               metadata={"name": "a", "params": [1.0, 2.0]})
    b = Sample(points=r(7, 3), features=r(7, 2), fields={"p": r(7), "u": r(7, 3)},
               cells={"triangle": torch.tensor([[0, 5, 6]]), "tetra": torch.tensor([[0, 1, 2, 3]])},
               metadata={"name": "b"})
    c = Sample(points=r(3, 3), features=r(3, 2), queries=r(6, 3), fields={"p": r(6), "u": r(6, 3)})
    return [a, b, c]


def _assert_same_sample(x: Sample, y: Sample):
    assert torch.equal(x.points, y.points)
    assert (x.features is None) == (y.features is None)
    if x.features is not None:
        assert torch.equal(x.features, y.features)
    assert (x.queries is None) == (y.queries is None)
    if x.queries is not None:
        assert torch.equal(x.queries, y.queries)
    assert x.fields.keys() == y.fields.keys()
    for k in x.fields:
        assert torch.equal(x.fields[k], y.fields[k])
    assert x.cells.keys() == y.cells.keys()
    for k in x.cells:
        assert torch.equal(x.cells[k], y.cells[k])
    assert x.metadata == y.metadata
    assert (x.query_features is None) == (y.query_features is None)
    if x.query_features is not None:
        assert torch.equal(x.query_features, y.query_features)


def test_collation_offsets_and_vectors():
    s = _samples()
    b = Batch.from_samples(s)
    assert len(b) == 3
    assert b.ptr.tolist() == [0, 5, 12, 15]
    assert b.query_ptr.tolist() == [0, 4, 11, 17]  # sample b has no queries: its 7 points are its queries
    assert b.batch.tolist() == [0] * 5 + [1] * 7 + [2] * 3
    assert b.query_batch.tolist() == [0] * 4 + [1] * 7 + [2] * 6
    assert b.has_queries.tolist() == [True, False, True]
    assert b.points.shape == (15, 3) and b.features.shape == (15, 2)
    assert b.fields["p"].shape == (17,) and b.fields["u"].shape == (17, 3)
    assert torch.equal(b.queries[4:11], s[1].points)
    # connectivity is offset into the concatenated points
    assert b.cells["triangle"].tolist() == [[0, 1, 2], [2, 3, 4], [5, 10, 11]]
    assert b.cell_ptr["triangle"].tolist() == [0, 2, 3, 3]
    assert b.cells["tetra"].tolist() == [[5, 6, 7, 8]] and b.cell_ptr["tetra"].tolist() == [0, 0, 1, 1]


def test_per_sample_round_trip_and_device_move():
    s = _samples()
    b = Batch.from_samples(s)
    for x, y in zip(s, b.to_samples()):
        _assert_same_sample(x, y)
    _assert_same_sample(b[-1], s[2])
    moved = b.to("cpu")
    assert moved is not b and torch.equal(moved.points, b.points)
    with pytest.raises(IndexError):
        b[3]


def test_batch_vectors_feed_batched_ops():
    """A batched radius search over the collated clouds equals per-sample searches."""
    s = _samples()
    b = Batch.from_samples(s)
    row_ptr, col = ops.radius_search(b.points, b.queries, 0.6, batch_points=b.batch, batch_queries=b.query_batch)
    for i, x in enumerate(s):
        rp, c = ops.radius_search(x.points, x.query_points, 0.6)
        q0, q1 = b.query_ptr[i], b.query_ptr[i + 1]
        sub = col[row_ptr[q0]:row_ptr[q1]] - b.ptr[i]
        assert torch.equal(sub, c) and torch.equal(row_ptr[q0:q1 + 1] - row_ptr[q0], rp)


def test_collation_errors():
    s = _samples()
    with pytest.raises(ValueError, match="empty"):
        Batch.from_samples([])
    with pytest.raises(ValueError, match="fields"):
        Batch.from_samples([s[0], Sample(points=torch.rand(3, 3, dtype=torch.float64), features=torch.rand(3, 2),
                                          fields={"p": torch.rand(3)})])
    with pytest.raises(ValueError, match="features"):
        Batch.from_samples([s[0], Sample(points=torch.rand(4, 3), fields={"p": torch.rand(4), "u": torch.rand(4, 3)})])
    with pytest.raises(ValueError, match="2-D"):
        Batch.from_samples([s[0], Sample(points=torch.rand(4, 2))])
    with pytest.raises(TypeError, match="Sample"):
        Batch.from_samples([s[0], {"points": 1}])


def test_pyg_round_trip():
    pytest.importorskip("torch_geometric")
    from torch_geometric.data import Batch as PygBatch

    s = _samples()
    b = Batch.from_samples(s)
    pyg = b.to_pyg()
    assert isinstance(pyg, PygBatch) and pyg.num_graphs == 3
    assert torch.equal(pyg.pos, b.points) and torch.equal(pyg.x, b.features)
    assert torch.equal(pyg.batch, b.batch) and torch.equal(pyg.ptr, b.ptr)
    assert torch.equal(pyg.query_pos, b.queries) and torch.equal(pyg.query_pos_batch, b.query_batch)
    assert torch.equal(pyg.y_u, b.fields["u"])
    assert torch.equal(pyg.cells_triangle_index.t(), b.cells["triangle"])  # PyG offsets the indices itself
    back = Batch.from_pyg(pyg)
    for x, y in zip(s, back.to_samples()):
        _assert_same_sample(x, y)
    # a single PyG Data converts too
    one = Batch.from_pyg(pyg.get_example(1))
    _assert_same_sample(one[0], s[1])


def test_pyg_rejects_non_json_metadata():
    pytest.importorskip("torch_geometric")
    s = Sample(points=torch.rand(3, 3), metadata={"bad": object()})
    with pytest.raises(TypeError, match="JSON"):
        Batch.from_samples([s]).to_pyg()


def test_query_features_collate_slice_and_round_trip_through_pyg():
    # the inputs at the queries: given for separate queries, the features themselves otherwise;
    # the batch carries them only when every sample has them
    s = _samples()
    s[0].query_features = torch.rand(4, 2, dtype=torch.float64)
    s[2].query_features = torch.rand(6, 2, dtype=torch.float64)
    b = Batch.from_samples(s)
    assert b.query_features.shape == (17, 2)
    assert torch.equal(b.query_features[4:11], s[1].features)
    for x, y in zip(s, b.to_samples()):
        _assert_same_sample(x, y)
    assert b.to("cpu").query_features is not None
    kept = s[2].query_features
    s[2].query_features = None
    assert Batch.from_samples(s).query_features is None
    s[2].query_features = kept
    pytest.importorskip("torch_geometric")
    back = Batch.from_pyg(b.to_pyg())
    assert torch.equal(back.query_features, b.query_features)
    for x, y in zip(s, back.to_samples()):
        _assert_same_sample(x, y)
