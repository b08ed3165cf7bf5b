"""Nothing read from disk runs code: planted checkpoints and cache entries are refused (issue 14, finding 2)."""

import os
import warnings

import pytest
import torch

from pipeline_helpers import small_gno
from pyengine.cli import main as cli
from pyengine.data import DiskCache, Sample
from pyengine.pipeline import load_checkpoint, save_checkpoint


class _Payload:
    """Pickles as a call of os.system: loading it with a full unpickler runs the shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _planted_checkpoint(path, marker):
    model = small_gno()
    save_checkpoint(path, model)
    payload = torch.load(path, weights_only=True)
    payload["extra"]["note"] = _Payload(marker)
    torch.save(payload, path)


def test_payload_is_live_when_unpickled_unsafely(tmp_path):
    # the planted file really executes under a full unpickler, so the refusals below are meaningful
    _planted_checkpoint(tmp_path / "evil.pt", tmp_path / "ran")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert (tmp_path / "ran").exists()


def test_planted_checkpoint_is_refused_by_load_and_predict(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    _planted_checkpoint(evil, marker)
    with pytest.raises(ValueError, match=r"was refused: it holds a pickled object of type posix\.system"):
        load_checkpoint(evil)
    mesh = tmp_path / "tri.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    code = cli(["predict", "--checkpoint", str(evil), "--mesh", str(mesh), "--out", str(tmp_path / "o.vtu")])
    err = capsys.readouterr().err
    assert code == 2 and "was refused" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "o.vtu").exists()


def test_planted_cache_entry_is_refused_and_recomputed(tmp_path):
    marker = tmp_path / "pwned"
    cache = DiskCache(tmp_path / "cache")
    key = "k" * 64
    p = cache.path("potential_flow", key)
    p.parent.mkdir(parents=True)
    torch.save({"pyengine_cache": 1, "value": _Payload(marker)}, p)
    with pytest.warns(UserWarning, match="was refused: it holds a pickled object of type posix.system"):
        v = cache.get_or_compute("potential_flow", key, lambda: {"x": torch.ones(2)})
    assert not marker.exists()
    assert torch.equal(v["x"], torch.ones(2)) and cache.misses == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overwritten entry is clean plain data now
        assert torch.equal(cache.get_or_compute("potential_flow", key, lambda: None)["x"], torch.ones(2))
    assert cache.hits == 1


def test_cache_round_trips_samples_arrays_and_refuses_other_objects(tmp_path):
    import numpy as np

    cache = DiskCache(tmp_path)
    s = Sample(torch.rand(5, 3), features=torch.rand(5, 2), fields={"u": torch.rand(5)},
               cells={"triangle": torch.tensor([[0, 1, 2]])}, metadata={"n": np.int64(3), "name": "x"})
    value = {"s": s, "a": np.arange(4.0), "t": (1, [2.5, None], b"raw")}
    cache.put("ns", "k", value)
    back = DiskCache.load(cache.path("ns", "k"))
    assert isinstance(back["s"], Sample) and torch.equal(back["s"].points, s.points)
    assert torch.equal(back["s"].cells["triangle"], s.cells["triangle"]) and back["s"].metadata == s.metadata
    assert type(back["s"].metadata["n"]) is np.int64
    assert isinstance(back["a"], np.ndarray) and np.array_equal(back["a"], value["a"])
    assert back["t"] == (1, [2.5, None], b"raw")
    with pytest.raises(TypeError, match="cannot store a value of type object"):
        cache.put("ns", "k2", {"bad": object()})
    assert not cache.path("ns", "k2").exists()


def test_no_unsafe_torch_load_in_the_package():
    import pathlib

    import pyengine

    root = pathlib.Path(pyengine.__file__).parent
    offenders = [str(f.relative_to(root)) for f in root.rglob("*.py")
                 if "weights_only=False" in f.read_text() or "pickle.load" in f.read_text()]
    assert offenders == []
