"""``pyengine predict`` as a tool: arguments checked before loading, refusals with exact messages,
fields on the input's own vertices and cells, extrapolation flags, units, warnings, summary, preview."""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest
import torch
import trimesh

from pyengine.cli import main as cli
from pyengine.data import Normalizer, Sample
from pyengine.geometry import Mesh, load_mesh, save_mesh
from pyengine.models import build
from pyengine.pipeline import save_checkpoint
from pyengine.pipeline.envelope import FLAG_FIELD, FLAG_OFF_SURFACE, TrainingEnvelope
from pyengine.pipeline.predict import PredictWarning, predict_file
from pyengine.pipeline.prepare import prepare_sample


def _body(sub=3, aspect=(1.0, 0.5, 0.4)):
    s = trimesh.creation.icosphere(sub)
    return np.asarray(s.vertices) * np.asarray(aspect), np.asarray(s.faces)


def _save(path, model, fields=None, extra=None, normalizer=None):
    pts, faces = _body()
    cp = 1.0 - 2.0 * (pts[:, 0] / np.linalg.norm(pts, axis=1)) ** 2
    s, _ = prepare_sample(Sample(torch.tensor(pts, dtype=torch.float32), cells={"triangle": torch.tensor(faces)},
                                 fields={"cp": torch.tensor(cp, dtype=torch.float32)}), "normals")
    norm = normalizer or Normalizer().fit([s], fields=["cp"])
    env = TrainingEnvelope.of([s], ["cp"], units="m").to_dict()
    save_checkpoint(path, model, normalizer=norm, fields=fields or {"cp": 1},
                    extra={"features": "normals", "envelope": env, **(extra or {})})
    return path


def _gno(in_ch=3, out_ch=1, dim=3):
    torch.manual_seed(0)
    return build("gno", in_ch, out_ch, dim, hidden=8, layers=1, radius=0.3, kernel_hidden=(8,), max_neighbors=12)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "model.pt", _gno())


def _messy(tmp_path) -> tuple[Mesh, object]:
    """A body exported the way real tools do: quads, a duplicated opposite sheet, unused and
    duplicated vertices, in a PLY."""
    pts, faces = _body(3)
    n = len(pts)
    pts = np.concatenate([pts, pts[:5], [[7.0, 7.0, 7.0]]])  # 5 coincident copies and a stray vertex
    faces = faces.copy()
    faces[:3] = np.where(faces[:3] < 5, faces[:3] + n, faces[:3])  # some faces use the copies
    extra = faces[-20:, [0, 2, 1]]  # a doubled sheet, opposite winding
    mesh = Mesh(pts, {"triangle": np.concatenate([faces, extra])})
    path = save_mesh(mesh, tmp_path / "messy.ply")
    return mesh, path


@pytest.mark.parametrize("ext", ["vtu", "vtp", "vtk", "ply"])
def test_fields_land_on_the_input_vertices_in_order(ckpt, tmp_path, ext):
    mesh, src = _messy(tmp_path)
    res = predict_file(ckpt, src, tmp_path / f"out.{ext}")
    assert res.summary[2] == ("  cleaned        20 duplicate faces (20 opposite-wound) removed; 5 coincident vertices "
                              "merged; 1 component; closed surface; 1 vertex in no face")
    out = load_mesh(tmp_path / f"out.{ext}")
    np.testing.assert_allclose(out.points, mesh.points, rtol=0, atol=0)  # count and order of the file
    np.testing.assert_array_equal(out.cells["triangle"], mesh.cells["triangle"])
    cp = out.point_data["cp_pred"]
    assert cp.shape == (mesh.num_points,) and np.isfinite(cp).all()
    n = mesh.num_points - 6
    np.testing.assert_array_equal(cp[n:n + 5], cp[:5])  # coincident copies get one prediction
    flag = out.point_data["extrapolation"]
    assert flag[-1] & FLAG_OFF_SURFACE and not (flag[:-1] & FLAG_OFF_SURFACE).any()
    np.testing.assert_array_equal(res.extrapolation, flag)


