"""bench/models.py --peers at toy size: the peer harness runs, starts both sides from the same weights,
and skips the peers that are not installed (neuralop, the official GAOT checkout)."""

import pytest
import torch

from bench._model_peers import gaot_peers, gno_layer_peers

TINY = dict(hidden=8, grid=(4, 4, 4), radius=0.6, enc_hidden=(8,), dec_hidden=(8,), width=16, layers=1, heads=2,
            kv_heads=2)


def _bodies(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = torch.rand(120, 3, generator=g) * 1.6 - 0.8
        out.append((p, torch.randn(120, 3, generator=g), torch.sin(3 * p[:, :1])))
    return out


def test_gaot_peers_harness_runs_and_reports_each_side():
    res, notes = gaot_peers(_bodies(2, 0), _bodies(1, 1), steps=2, official_path=None, peak_extra=lambda fn: None,
                            config=TINY)
    assert set(res) == {"pyengine gaot", "official semantics, plain PyTorch"}
    assert any("--official-gaot" in n for n in notes)
    errs = [r["test_rel_l2"] for r in res.values()]
    assert all(r["step_s"] > 0 for r in res.values())
    # same start, same samples, same optimiser: after 2 + 2 steps the two agree closely
    assert abs(errs[0] - errs[1]) < 1e-3 * max(errs), errs


def test_gaot_peers_reports_an_unimportable_official_checkout(tmp_path):
    _, notes = gaot_peers(_bodies(1, 0), _bodies(1, 1), steps=1, official_path=str(tmp_path),
                          peak_extra=lambda fn: None, config=TINY)
    assert any("not importable" in n for n in notes)


def test_gno_layer_peer():
    pytest.importorskip("neuralop")
    info, why = gno_layer_peers(600, 8, 1, lambda fn: None)
    assert why is None and info["rel_diff"] < 1e-5
    assert info["pyengine forward"] > 0 and info["neuralop forward+backward"] > 0


def test_gaot_peers_per_scale_contestant_takes_the_same_steps():
    res, _ = gaot_peers(_bodies(2, 0), _bodies(1, 1), steps=2, official_path=None, peak_extra=lambda fn: None,
                        config=TINY, per_scale=True)
    assert set(res) == {"pyengine gaot", "official semantics, plain PyTorch", "pyengine gaot, scales one by one"}
    a, b = res["pyengine gaot"]["test_rel_l2"], res["pyengine gaot, scales one by one"]["test_rel_l2"]
    assert abs(a - b) < 1e-4 * max(a, b), (a, b)
