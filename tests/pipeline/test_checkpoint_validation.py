"""Checkpoints are validated at load: non-finite weights or statistics and malformed entries give one line."""

import numpy as np
import pytest
import torch

from pipeline_helpers import small_gno
from pyengine.cli import main as cli
from pyengine.data import Normalizer
from pyengine.pipeline import load_checkpoint, load_model, save_checkpoint
from pyengine.pipeline.validate import require_finite


def _checkpoint(path, **changes):
    model = small_gno()
    norm = Normalizer()
    norm.mean, norm.std = {"u": torch.zeros(1, dtype=torch.float64)}, {"u": torch.ones(1, dtype=torch.float64)}
    save_checkpoint(path, model, normalizer=norm, fields={"u": 1})
    payload = torch.load(path, weights_only=True)
    for key, fn in changes.items():
        fn(payload) if callable(fn) else payload.__setitem__(key, fn)
    torch.save(payload, path)
    return path


def _nan_weight(payload):
    payload["state_dict"]["lift.0.weight"][0, 0] = float("nan")


def test_nan_weights_are_refused_at_load(tmp_path):
    ckpt = _checkpoint(tmp_path / "nan.pt", nan=_nan_weight)
    with pytest.raises(ValueError, match=r"weight 'lift.0.weight' holds NaN or Inf \(1 of \d+ values\)"):
        load_checkpoint(ckpt)
    with pytest.raises(ValueError, match="holds NaN or Inf"):
        load_model(torch.load(ckpt, weights_only=True))


def test_predict_with_nan_weights_fails_with_one_line_and_writes_nothing(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "nan.pt", nan=_nan_weight)
    mesh = tmp_path / "tri.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    out = tmp_path / "o.vtu"
    assert cli(["predict", "--checkpoint", str(ckpt), "--mesh", str(mesh), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "NaN or Inf" in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan"), float("inf")])
def test_broken_normaliser_statistics_are_refused(tmp_path, std):
    def bad(payload):
        payload["normalizer"]["std"]["u"] = torch.tensor([std], dtype=torch.float64)

    with pytest.raises(ValueError, match=r"normaliser state for 'u': mean must be finite and std finite and > 0"):
        load_checkpoint(_checkpoint(tmp_path / "n.pt", norm=bad))


def test_require_finite_names_the_field():
    require_finite({"u": torch.ones(3)}, "prediction on x.stl")
    with pytest.raises(ValueError, match=r"prediction on x.stl, field 'p': 2 of 3 values are NaN or Inf"):
        require_finite({"u": torch.ones(3), "p": torch.tensor([1.0, float("inf"), float("nan")])}, "prediction on x.stl")


def test_coincident_points_frame_descriptor_is_finite():
    from pyengine.pipeline.envelope import TrainingEnvelope, assess
    from pyengine.pipeline.frame import FrameStats, _descriptor

    size, aspect = _descriptor(torch.ones(5, 3))
    assert size == 0 and torch.equal(aspect, torch.zeros(3, dtype=torch.float64))  # was 0/0 = NaN
    stats = FrameStats.of([type("S", (), {"points": torch.ones(5, 3)})()])
    assert stats.aspect_min == [0.0, 0.0, 0.0]
    # the envelope check (what predict uses; raw size is not part of it) flags the aspect, no NaN
    env = TrainingEnvelope(aspect_min=[0.5, 0.5, 0.0], aspect_max=[1.0, 1.0, 0.2])
    a = assess(env, torch.ones(5, 3, dtype=torch.float64), None, {}, np.ones(5, bool), np.arange(5))
    assert len(a.warnings) == 1 and "nan" not in a.warnings[0] and "[0.0, 0.0, 0.0]" in a.warnings[0]


def test_predict_rigno_on_a_flat_plate_writes_finite_values(tmp_path):
    """The reported case end to end: a RIGNO checkpoint, a plate mesh (all z equal), pyengine predict."""
    import numpy as np

    from pyengine.geometry import Mesh, load_mesh, save_mesh
    from pyengine.models import build

    torch.manual_seed(0)
    model = build("rigno", 0, 1, 3, hidden=8, edge_dim=8, regional_ratio=0.3, processor_steps=1, max_neighbors=12)
    norm = Normalizer()
    norm.mean, norm.std = {"u": torch.zeros(1, dtype=torch.float64)}, {"u": torch.ones(1, dtype=torch.float64)}
    ckpt = save_checkpoint(tmp_path / "rigno.pt", model, normalizer=norm, fields={"u": 1}, extra={"features": "none"})
    x, y = np.meshgrid(np.linspace(0, 2, 8), np.linspace(0, 1, 6), indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), np.full(x.size, 0.25)], 1)
    idx = np.arange(48).reshape(8, 6)
    tris = np.concatenate([np.stack([idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()], 1),
                           np.stack([idx[:-1, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()], 1)])
    save_mesh(Mesh(points=pts, cells={"triangle": tris}), tmp_path / "plate.vtu")
    out = tmp_path / "pred.vtu"
    assert cli(["predict", "--checkpoint", str(ckpt), "--mesh", str(tmp_path / "plate.vtu"), "--out", str(out)]) == 0
    values = np.asarray(load_mesh(out).point_data["u_pred"])
    assert values.shape == (48,) and np.isfinite(values).all()
