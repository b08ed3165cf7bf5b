"""User mistakes give one sentence before any expensive work, never a traceback (issue 14, finding 7)."""

import errno

import pytest
import torch

from pipeline_helpers import field_sample, small_gno
from pyengine import cli as cli_module
from pyengine.cli import main as cli
from pyengine.data import Normalizer
from pyengine.pipeline import TrainConfig, Trainer, load_checkpoint, load_model, save_checkpoint
from pyengine.pipeline.run_config import load_run_config

GOOD = """
dataset: {kind: darcy2d, n_train: 3, n_test: 1, options: {h: 0.12, workers: 0}}
model: {name: gno, config: {hidden: 8, layers: 1, radius: 0.3, kernel_hidden: [8], max_neighbors: 12}}
train: {epochs: 2, batch_size: 3, progress: false}
"""


def _config(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, message", [
    ("model: {name: gino, config: {kernel_hidden: 5}}",
     r"model\.config\.kernel_hidden: expected a list of integers, got 5 \(int\)"),
    ("train: {epochs: ten}", r"train\.epochs: expected an integer, got 'ten' \(str\)"),
    ("dataset: {n_train: 1.5}", r"dataset\.n_train: expected an integer, got 1\.5 \(float\)"),
    ("train: {amp: 1}", r"train\.amp: expected true or false, got 1"),
    ("train: {lr: .nan}", r"train\.lr: expected a number, got nan"),
    ("train: {min_lr_ratio: 2}", r"train: min_lr_ratio must be in \[0, 1\]"),
    ("train: {checkpoint_every: -1}", r"train: checkpoint_every must be >= 0"),
    ("model: {name: gaot, config: {grid: [4, 4]}}", r"model\.config: cannot build a gaot model for bodies data"),
    ("model: {name: gaot, config: {vit_heads: 0}}", r"model\.config\.vit_heads: must be >= 1, got 0"),
    ("model: {name: gaot_fast, config: {heads: 0}}", r"model\.config\.heads: must be >= 1, got 0"),
    ("model: {name: gino, config: {grid: [0, 0, 0]}}", r"model\.config\.grid: must be >= 1, got \(0, 0, 0\)"),
    ("model: {name: gno, config: {max_neighbors: -3}}", r"model\.config\.max_neighbors: must be >= 1"),
    ("model: {name: gaot, config: {padding: -1.0}}", r"model\.config\.padding: must be >= 0"),
    ("model: {name: rigno, config: {processor_scales: [1.0, 0]}}", r"model\.config\.processor_scales: must be > 0"),
    ("model: {name: gno9}", r"model\.name: unknown model 'gno9'"),
    ("dataset: {kind: bodies, options: {resolution: {h_body: -1}}}", r"dataset: options\.resolution: h_body must be"),
    ("dataset: {kind: bodies, options: {body_kind: plane}}", r"options\.body_kind: must be one of"),
    ("dataset: {kind: bodies, options: {features: curvature}}", r"options\.features: must be .normals."),
    ("dataset: {kind: darcy2d, options: {n_holes: 3}}", r"options\.n_holes: expected a list of integers, got 3"),
    ("dataset: {kind: darcy2d, options: {colour: red}}", r"unknown key\(s\) \['colour'\]"),
    ("out: 5", r"out: expected a string, got 5"),
])
def test_bad_config_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_run_config(_config(tmp_path, text))


def test_numeric_strings_are_numbers_and_lists_become_tuples(tmp_path):
    cfg = load_run_config(_config(tmp_path, "train: {lr: 1e-3}\nmodel: {name: gno, config: {kernel_hidden: [8, 8]}}"))
    assert cfg.train.lr == 1e-3 and cfg.model.config["kernel_hidden"] == (8, 8)


