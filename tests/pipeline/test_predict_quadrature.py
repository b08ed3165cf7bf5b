"""``pyengine predict`` with quadrature models and inputs denser or sparser than the training meshes (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from pyengine.cli import main as cli  # noqa: E402
from pyengine.data import Normalizer, Sample  # noqa: E402
from pyengine.geometry import Mesh, load_mesh, save_mesh  # noqa: E402
from pyengine.geometry.refine import subdivide  # noqa: E402
from pyengine.models import build  # noqa: E402
from pyengine.pipeline.config import TrainConfig  # noqa: E402
from pyengine.pipeline.prepare import prepare_sample  # noqa: E402
from pyengine.pipeline.train import Trainer  # noqa: E402


def _body():
    s = trimesh.creation.icosphere(3)
    return np.asarray(s.vertices) * [1.0, 0.5, 0.4], np.asarray(s.faces)


@pytest.fixture(scope="module", params=[True, False], ids=["quadrature", "plain"])
def ckpt(request, tmp_path_factory):
    pts, faces = _body()
    cp = 1.0 - 2.0 * (pts[:, 0] / np.linalg.norm(pts, axis=1)) ** 2
    s, _ = prepare_sample(Sample(torch.tensor(pts, dtype=torch.float32), cells={"triangle": torch.tensor(faces)},
                                 fields={"cp": torch.tensor(cp, dtype=torch.float32)}), "normals")
    assert s.weights is not None and float(s.weights.sum()) > 0
    torch.manual_seed(0)
    model = build("gno", 3, 1, 3, hidden=8, layers=1, radius=0.15, kernel_hidden=(8,), max_neighbors=12,
                  quadrature=request.param)
    trainer = Trainer(model, [s], fields=["cp"], config=TrainConfig(epochs=1, batch_size=1, progress=False),
                      normalizer=Normalizer().fit([s], fields=["cp"]))
    trainer.fit()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    trainer.save(path, extra={"features": "normals"})
    return path, request.param


def test_density_note_and_quadrature_predictions(ckpt, tmp_path, capsys):
    path, quadrature = ckpt
    pts, faces = _body()
    same = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "same.ply")  # PLY keeps the vertex order
    fp, ft = subdivide(pts, faces, 1)  # 4x the training density
    fine = save_mesh(Mesh(fp, {"triangle": ft}), tmp_path / "fine.ply")
    assert cli(["predict", "--checkpoint", str(path), "--mesh", str(same), "--out", str(tmp_path / "a.vtu")]) == 0
    out = capsys.readouterr().out
    assert "point density" not in out
    assert ("quadrature" in out) == quadrature
    assert cli(["predict", "--checkpoint", str(path), "--mesh", str(fine), "--out", str(tmp_path / "b.vtu")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "point density" in ln)
    ratio = float(line.split("point density")[1].split("x the highest")[0])
    assert 3.5 < ratio < 4.5  # ~4x the vertices on the same area
    assert ("built to tolerate" in line) == quadrature
    a = load_mesh(tmp_path / "a.vtu").point_data["cp_pred"]
    b = load_mesh(tmp_path / "b.vtu").point_data["cp_pred"][: len(pts)]
    change = np.linalg.norm(a - b) / np.linalg.norm(a - a.mean())
    assert np.isfinite(change)
    if quadrature:
        assert change < 0.05, change
