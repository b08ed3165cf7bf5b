"""File datasets, training: files == memory, the streamed cache == the in-memory Trainer, and the
real ShapeNet-Car samples through ``pyengine train`` / ``pyengine predict`` (skipped without ../shared)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pyengine.data.files import CachedSamples, FileDataset, ShardedBatchSampler, write_vtp
from pyengine.data.physics import build_flow_dataset
from pyengine.models import build
from pyengine.pipeline import TrainConfig, Trainer
from pyengine.pipeline.prepare import prepare_sample

SHAPENET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "shapenet_car_mini"
COARSE = {"h_body": 0.25, "h_box": 2.0, "box": 4.0, "grading": 2.0}
GNO = dict(hidden=8, layers=1, radius=0.5, kernel_hidden=(8,), max_neighbors=8)


@pytest.fixture(scope="module")
def bodies():
    return build_flow_dataset(4, "ellipsoid", seed=3, resolution=COARSE, workers=0, cache=False, progress=False)


@pytest.fixture(scope="module")
def vtp_folder(bodies, tmp_path_factory):
    """The bodies as a folder of VTP files: Cp as point data and, averaged per triangle, as cell data."""
    root = tmp_path_factory.mktemp("bodies_vtp")
    for i, s in enumerate(bodies):
        tri = s.cells["triangle"].numpy()
        cp = s.fields["cp"].double().numpy()
        write_vtp(root / f"body{i}.vtp", s.points.double().numpy(), {"triangle": tri},
                  point_data={"cp": cp}, cell_data={"p": cp[tri].mean(1)})
    return root


def test_files_give_the_same_samples_as_memory(bodies, vtp_folder):
    ds = FileDataset({"path": str(vtp_folder), "fields": ["cp"], "test": 1})
    assert ds.split == ["train"] * 3 + ["test"]
    for i, mem in enumerate(bodies):
        got = ds.sample(i)
        ref, _ = prepare_sample(mem, "normals")  # the pipeline's own recipe for in-memory bodies
        assert torch.equal(got.points, mem.points)
        assert torch.equal(got.cells["triangle"], mem.cells["triangle"])
        assert torch.equal(got.fields["cp"], mem.fields["cp"])
        torch.testing.assert_close(got.features, ref.features, atol=2e-6, rtol=0)
    # cell data: samples at the triangle centres, with the triangles' unit normals
    cells = FileDataset({"path": str(vtp_folder), "fields": ["p"], "test": 1})
    s, mem = cells.arrays(0), bodies[0]
    tri = mem.cells["triangle"].numpy()
    pts = mem.points.double().numpy()
    np.testing.assert_allclose(s.points, pts[tri].mean(1), atol=1e-12)
    np.testing.assert_allclose(s.fields["p"], mem.fields["cp"].double().numpy()[tri].mean(1), atol=1e-12)
    n = np.cross(pts[tri[:, 1]] - pts[tri[:, 0]], pts[tri[:, 2]] - pts[tri[:, 0]])
    np.testing.assert_allclose(s.features, n / np.linalg.norm(n, axis=1, keepdims=True), atol=1e-12)
    # ... or averaged back to the vertices on request
    avg = FileDataset({"path": str(vtp_folder), "fields": ["p"], "test": 1, "cell_to_point": True}).arrays(0)
    assert avg.location == "points" and avg.fields["p"].shape == (mem.num_points,)


def test_streamed_cache_trains_like_memory(bodies, vtp_folder, tmp_path):
    ds = FileDataset({"path": str(vtp_folder), "fields": ["cp"], "test": 1})
    cache = ds.preprocess(tmp_path / "cache")
    assert cache.points_per_second > 0 and len(cache) == 4
    assert ds.preprocess(tmp_path / "cache").built_seconds is None  # same files: the cache is reused
    # two preprocessing processes give the same cache as one
    par = ds.preprocess(tmp_path / "par", workers=2)
    assert par.index["stats"] == cache.index["stats"] and par.index["train_bbox"] == cache.index["train_bbox"]
    for i in range(4):
        for name in cache.samples[i]["arrays"]:
            np.testing.assert_array_equal(par.array(i, name), cache.array(i, name))
    # statistics from the streaming pass == Normalizer.fit on the samples in memory
    from pyengine.data import Normalizer

    mem = [prepare_sample(s, "normals")[0] for s in bodies]
    ref = Normalizer().fit(mem[:3], fields=["cp"])
    got = cache.normalizer()
    for k in ("cp", "features"):
        torch.testing.assert_close(got.mean[k], ref.mean[k], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got.std[k], ref.std[k], rtol=1e-6, atol=1e-7)
    config = TrainConfig(epochs=3, batch_size=2, lr=3e-3, progress=False, seed=2)
    torch.manual_seed(0)
    a = Trainer(build("gno", 3, 1, 3, **GNO), mem[:3], fields=["cp"], config=config, normalizer=got)
    torch.manual_seed(0)
    b = Trainer(build("gno", 3, 1, 3, **GNO), CachedSamples(cache, "train", seed=2, workers=1), fields=["cp"],
                config=config)
    assert a.steps_per_epoch == b.steps_per_epoch == 2
    ha, hb = a.fit(), b.fit()
    np.testing.assert_allclose([r["loss"] for r in hb], [r["loss"] for r in ha], rtol=1e-4)


def test_random_subsets_and_sharded_batches(vtp_folder, tmp_path):
    cache = FileDataset({"path": str(vtp_folder), "fields": ["cp"], "test": 1}).preprocess(tmp_path / "c")
    data = CachedSamples(cache, "train", points_per_step=50, encoder_points=80, frame="dataset", seed=5)
    it = data[(1, 7)]
    assert it.points.shape == (80, 3) and it.features.shape == (80, 3)
    assert it.queries.shape == (50, 3) and it.target.shape == (50, 1)
    again, other = data[(1, 7)], data[(1, 8)]
    assert torch.equal(it.queries, again.queries) and not torch.equal(it.queries, other.queries)
    # the dataset frame keeps relative size: one scale for every geometry
    lo, hi = np.array(cache.index["train_bbox"])
    assert data.frame.scale == pytest.approx(float((hi - lo).max()) / 2)
    full = data.load(1, train=False)
    assert full.queries.shape[0] == cache.samples[data.ids[1]]["n_queries"] and full.query_ids is None
    # global batches are the Trainer's, split across ranks: the union over ranks is one global batch
    one = list(ShardedBatchSampler(7, 4, seed=3))
    two = [list(ShardedBatchSampler(7, 4, rank=r, world=2, seed=3)) for r in range(2)]
    assert [sorted(b) for b in one[:1]] == [sorted(two[0][0] + two[1][0])]
    assert len(two[0][1]) == len(two[1][1]) == 1  # the last, odd batch is trimmed to equal shards


@pytest.mark.skipif(not SHAPENET.is_dir(), reason="../shared/data/shapenet_car_mini is absent")
def test_shapenet_train_and_predict_from_the_cli(tmp_path, capsys):
    import meshio

    from pyengine.cli import main

    rows = ["geometry,fields,split,u_inf"]
    for i, d in enumerate(sorted(p for p in SHAPENET.iterdir() if p.is_dir())):
        p = np.load(d / "press.npy")  # 3682 values; the mesh's 3586 vertices are these (README)
        np.save(tmp_path / f"p_{d.name}.npy", np.concatenate([p[:16], p[112:]]))
        rows.append(f"{d / 'tri_mesh.ply'},p=p_{d.name}.npy,{'test' if i == 3 else 'train'},{20 + i}")
    (tmp_path / "cars.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "run.yaml").write_text(f"""
