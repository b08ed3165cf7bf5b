"""The demo pipeline end to end at smoke size, then ``predict`` on STL, PLY and VTU files, and the CLI."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("gmsh")
pytest.importorskip("skfem")

from pyengine.cli import main as cli  # noqa: E402
from pyengine.geometry import Mesh, load_mesh, save_mesh  # noqa: E402
from pyengine.pipeline import TrainConfig  # noqa: E402
from pyengine.pipeline.demo import DemoConfig, run_demo  # noqa: E402
from pyengine.pipeline.run import predict_file  # noqa: E402

# the quick demo's recipe (quadrature, smooth_normals at the queries, resampling) at smoke size
SMOKE = DemoConfig(n_train=3, n_test=1, body_kind="ellipsoid", resolution={"h_body": 0.15},
                   model=dict(hidden=16, grid=(4, 4, 4), heads=2, dim=32, depth=1, vit_heads=2, patch=2,
                              radii_cells=(1.5, 3.0), quadrature=True, skip_at_query=True),
                   train=TrainConfig(epochs=3, batch_size=3, progress=False, resample=True), max_test_rel_l2=10.0,
                   features="smooth_normals")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, config=SMOKE, workers=0, cache=tmp_path_factory.mktemp("cache"))
    return out, result


def test_demo_writes_every_output(demo_run):
    out, result = demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test_rel_l2_cp"]) and metrics["passed"] == result["passed"]
    assert (out / "model.pt").stat().st_size > 0 and (out / "predictions.png").stat().st_size > 1000
    mesh = load_mesh(out / "predictions" / "test_000.vtu")
    assert {"cp_true", "cp_pred", "cp_error"} <= set(mesh.point_data)
    np.testing.assert_allclose(mesh.point_data["cp_error"], mesh.point_data["cp_pred"] - mesh.point_data["cp_true"],
                               atol=1e-6)
    assert "triangle" in mesh.cells and len(mesh.cells["triangle"]) > 0


@pytest.mark.parametrize("ext", ["stl", "ply", "vtu"])
def test_predict_on_mesh_files_keeps_connectivity(demo_run, tmp_path, ext):
    out, _ = demo_run
    ref = load_mesh(out / "predictions" / "test_000.vtu")
    src = tmp_path / f"body.{ext}"
    save_mesh(Mesh(points=ref.points, cells={"triangle": ref.cells["triangle"]}), src)
    dst = predict_file(out / "model.pt", src, tmp_path / f"pred_{ext}.vtu")
    pred = load_mesh(dst)
    assert pred.points.shape == load_mesh(src).points.shape
    assert np.array_equal(pred.cells["triangle"], load_mesh(src).cells["triangle"])
    assert np.isfinite(pred.point_data["cp_pred"]).all()
    if ext != "stl":  # STL stores float32 coordinates and re-merges vertices
        np.testing.assert_allclose(pred.point_data["cp_pred"], ref.point_data["cp_pred"], rtol=1e-4, atol=1e-5)


def test_cli_predict_and_bad_inputs(demo_run, tmp_path, capsys):
    out, _ = demo_run
    ref = load_mesh(out / "predictions" / "test_000.vtu")
    src = tmp_path / "body.ply"
    save_mesh(Mesh(points=ref.points, cells={"triangle": ref.cells["triangle"]}), src)
    assert cli(["predict", "--checkpoint", str(out / "model.pt"), "--mesh", str(src), "--out",
                str(tmp_path / "p.vtu")]) == 0
    assert (tmp_path / "p.vtu").exists()
    bad = tmp_path / "broken.stl"
    bad.write_text("solid nothing here\nendsolid\n")
    assert cli(["predict", "--checkpoint", str(out / "model.pt"), "--mesh", str(bad), "--out",
                str(tmp_path / "q.vtu")]) == 2
    assert "broken.stl" in capsys.readouterr().err
    assert cli(["predict", "--checkpoint", str(tmp_path / "none.pt"), "--mesh", str(src), "--out", "x.vtu"]) == 2


def test_out_of_distribution_geometry_warns(demo_run, tmp_path):
    out, _ = demo_run
    ref = load_mesh(out / "predictions" / "test_000.vtu")
    stretched = ref.points * np.array([8.0, 1.0, 1.0])
    src = tmp_path / "long.vtu"
    save_mesh(Mesh(points=stretched, cells={"triangle": ref.cells["triangle"]}), src)
    with pytest.warns(UserWarning, match="outside the training range"):
        predict_file(out / "model.pt", src, tmp_path / "long_pred.vtu")


def test_train_from_yaml_config(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""
dataset: {{kind: darcy2d, n_train: 3, n_test: 1, seed: 0, options: {{h: 0.12, workers: 0}}}}
model: {{name: gno, config: {{hidden: 8, layers: 1, radius: 0.3, kernel_hidden: [8], max_neighbors: 12}}}}
train: {{epochs: 2, batch_size: 3, progress: false}}
out: {tmp_path / 'run'}
""")
    import os

    os.environ["PYENGINE_CACHE"] = str(tmp_path / "cache")
    try:
        assert cli(["train", "--config", str(cfg)]) == 0
    finally:
        del os.environ["PYENGINE_CACHE"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["fields"] and all(np.isfinite(v["rel_l2"]) for v in metrics["test_metrics"].values())
    assert (tmp_path / "run" / "log.csv").exists() and (tmp_path / "run" / "model.pt").exists()
