"""File datasets, preprocessing: VTP encodings (raw, zlib, base64, and files written by hand the way
other tools write them) give identical samples; the preprocessing workers (a preloaded forkserver
on Linux) give the same cache as the in-process pass."""

import importlib
import struct
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pyengine.data.files import FileDataset, read_vtp, write_vtp

cache_mod = importlib.import_module("pyengine.data.files.cache")

ENCODINGS = ("raw", "zlib", "base64")


def _surface(seed=0):
    """A jittered closed latitude-longitude ellipsoid (triangles) plus a quad-faced box, an awkward
    number of points, with point data (scalar and 3-vector) and cell data."""
    rng = np.random.default_rng(seed)
    n_lat, n_lon = 7, 11
    th = np.linspace(0, np.pi, n_lat + 2)[1:-1]
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    pts = np.stack([1.7 * np.cos(T), np.sin(T) * np.cos(P), 0.6 * np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    pts = np.concatenate([pts, [[1.7, 0, 0], [-1.7, 0, 0]]]) + rng.normal(0, 0.01, (n_lat * n_lon + 2, 3))
    idx = np.arange(n_lat * n_lon).reshape(n_lat, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    top, bot = n_lat * n_lon, n_lat * n_lon + 1
    tris = np.concatenate([np.stack([idx[:-1], nxt[:-1], nxt[1:]], -1).reshape(-1, 3),
                           np.stack([idx[:-1], nxt[1:], idx[1:]], -1).reshape(-1, 3),
                           np.stack([np.full(n_lon, top), nxt[0], idx[0]], -1),
                           np.stack([np.full(n_lon, bot), idx[-1], nxt[-1]], -1)])
    box = np.array([[x, y, z] for x in (3.0, 4.0) for y in (0.0, 1.0) for z in (0.0, 1.0)])
    quads = np.array([[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]])
    points = np.concatenate([pts, box])
    cells = {"triangle": tris.astype(np.int64), "quad": quads + len(pts)}
    n_cells = len(tris) + len(quads)
    point_data = {"p": rng.normal(size=len(points)), "wallShearStress": rng.normal(size=(len(points), 3))}
    cell_data = {"pc": rng.normal(size=n_cells)}
    return points, cells, point_data, cell_data


def _hand_vtp(path: Path, points, cells, point_data, cell_data, mode: str) -> None:
    """A .vtp written without VTK: ``mode`` "raw" (appended raw binary, UInt64 block headers, as
    CFD tools write them) or "ascii" (inline text)."""
    conn = np.concatenate([c.ravel() for c in cells.values()]).astype(np.int64)
    offsets = np.cumsum([c.shape[1] for c in cells.values() for _ in range(len(c))]).astype(np.int64)
    arrays = []  # (section, attributes, values)
    arrays += [("PointData", f'Name="{k}" NumberOfComponents="{1 if v.ndim == 1 else v.shape[1]}"', v)
               for k, v in point_data.items()]
    arrays += [("CellData", f'Name="{k}" NumberOfComponents="{1 if v.ndim == 1 else v.shape[1]}"', v)
               for k, v in cell_data.items()]
    arrays += [("Points", 'Name="Points" NumberOfComponents="3"', points),
               ("Polys", 'Name="connectivity"', conn), ("Polys", 'Name="offsets"', offsets)]
    blob, xml = b"", {s: [] for s in ("PointData", "CellData", "Points", "Polys")}
    for section, attrs, v in arrays:
        v = np.ascontiguousarray(v)
        kind = "Float64" if v.dtype.kind == "f" else "Int64"
        if mode == "raw":
            xml[section].append(f'<DataArray type="{kind}" {attrs} format="appended" offset="{len(blob)}"/>')
            data = v.astype("<f8" if kind == "Float64" else "<i8").tobytes()
            blob += struct.pack("<Q", len(data)) + data
        else:
            text = " ".join(repr(float(x)) if kind == "Float64" else str(int(x)) for x in v.ravel())
            xml[section].append(f'<DataArray type="{kind}" {attrs} format="ascii">{text}</DataArray>')
    body = "".join(f"<{s}>{''.join(a)}</{s}>" for s, a in xml.items())
    head = (f'<?xml version="1.0"?>\n<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" '
            f'header_type="UInt64"><PolyData><Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" '
            f'NumberOfLines="0" NumberOfStrips="0" NumberOfPolys="{len(offsets)}">{body}</Piece></PolyData>')
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(head.encode())
        if mode == "raw":
            f.write(b'<AppendedData encoding="raw">_' + blob + b"</AppendedData>")
        f.write(b"</VTKFile>\n")


def test_vtp_encodings_give_identical_samples(tmp_path):
    points, cells, pdata, cdata = _surface()
    for enc in ENCODINGS:
        write_vtp(tmp_path / enc / "s.vtp", points, cells, pdata, cdata, encoding=enc)
    for mode in ("raw", "ascii"):
        _hand_vtp(tmp_path / f"hand_{mode}" / "s.vtp", points, cells, pdata, cdata, mode)
    # the files really are what they say
    head = {enc: (tmp_path / enc / "s.vtp").read_bytes()[:4000] for enc in ENCODINGS}
    assert b'encoding="raw"' in head["raw"] and b"compressor" not in head["raw"]
    assert b'encoding="raw"' in head["zlib"] and b'compressor="vtkZLibDataCompressor"' in head["zlib"]
    assert b'encoding="base64"' in head["base64"]
    assert (tmp_path / "raw" / "s.vtp").stat().st_size > (tmp_path / "zlib" / "s.vtp").stat().st_size
    folders = [*ENCODINGS, "hand_raw", "hand_ascii"]
    for folder in folders:  # every reader path gives the arrays bit for bit
        r = read_vtp(tmp_path / folder / "s.vtp")
        np.testing.assert_array_equal(r.points, points)
        for kind, c in cells.items():
            np.testing.assert_array_equal(r.cells[kind], c)
        for k, v in pdata.items():
            np.testing.assert_array_equal(r.point_data[k], v)
        np.testing.assert_array_equal(r.cell_data["pc"], cdata["pc"])
    for folder in folders:  # one training sample each
        (tmp_path / folder / "m.json").write_text('[{"geometry": "s.vtp", "split": "train"}]')
    for options in ({"fields": ["p", "wallShearStress"]}, {"fields": ["pc"]}):
        ref = FileDataset({"path": str(tmp_path / "raw" / "m.json"), **options}).arrays(0)
        assert ref.location == ("points" if "p" in options["fields"] else "cells")
        for folder in folders[1:]:
            got = FileDataset({"path": str(tmp_path / folder / "m.json"), **options}).arrays(0)
            for name in ("points", "features", "area", "point_ids"):
                a, b = getattr(got, name), getattr(ref, name)
                assert (a is None) == (b is None), name
                if a is not None:
                    np.testing.assert_array_equal(a, b, err_msg=f"{folder}: {name}")
            for k in ref.fields:
                np.testing.assert_array_equal(got.fields[k], ref.fields[k], err_msg=f"{folder}: {k}")
    with pytest.raises(ValueError, match="encoding must be one of"):
        write_vtp(tmp_path / "x.vtp", points, cells, encoding="ascii85")


def _worker_state():
    """Run in a preprocessing worker: which preloaded modules it found already imported."""
    return sorted(m for m in cache_mod._PRELOAD if m in sys.modules)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forkserver path is Linux's")
def test_workers_start_from_a_preloaded_forkserver():
    ctx = cache_mod.worker_context()
    assert ctx.get_start_method() == "forkserver"
    # eval is a builtin: unpickling the task imports nothing, so the worker reports what it
    # inherited from the forkserver (a spawned worker would have none of these modules)
    probe = "sorted(m for m in __import__('sys').modules if m in {!r})".format(set(cache_mod._PRELOAD))
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=cache_mod._keep_freed_memory) as pool:
        assert pool.submit(eval, probe).result() == sorted(cache_mod._PRELOAD)
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert cache_mod._keep_freed_memory()


def test_worker_context_falls_back_to_spawn(monkeypatch):
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(cache_mod.sys, "platform", platform)
        assert cache_mod.worker_context().get_start_method() == "spawn"


def test_worker_processes_give_the_in_process_cache(tmp_path):
    points, cells, pdata, cdata = _surface()
    rng = np.random.default_rng(1)
    for i in range(4):  # different sizes and encodings per sample
        pts = points * (1 + 0.1 * i) + rng.normal(0, 0.01, points.shape)
        write_vtp(tmp_path / "data" / f"s{i}.vtp", pts, cells, {k: v + i for k, v in pdata.items()}, cdata,
                  encoding=ENCODINGS[i % 3])
    ds = FileDataset({"path": str(tmp_path / "data"), "fields": ["p", "wallShearStress"], "test": 1})
    serial = ds.preprocess(tmp_path / "serial", workers=0)
    parallel = ds.preprocess(tmp_path / "parallel", workers=3)
    assert parallel.index["build"]["workers"] == 3
    for key in ("stats", "train_bbox", "samples", "fields", "in_channels", "key"):
        assert parallel.index[key] == serial.index[key], key
    for i in range(len(serial)):
        for name in serial.samples[i]["arrays"]:
            np.testing.assert_array_equal(parallel.array(i, name), serial.array(i, name))


def test_caller_works_while_the_workers_start_and_errors_stop_the_pool(tmp_path, monkeypatch):
    import concurrent.futures
    import functools
    import threading

    points, cells, pdata, cdata = _surface()
    for i in range(6):
        write_vtp(tmp_path / "data" / f"s{i}.vtp", points * (1 + 0.05 * i), cells, pdata, cdata)
    ds = FileDataset({"path": str(tmp_path / "data"), "fields": ["p"], "test": 2})
    serial = ds.preprocess(tmp_path / "serial", workers=0)
    # hold the first submit (the forkserver's start) until the caller has done two samples itself
    here, two_done = [], threading.Event()
    original = cache_mod._process

    @functools.wraps(original)  # same qualified name: pickled by reference, the original in workers
    def counted(dataset, i, root):
        out = original(dataset, i, root)
        here.append(i)
        if len(here) == 2:
            two_done.set()
        return out

    class SlowStart(concurrent.futures.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            assert two_done.wait(60)
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "_process", counted)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", SlowStart)
    parallel = ds.preprocess(tmp_path / "parallel", workers=2)
    assert here[:2] == [5, 4] and len(here) < 6  # from the back; the pool did the rest
    assert parallel.index["samples"] == serial.index["samples"]
    assert parallel.index["stats"] == serial.index["stats"]
    for i in range(6):
        for name in serial.samples[i]["arrays"]:
            np.testing.assert_array_equal(parallel.array(i, name), serial.array(i, name))
    monkeypatch.undo()
    # a bad file fails the build with its name, whether a worker or the caller reads it
    for bad in ("s0.vtp", "s5.vtp"):
        broken = tmp_path / f"broken_{bad}"
        broken.mkdir()
        for f in (tmp_path / "data").glob("*.vtp"):
            (broken / f.name).write_bytes(b"not a vtp file" if f.name == bad else f.read_bytes())
        ds = FileDataset({"path": str(broken), "fields": ["p"], "test": 2})
        with pytest.raises(ValueError, match=bad):
            ds.preprocess(tmp_path / f"cache_{bad}", workers=2)
        assert not (tmp_path / f"cache_{bad}" / "index.json").exists()