dataset:
  kind: files
  options:
    path: cars.csv
    fields: [p]
    conditioning: [u_inf]
    frame: dataset
    points_per_step: 1500
    encoder_points: 2500
    forces: {{pressure: p, reference_area: 3.6, dynamic_pressure: 200.0, flow_direction: [0, 0, -1],
              lift_direction: [0, 1, 0]}}
model:
  name: gno
  config: {json.dumps(GNO | {"radius": 0.2, "kernel_hidden": [8]})}
train: {{epochs: 2, batch_size: 1, lr: 0.003, progress: false}}
out: {tmp_path / 'run'}
""")
    # the raw press.npy does not fit the mesh: the error names the file, the field and the counts
    (tmp_path / "raw.csv").write_text(f"geometry,fields,split\n{SHAPENET / '001' / 'tri_mesh.ply'},"
                                      f"{SHAPENET / '001' / 'press.npy'},train\n{SHAPENET / '002' / 'tri_mesh.ply'},,test\n")
    raw = FileDataset({"path": str(tmp_path / "raw.csv"), "fields": ["press"]})
    with pytest.raises(ValueError, match=r"press\.npy: field 'press' has 3682 rows, matching neither the 3586 "
                                         r"points nor the 7168 cells"):
        raw.arrays(0)
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 0
    out = capsys.readouterr().out
    assert "force coefficients on the test set" in out and "Cd true" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["finite"] and metrics["test_metrics"]["p"]["rel_l2"] < 2
    row = metrics["forces"]["per_sample"][0]
    assert set(row["true"]) == {"drag", "lift", "side"}
    assert (tmp_path / "run" / "forces.png").is_file() and (tmp_path / "run" / "predictions.png").is_file()
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--mesh",
                 str(SHAPENET / "005" / "tri_mesh.ply"), "--out", str(tmp_path / "car.vtu"),
                 "--condition", "u_inf=23"]) == 0
    out = capsys.readouterr().out
    m = meshio.read(tmp_path / "car.vtu")
    assert m.points.shape == (3586, 3) and m.point_data["p_pred"].shape == (3586,)
    assert np.isfinite(m.point_data["p_pred"]).all()
    # the prediction on the test car is the evaluation's: the same forces
    assert f"Cd {row['pred']['drag']:.4f}" in out
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--mesh",
                 str(SHAPENET / "005" / "tri_mesh.ply"), "--out", str(tmp_path / "car.vtu")]) == 2
    assert "give each with --condition NAME=VALUE (missing: ['u_inf'])" in capsys.readouterr().err


def test_two_gloo_ranks_stream_like_one_process(vtp_folder, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo")
    from files_ddp_worker import trainer_for

    # 2 training geometries, global batch 2: one per rank (a trailing odd batch would be trimmed under DDP)
    cache = FileDataset({"path": str(vtp_folder), "fields": ["cp"], "test": 2}).preprocess(tmp_path / "cache")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "w.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(Path(__file__).with_name("files_ddp_worker.py")),
           "--cache", str(cache.root), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = torch.load(out)
    single = trainer_for(str(cache.root), workers=0)
    init = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit()
    ref = single.model.state_dict()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=2e-5, atol=2e-6, msg=f"parameter {k} differs")
    assert any(not torch.allclose(ref[k], init[k]) for k in ref)


def test_cell_data_train_and_predict_back_to_vtp(vtp_folder, tmp_path, capsys):
    from pyengine.data.files import read_vtp
    from pyengine.pipeline.run import predict_file, train_from_config

    (tmp_path / "run.yaml").write_text(f"""
dataset:
  kind: files
  options: {{path: {vtp_folder}, fields: [p], test: 1, forces: {{pressure: p, reference_area: 2.0}}}}
model: {{name: gno, config: {json.dumps(GNO)}}}
train: {{epochs: 1, batch_size: 1, progress: false}}
out: {tmp_path / 'run'}
""")
    result = train_from_config(tmp_path / "run.yaml")
    assert result["finite"] and result["forces"]["per_sample"][0]["name"].endswith("body3.vtp")
    path = predict_file(tmp_path / "run" / "model.pt", vtp_folder / "body3.vtp", tmp_path / "pred.vtp")
    r = read_vtp(path)
    src = read_vtp(vtp_folder / "body3.vtp")
    assert r.num_cells == src.num_cells and r.cell_data["p_pred"].shape == (src.num_cells,)
    np.testing.assert_array_equal(r.cells["triangle"], src.cells["triangle"])
    out = capsys.readouterr().out
    cd = result["forces"]["per_sample"][0]["pred"]["drag"]
    assert f"Cd {cd:.4f}" in out  # predict on the test file == the evaluation's prediction
