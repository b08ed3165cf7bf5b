"""``pyengine predict`` with a checkpoint trained on the mesh-independent 'smooth_normals' inputs (issue 17):
predict rebuilds the inputs exactly as training did, and refuses point clouds in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from pyengine.cli import main as cli  # noqa: E402
from pyengine.data import Normalizer, Sample  # noqa: E402
from pyengine.geometry import Mesh, load_mesh, save_mesh  # noqa: E402
from pyengine.models import build  # noqa: E402
from pyengine.pipeline.config import TrainConfig  # noqa: E402
from pyengine.pipeline.prepare import prepare_sample  # noqa: E402
from pyengine.pipeline.train import Trainer  # noqa: E402


def test_predict_rebuilds_smooth_normals_like_training(tmp_path, capsys):
    box = trimesh.creation.box(extents=(2.0, 0.9, 0.6)).subdivide().subdivide()
    pts, faces = np.asarray(box.vertices) * 3.0 + [1.0, -2.0, 0.5], np.asarray(box.faces)  # any size and place
    cp = np.tanh(pts[:, 0] - pts[:, 0].mean())
    raw = Sample(torch.tensor(pts), cells={"triangle": torch.tensor(faces)}, fields={"cp": torch.tensor(cp)})
    s, _ = prepare_sample(raw, "smooth_normals")
    plain, _ = prepare_sample(raw, "normals")
    assert not torch.allclose(s.features, plain.features, atol=1e-3)  # box edges are rounded
    torch.manual_seed(0)
    model = build("gno", 3, 1, 3, hidden=8, layers=1, radius=0.3, kernel_hidden=(8,)).double()
    trainer = Trainer(model, [s], fields=["cp"], config=TrainConfig(epochs=2, batch_size=1, progress=False),
                      normalizer=Normalizer().fit([s], fields=["cp"]))
    trainer.fit()
    ckpt = tmp_path / "model.pt"
    trainer.save(ckpt, extra={"features": "smooth_normals"})
    mesh = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "box.ply")  # PLY keeps the vertex order
    assert cli(["predict", "--checkpoint", str(ckpt), "--mesh", str(mesh), "--out", str(tmp_path / "p.vtu")]) == 0
    got = load_mesh(tmp_path / "p.vtu").point_data["cp_pred"].reshape(-1)
    want = trainer.predict(s)["cp"].double().reshape(-1).numpy()
    assert np.abs(got - want).max() < 1e-6 * max(1.0, np.abs(want).max())

    cloud = save_mesh(Mesh(pts, {}), tmp_path / "cloud.ply")
    capsys.readouterr()
    assert cli(["predict", "--checkpoint", str(ckpt), "--mesh", str(cloud), "--out", str(tmp_path / "q.vtu")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smooth_normals" in err[0] and "cloud.ply" in err[0]
