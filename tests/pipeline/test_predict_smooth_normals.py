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


def test_predict_evaluates_smooth_normals_at_vertices_no_face_uses(tmp_path):
    # A vertex no face uses is a query but not an input: predict gives a skip_at_query model the
    # smooth normals evaluated at it (as prepare_sample does for separate queries), not an
    # interpolation, and matches the trainer's prediction on the same sample.
    box = trimesh.creation.box(extents=(2.0, 0.9, 0.6)).subdivide().subdivide()
    pts, faces = np.asarray(box.vertices), np.asarray(box.faces)
    stray = np.array([[0.97, 0.1, 0.27], [-0.95, 0.4, 0.0]])  # near an edge and a corner: normals turn there
    all_pts = np.concatenate([pts, stray])
    cp = np.tanh(pts[:, 0])
    raw = Sample(torch.tensor(pts), cells={"triangle": torch.tensor(faces)}, fields={"cp": torch.tensor(cp)})
    s, _ = prepare_sample(raw, "smooth_normals")
    torch.manual_seed(0)
    model = build("gaot_fast", 3, 1, 3, quadrature=True, skip_at_query=True, hidden=16, grid=(4, 4, 4), dim=32,
                  depth=1, vit_heads=2, max_neighbors=32).double()
    trainer = Trainer(model, [s], fields=["cp"], config=TrainConfig(epochs=2, batch_size=1, progress=False),
                      normalizer=Normalizer().fit([s], fields=["cp"]))
    trainer.fit()
    with torch.no_grad():  # a skip that matters, as in a trained model (2 epochs barely use it)
        model.lift[0].weight.mul_(5.0)
        model.project[0].weight.mul_(10.0)
    ckpt = tmp_path / "model.pt"
    trainer.save(ckpt, extra={"features": "smooth_normals"})
    mesh = save_mesh(Mesh(all_pts, {"triangle": faces}), tmp_path / "stray.ply")
    assert cli(["predict", "--checkpoint", str(ckpt), "--mesh", str(mesh), "--out", str(tmp_path / "p.vtu")]) == 0
    got = load_mesh(tmp_path / "p.vtu").point_data["cp_pred"].reshape(-1)
    queried, _ = prepare_sample(Sample(torch.tensor(pts), cells={"triangle": torch.tensor(faces)},
                                       queries=torch.tensor(all_pts)), "smooth_normals")
    assert queried.query_features is not None
    want = trainer.predict(queried)["cp"].double().reshape(-1).numpy()
    assert np.abs(got - want).max() < 1e-6 * max(1.0, np.abs(want).max())
    # and the stray vertices' inputs were evaluated there, not interpolated from their neighbours
    interp = Sample(queried.points, features=queried.features, queries=queried.queries, weights=queried.weights)
    plain = trainer.predict(interp)["cp"].double().reshape(-1).numpy()
    # at the vertices the same, up to the interpolation weights' 1e-6 distance floor
    assert np.allclose(plain[:-2], want[:-2], rtol=0, atol=1e-4 * np.abs(want).max())
    assert np.abs(plain[-2:] - want[-2:]).max() > 1e-3 * np.abs(want).max(), (plain[-2:], want[-2:])
