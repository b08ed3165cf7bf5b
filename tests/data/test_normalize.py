"""Normalizer: statistics vs torch over the concatenated data, round trips, persistence, errors."""

from __future__ import annotations

import io

import pytest
import torch

from pyengine.data import Batch, Normalizer, Sample


def _samples(n=4) -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        m = 10 + 7 * i  # different sizes: statistics must weigh every row equally
        out.append(Sample(
            points=torch.rand(m, 3, generator=g),
            features=torch.randn(m, 2, generator=g) * torch.tensor([1.0, 50.0]) + torch.tensor([3.0, -1e3]),
            fields={"p": 200 * torch.randn(m, generator=g) + 40,
                    "u": torch.randn(m, 3, generator=g) * torch.tensor([1.0, 2.0, 0.0]) + 5},  # constant z
        ))
    return out


def test_statistics_match_concatenated_data():
    s = _samples()
    norm = Normalizer().fit(s)
    for name in ("p", "u"):
        allv = torch.cat([x.fields[name] for x in s]).double().reshape(-1, 1 if name == "p" else 3)
        torch.testing.assert_close(norm.mean[name], allv.mean(0))
        std = allv.std(0, unbiased=False)
        torch.testing.assert_close(norm.std[name], torch.where(std < 1e-12, torch.ones_like(std), std))
    feats = torch.cat([x.features for x in s]).double()
    torch.testing.assert_close(norm.mean["features"], feats.mean(0))
    assert norm.std["u"][2] == 1.0  # the constant channel is only shifted, never divided by ~0


def test_normalised_data_is_standard_and_round_trips():
    s = _samples()
    norm = Normalizer().fit(s, fields=["p"])
    assert set(norm.mean) == {"p", "features"}
    ns = [norm.normalize(x) for x in s]
    p = torch.cat([x.fields["p"] for x in ns]).double()
    assert abs(p.mean().item()) < 1e-5 and abs(p.std(unbiased=False).item() - 1) < 1e-5
    assert torch.equal(ns[0].fields["u"], s[0].fields["u"])  # not fitted: untouched
    back = norm.denormalize(ns[1])
    torch.testing.assert_close(back.fields["p"], s[1].fields["p"])
    torch.testing.assert_close(back.features, s[1].features)
    # batches normalise the same way as their samples
    b = norm.normalize(Batch.from_samples(s))
    torch.testing.assert_close(b.fields["p"], torch.cat([x.fields["p"] for x in ns]))
    torch.testing.assert_close(norm.denormalize_field("p", b.fields["p"]), torch.cat([x.fields["p"] for x in s]))


def test_fit_on_batch_equals_fit_on_samples():
    s = _samples()
    a, b = Normalizer().fit(s), Normalizer().fit(Batch.from_samples(s))
    for k in a.mean:
        torch.testing.assert_close(a.mean[k], b.mean[k])
        torch.testing.assert_close(a.std[k], b.std[k])


def test_state_dict_round_trip():
    s = _samples()
    norm = Normalizer().fit(s)
    buf = io.BytesIO()
    torch.save(norm.state_dict(), buf)
    buf.seek(0)
    loaded = Normalizer.from_state_dict(torch.load(buf, weights_only=True))
    x = s[2].fields["u"]
    torch.testing.assert_close(loaded.normalize_field("u", x), norm.normalize_field("u", x))
    with pytest.raises(ValueError, match="mean"):
        Normalizer().load_state_dict({"std": {}})


def test_errors():
    s = _samples()
    norm = Normalizer().fit(s)
    with pytest.raises(KeyError, match="'q'"):
        norm.normalize_field("q", torch.zeros(3))
    with pytest.raises(ValueError, match="3 channels"):
        norm.normalize_field("u", torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least one"):
        Normalizer().fit([])
    with pytest.raises(ValueError, match="no field 'zz'"):
        Normalizer().fit(s, fields=["zz"])



def test_query_features_normalise_like_the_features_in_samples_and_batches():
    # the inputs at separate queries (Sample.query_features) use the features' statistics
    g = torch.Generator().manual_seed(1)
    s = [Sample(points=x.points, features=x.features, queries=torch.rand(5, 3, generator=g),
                fields={"p": torch.randn(5, generator=g)},
                query_features=torch.randn(5, 2, generator=g) * 30 - 500) for x in _samples(3)]
    norm = Normalizer().fit(s, fields=["p"])
    for x in s:
        torch.testing.assert_close(norm.normalize(x).query_features,
                                   norm.normalize_field("features", x.query_features))
    b = Batch.from_samples(s)
    assert b.query_features is not None
    torch.testing.assert_close(norm.normalize(b).query_features, norm.normalize_field("features", b.query_features))
    assert not torch.allclose(norm.normalize(b).query_features, b.query_features)