def test_cli_train_bad_config_is_one_line_and_builds_nothing(tmp_path, capsys, monkeypatch):
    import pyengine.pipeline.run as run

    monkeypatch.setattr(run, "load_dataset", lambda *a, **k: pytest.fail("the dataset was built"))
    cfg = _config(tmp_path, GOOD.replace("epochs: 2", 'epochs: "ten"'))
    assert cli(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyengine train: error: ") and "train.epochs" in err and len(err.splitlines()) == 1
    # --config DIR
    assert cli(["train", "--config", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"config {tmp_path} is a directory, not a YAML file (it holds run.yaml)" in err
    # an output directory under a file: refused before the dataset is built
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    cfg = _config(tmp_path, GOOD + f"out: {blocker / 'run'}\n")
    assert cli(["train", "--config", str(cfg)]) == 2
    assert f"cannot be created: {blocker} is a file, not a directory" in capsys.readouterr().err


def test_trainer_checks_its_output_directory_up_front(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        Trainer(small_gno(), [field_sample(0)], fields=["u"], out_dir=tmp_path / "f" / "run",
                config=TrainConfig(epochs=1, progress=False))
    (tmp_path / "run" / "model.pt").mkdir(parents=True)
    with pytest.raises(ValueError, match="model.pt is a directory"):
        Trainer(small_gno(), [field_sample(0)], fields=["u"], out_dir=tmp_path / "run",
                config=TrainConfig(epochs=1, progress=False))


def test_wrong_weight_shapes_and_missing_entries(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_gno(), normalizer=Normalizer().fit([field_sample(0)]),
                           fields={"u": 1})
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden"] = 9  # the weights were trained with hidden=8
    with pytest.raises(ValueError, match=r"the weights do not fit the model: 'lift\.0\.weight' has shape \(8, 4\) "
                                         r"but the gno model built from its config expects \(9, 4\)"):
        load_model(payload)
    payload = torch.load(path, weights_only=True)
    del payload["normalizer"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"has no 'normalizer' entry"):
        load_checkpoint(path)


def _trainer(schedule, epochs=4, out=None):
    return Trainer(small_gno(), [field_sample(i) for i in range(4)], fields=["u"], out_dir=out,
                   config=TrainConfig(epochs=epochs, batch_size=2, schedule=schedule, progress=False))


def test_resume_with_another_schedule_says_so(tmp_path):
    _trainer("onecycle", out=tmp_path).fit()
    with pytest.raises(ValueError, match=r"was trained with schedule 'onecycle'; resume it with the same schedule "
                                         r"\(this run has 'cosine'\)"):
        _trainer("cosine").fit(resume=tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"onecycle schedule of 8 steps but this run has 12"):
        _trainer("onecycle", epochs=6).fit(resume=tmp_path / "model.pt")


def test_cli_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.pt"))

    monkeypatch.setattr(cli_module, "_cmd_info", disk_full)
    assert cli(["info"]) == 2
    assert capsys.readouterr().err.strip() == f"pyengine info: error: No space left on device: {tmp_path / 'model.pt'}"

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_cmd_info", interrupted)
    assert cli(["info"]) == 130

    def bug(args):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(cli_module, "_cmd_info", bug)
    with pytest.raises(RuntimeError, match="an internal bug"):
        cli(["info"])


def test_resume_with_fields_in_another_order_says_so(tmp_path):
    from pyengine.models import build

    samples = [field_sample(i) for i in range(2)]
    for s in samples:
        s.fields["v"] = 2 * s.fields["u"]

    def trainer(fields, out=None):
        torch.manual_seed(0)
        model = build("gno", 2, 2, 2, hidden=8, layers=1, radius=0.35, kernel_hidden=(8,), max_neighbors=12)
        return Trainer(model, samples, fields=fields, out_dir=out, config=TrainConfig(epochs=1, progress=False))

    trainer(["u", "v"], tmp_path).fit()
    with pytest.raises(ValueError, match=r"predicts fields \{'u': 1, 'v': 1\}, this run \{'v': 1, 'u': 1\}"):
        trainer(["v", "u"]).fit(resume=tmp_path / "model.pt")