@pytest.mark.parametrize("ext", ["obj", "vtu"])
def test_quads_and_polygons_stay_in_the_output(ckpt, tmp_path, ext):
    pts, faces = _body(3)
    # pair up triangles into quads where two share an edge and lie next to each other in the list
    tm = trimesh.Trimesh(pts, faces, process=False)
    adj = tm.face_adjacency[:200]
    used, quads = set(), []
    for a, b in adj:
        if a in used or b in used:
            continue
        fa, fb = faces[a], faces[b]
        shared = set(fa) & set(fb)
        oa = [v for v in fa if v not in shared][0]
        ob = [v for v in fb if v not in shared][0]
        i = list(fa).index(oa)
        quads.append([oa, fa[(i + 1) % 3], ob, fa[(i + 2) % 3]])
        used |= {a, b}
    tris = np.array([f for k, f in enumerate(faces) if k not in used])
    mesh = Mesh(pts, {"triangle": tris, "quad": np.array(quads)})
    src = save_mesh(mesh, tmp_path / f"quads.{ext}")  # a quad surface through meshio used to fail
    predict_file(ckpt, src, tmp_path / "pred.vtu")
    out = load_mesh(tmp_path / "pred.vtu")
    np.testing.assert_array_equal(out.cells["quad"], mesh.cells["quad"])
    np.testing.assert_array_equal(out.cells["triangle"], mesh.cells["triangle"])
    assert np.isfinite(out.point_data["cp_pred"]).all()


def test_cli_summary_preview_and_single_line_warnings(ckpt, tmp_path, capsys):
    pts, faces = _body(3, aspect=(1.0, 1.0, 1.0))  # a sphere: the aspect is outside the training range
    src = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "ball.stl")
    assert cli(["predict", "--checkpoint", str(ckpt), "--mesh", str(src), "--out", str(tmp_path / "ball.vtu")]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"pyengine predict: {src} -> {tmp_path / 'ball.vtu'}"
    heads = [ln.split()[0] for ln in lines[1:]]
    assert heads == ["mesh", "cleaned", "normals", "model", "time", "cp_pred", "extrapolation", "size", "wrote"]
    assert lines[1] == f"  mesh           {len(pts):,} vertices, {len(faces):,} cells (triangle {len(faces):,})"
    assert "cleaned        nothing to remove; 1 component; closed surface" in out
    for stage in ("load", "clean", "normals", "predict", "check", "write", "preview"):
        assert f"{stage} " in lines[5]
    assert lines[-1] == f"  wrote          {tmp_path / 'ball.vtu'}, {tmp_path / 'ball.png'}"
    assert err.splitlines() and all(ln.startswith("pyengine predict: warning: ") for ln in err.splitlines())
    assert "UserWarning" not in err and ".py:" not in err
    assert "aspect ratios [1.0, 1.0, 1.0]" in err
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp_path / "ball.png")
    assert img.shape[0] > 300 and img.shape[1] > 1200
    coloured = (np.ptp(img[..., :3], axis=2) > 0.2).mean()  # viridis pixels, not white or grey
    assert 0.05 < coloured < 0.8


@pytest.mark.parametrize("args,message", [
    (["--chunk-size", "0"], "--chunk-size must be a positive integer, got 0"),
    (["--out", "{tmp}/out.xyz"], "--out {tmp}/out.xyz: unsupported output format '.xyz'; use .vtu, .vtp, .vtk, .ply"),
    (["--out", "{tmp}/afile/out.vtu"], "--out {tmp}/afile/out.vtu: {tmp}/afile is a file, not a directory"),
    (["--png", "{tmp}/prev.jpg"], "--png {tmp}/prev.jpg: must end with .png"),
    (["--checkpoint", "{tmp}/none.pt"], "checkpoint {tmp}/none.pt does not exist"),
    (["--mesh", "{tmp}/none.stl"], "{tmp}/none.stl: no such file"),
    (["--mesh", "{tmp}/afile"], "{tmp}/afile: unsupported mesh format '(no extension)'"),
    (["--cad-size", "-1"], "--cad-size must be a positive length, got -1.0"),
    (["--out", "{tmp}/big.stl"], "--out {tmp}/big.stl: unsupported output format '.stl'"),
])
def test_arguments_are_checked_before_anything_loads(ckpt, tmp_path, capsys, monkeypatch, args, message):
    import pyengine.geometry.io as gio
    import pyengine.pipeline.checkpoint as ck

    big = tmp_path / "big.stl"
    pts, faces = _body(2)
    save_mesh(Mesh(pts, {"triangle": faces}), big)
    (tmp_path / "afile").write_text("x")

    def boom(*a, **k):
        raise AssertionError("loaded before the arguments were checked")

    monkeypatch.setattr(gio, "load_mesh", boom)
    monkeypatch.setattr(ck, "load_checkpoint", boom)
    base = {"--checkpoint": str(ckpt), "--mesh": str(big), "--out": str(tmp_path / "o.vtu")}
    given = dict(zip(args[::2], [a.format(tmp=tmp_path) for a in args[1::2]]))
    argv = ["predict"] + [x for k, v in {**base, **given}.items() for x in (k, v)]
    t0 = time.perf_counter()
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - t0 < 5
    assert err.startswith(f"pyengine predict: error: {message.format(tmp=tmp_path)}") and len(err.splitlines()) == 1


