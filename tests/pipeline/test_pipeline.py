"""Trainer, checkpoints, configs, the demo smoke run and predict on mesh files."""

import json
import os

import pytest
import torch

from pipeline_helpers import field_sample, small_gno
from pyengine.data import Normalizer
from pyengine.pipeline import TrainConfig, Trainer, load_checkpoint, load_model, save_checkpoint
from pyengine.pipeline.run_config import load_run_config
from pyengine.pipeline.train import normalize_features


def _trainer(tmp_path=None, **cfg):
    base = dict(epochs=4, batch_size=4, lr=5e-3, progress=False)
    base.update(cfg)
    return Trainer(small_gno(), [field_sample(i) for i in range(8)], fields=["u"],
                   val=[field_sample(100), field_sample(101)], config=TrainConfig(**base), out_dir=tmp_path)


def test_training_reduces_loss_and_writes_logs(tmp_path):
    t = _trainer(tmp_path, epochs=15, lr=2e-2)
    history = t.fit()
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]
    assert "val_u_rel_l2" in history[-1]
    assert (tmp_path / "log.csv").read_text().startswith("epoch,")
    assert len(json.loads((tmp_path / "history.json").read_text())) == 15


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    t = _trainer(tmp_path)
    t.fit()
    model, payload = load_model(tmp_path / "model.pt")
    s = field_sample(7)
    norm = Normalizer.from_state_dict(payload["normalizer"])
    with torch.no_grad():
        a = t.model.eval()(s.points, normalize_features(t.normalizer, s.features))
        b = model(s.points, normalize_features(norm, s.features))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert payload["fields"] == {"u": 1} and payload["family"] == "gno"


def test_resume_continues_exactly(tmp_path):
    straight = _trainer(epochs=6)
    straight.fit()
    first = _trainer(tmp_path, epochs=6, checkpoint_every=3)
    first.config.epochs = 3  # stop half-way, as an interrupted run would
    first.fit()
    resumed = _trainer(epochs=6)
    resumed.fit(resume=tmp_path / "model.pt")
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-6, atol=1e-7)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = small_gno()
    path = save_checkpoint(tmp_path / "m.pt", model)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "m.pt", model)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]  # no temporary file left behind


def test_bad_checkpoint_and_config_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable pyengine checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epocs: 3\n")
    with pytest.raises(ValueError, match="epocs"):
        load_run_config(cfg)
    cfg.write_text("model:\n  name: gaot\n  config: {hiden: 3}\n")
    with pytest.raises(ValueError, match="hiden"):
        load_run_config(cfg)
    cfg.write_text("dataset: [1, 2]\n")
    with pytest.raises(ValueError, match="mapping"):
        load_run_config(cfg)
    cfg.write_text("train: {lr: -1}\n")
    with pytest.raises(ValueError, match="lr"):
        load_run_config(cfg)
    cfg.write_text("dataset: {kind: bodies}\nmodel: {name: gno, config: {radius: 0.2}}\ntrain: {epochs: 2}\n")
    assert load_run_config(cfg).model.config == {"radius": 0.2}


def test_trainer_rejects_mismatched_fields():
    with pytest.raises(ValueError, match="no field"):
        Trainer(small_gno(), [field_sample(0)], fields=["p"])
    with pytest.raises(ValueError, match="distinct"):
        Trainer(small_gno(), [field_sample(0)], fields=["u", "u"])
    s = field_sample(0)
    s.fields["v"] = torch.randn(s.num_points, 3)
    with pytest.raises(ValueError, match="channels"):
        Trainer(small_gno(), [s], fields=["u", "v"])