def test_output_may_not_overwrite_the_input(ckpt, tmp_path):
    src = save_mesh(Mesh(*_body(2)[:1], {"triangle": _body(2)[1]}), tmp_path / "in.vtu")
    with pytest.raises(ValueError, match=r"--out .*in\.vtu: is the input mesh; write the prediction to another file"):
        predict_file(ckpt, src, src)


def test_partial_files_are_refused_unless_allowed(ckpt, tmp_path, capsys):
    pts, faces = _body(3)
    full = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "full.stl")
    cut = tmp_path / "cut.stl"
    cut.write_bytes(full.read_bytes()[:84 + 50 * 500])
    argv = ["predict", "--checkpoint", str(ckpt), "--mesh", str(cut), "--out", str(tmp_path / "cut.vtu"), "--no-png"]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"pyengine predict: error: {cut}: truncated binary STL: the header promises 1,280 triangles but the "
                   f"file holds 500 (25,084 of 64,084 bytes); pass --allow-partial to predict on the readable part")
    assert not (tmp_path / "cut.vtu").exists()
    assert cli(argv + ["--allow-partial"]) == 0
    err = capsys.readouterr().err
    assert f"pyengine predict: warning: {cut}: truncated binary STL: the header promises 1,280 triangles" in err
    assert "using the readable part (" in err and (tmp_path / "cut.vtu").exists()


def test_two_d_checkpoint_refuses_a_three_d_mesh(tmp_path):
    torch.manual_seed(0)
    model = build("gno", 0, 1, 2, hidden=8, layers=1, radius=0.3, kernel_hidden=(8,), max_neighbors=12)
    p = torch.rand(60, 2)
    norm = Normalizer().fit([Sample(p, fields={"u": p[:, 0]})], fields=["u"])
    ck = tmp_path / "m2d.pt"
    save_checkpoint(ck, model, normalizer=norm, fields={"u": 1}, extra={"features": "none"})
    pts, faces = _body(2)
    src = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "b.vtu")
    with pytest.raises(ValueError) as info:
        predict_file(ck, src, tmp_path / "b_out.vtu")
    assert str(info.value) == (f"checkpoint {ck} holds a 2-D model, but {src} is 3-D (z spans {pts[:, 2].min():.6g} to "
                               f"{pts[:, 2].max():.6g}); predicting would silently drop z")
    flat = save_mesh(Mesh(np.c_[pts[:, :2], np.full(len(pts), 3.0)], {"triangle": faces}), tmp_path / "flat.vtu")
    res = predict_file(ck, flat, tmp_path / "flat_out.vtu")  # a planar mesh at any constant z is fine
    assert np.isfinite(res.fields["u"]).all()


def test_inconsistent_checkpoints_are_refused(tmp_path):
    pts, faces = _body(2)
    src = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "b.vtu")
    bad_fields = _save(tmp_path / "fields.pt", _gno(), fields={"cp": 2})
    with pytest.raises(ValueError) as info:
        predict_file(bad_fields, src, tmp_path / "o1.vtu")
    assert str(info.value) == f"checkpoint {bad_fields}: fields {{'cp': 2}} have 2 channels but the model predicts 1"
    model = _gno()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    nan_ck = _save(tmp_path / "nan.pt", model)
    first, w = next((k, v) for k, v in torch.load(nan_ck, weights_only=True)["state_dict"].items()
                    if not v.isfinite().all())
    with pytest.raises(ValueError) as info:
        predict_file(nan_ck, src, tmp_path / "o2.vtu")
    assert str(info.value) == (f"checkpoint {nan_ck}: weight {first!r} holds NaN or Inf ({int((~w.isfinite()).sum())} of {w.numel()} values); "
                               f"the training diverged or the file is damaged")
    assert not (tmp_path / "o1.vtu").exists() and not (tmp_path / "o2.vtu").exists()


def test_non_finite_predictions_are_never_written(tmp_path):
    pts, faces = _body(2)
    src = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "b.vtu")
    norm = Normalizer()
    norm.mean = {"cp": torch.zeros(1, dtype=torch.float64), "features": torch.zeros(3, dtype=torch.float64)}
    norm.std = {"cp": torch.full((1,), 1e300, dtype=torch.float64), "features": torch.ones(3, dtype=torch.float64)}
    ck = _save(tmp_path / "huge.pt", _gno(), normalizer=norm)  # finite weights, but cp * 1e300 overflows float32
    with pytest.raises(ValueError) as info:
        predict_file(ck, src, tmp_path / "o.vtu")
    assert str(info.value).startswith(f"{src}: the model predicted NaN or Inf at ")
    assert str(info.value).endswith(f" of {len(pts):,} vertices; nothing was written")
    assert not (tmp_path / "o.vtu").exists()


def test_extrapolation_flag_counts_field_range_and_unseen_vertices(tmp_path, capsys):
    ck = _save(tmp_path / "narrow.pt", _gno())
    payload = torch.load(ck, weights_only=True)
    payload["extra"]["envelope"]["fields"]["cp"] = [[1e6, 1e6 + 1]]  # nothing predicted can be inside
    torch.save(payload, ck)
    pts, faces = _body(3)
    pts = np.concatenate([pts, [[3.0, 0, 0]]])
    src = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "b.vtu")
    assert cli(["predict", "--checkpoint", str(ck), "--mesh", str(src), "--out", str(tmp_path / "o.vtu"),
                "--no-png"]) == 0
    out = capsys.readouterr().out
    flag = load_mesh(tmp_path / "o.vtu").point_data["extrapolation"]
    assert (flag & FLAG_FIELD).all() and flag[-1] & FLAG_OFF_SURFACE
    n = len(pts)
    assert f"extrapolation  {n:,} of {n:,} distinct vertices (100.0%) flagged: " in out
    assert f"{n:,} field range, 1 in no face (point field 'extrapolation')" in out


def test_units_change_nothing_the_model_sees(ckpt, tmp_path, capsys):
    pts, faces = _body(3)
    a = save_mesh(Mesh(pts, {"triangle": faces}), tmp_path / "m.vtu")
    b = save_mesh(Mesh(pts * 1000.0, {"triangle": faces}), tmp_path / "mm.vtu")
    ra = predict_file(ckpt, a, tmp_path / "a.vtu")
    rb = predict_file(ckpt, b, tmp_path / "b.vtu", units="mm", verbose=True)
    np.testing.assert_allclose(rb.fields["cp"], ra.fields["cp"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rb.extrapolation, ra.extrapolation)  # no size warning for a mm copy
    out = capsys.readouterr().out
    assert "  size           2000 mm (largest box side) = 2 m; the unit-box frame makes predictions independent" in out


def test_gz_and_step_inputs_end_to_end(ckpt, tmp_path):
    pytest.importorskip("gmsh")
    from pyengine.data.physics._gmsh import gmsh_session

    with gmsh_session() as gmsh:
        gmsh.model.occ.addBox(0, 0, 0, 100, 50, 40)
        gmsh.model.occ.addSphere(150, 25, 20, 20)
        gmsh.model.occ.synchronize()
        gmsh.write(str(tmp_path / "asm.step"))
    step = tmp_path / "asm.step"
    gz = tmp_path / "asm.step.gz"
    gz.write_bytes(gzip.compress(step.read_bytes()))
    with pytest.warns(PredictWarning):
        res = predict_file(ckpt, gz, tmp_path / "asm.vtu", units="m", cad_size=10.0)
    out = load_mesh(tmp_path / "asm.vtu")
    assert sorted(np.unique(out.cell_data["component"]["triangle"]).tolist()) == [0, 1]
    assert np.isfinite(out.point_data["cp_pred"]).all() and res.out == tmp_path / "asm.vtu"
    assert any("--units m ignored: the file declares its unit (read as mm)" in w for w in res.warnings)
