"""Killed writers leave no temp files behind for good, and resume keeps the checkpoint's normaliser (finding 8)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from pipeline_helpers import field_sample, small_gno
from pyengine._atomic import STALE_AFTER_S, atomic_path, clean_stale_temp_files
from pyengine.data import DiskCache
from pyengine.pipeline import TrainConfig, Trainer, load_checkpoint, save_checkpoint

_KILLED_WRITER = textwrap.dedent("""
    import importlib.util, os, signal, sys
    spec = importlib.util.spec_from_file_location("_atomic", sys.argv[2])  # stdlib only: no torch import
    atomic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic)
    with atomic.atomic_path(sys.argv[1], suffix=".pt") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"x" * (8 << 20))   # an 8 MB checkpoint, half way through its write
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
""")


def _killed_write(target):
    import pyengine._atomic

    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target), pyengine._atomic.__file__])
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    assert len(left) == 1 and left[0].stat().st_size == 8 << 20
    return left[0]


def _temp_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))  # the writer's temp files


def test_next_checkpoint_write_removes_a_killed_writers_temp_file(tmp_path):
    target = tmp_path / "model.pt"
    save_checkpoint(target, small_gno())
    before = target.read_bytes()
    _killed_write(target)
    assert target.read_bytes() == before  # the last good checkpoint is intact and loads
    load_checkpoint(target)
    save_checkpoint(target, small_gno())
    assert _temp_files(tmp_path) == []


def test_trainer_and_cache_clean_their_directories_on_start(tmp_path):
    run = tmp_path / "run"
    _killed_write(run / "model.pt")
    _killed_write(run / "log.csv")
    Trainer(small_gno(), [field_sample(0)], fields=["u"], out_dir=run, config=TrainConfig(epochs=1, progress=False))
    assert _temp_files(run) == []
    cache = DiskCache(tmp_path / "cache")
    _killed_write(cache.path("ns", "a"))
    assert cache.get_or_compute("ns", "b", lambda: 1) == 1
    assert _temp_files(tmp_path / "cache" / "ns") == []


def test_live_writers_temp_files_are_kept(tmp_path):
    target = tmp_path / "x.pt"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = tmp_path / f".x.pt.pyengine-tmp-{sleeper.pid}-abc.pt"  # a write in progress in another process
        other.write_bytes(b"partial")
        with atomic_path(target) as tmp:  # this process's own write in progress
            open(tmp, "w").close()
            assert clean_stale_temp_files(tmp_path) == []
        assert other.exists()
        os.utime(other, (time.time() - STALE_AFTER_S - 10,) * 2)  # but not forever
        assert clean_stale_temp_files(tmp_path) == [other]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resume_uses_the_checkpoints_normaliser(tmp_path):
    cfg = dict(epochs=4, batch_size=2, lr=5e-3, progress=False)
    first = Trainer(small_gno(), [field_sample(i) for i in range(4)], fields=["u"], out_dir=tmp_path,
                    config=TrainConfig(**cfg))
    first.config.epochs = 2
    first.fit()
    # the resumed run sees other samples (a refit would give other statistics)
    other = [field_sample(i + 50, n=80) for i in range(4)]
    for s in other:
        s.fields["u"] = 10 * s.fields["u"] + 5
    resumed = Trainer(small_gno(), other, fields=["u"], config=TrainConfig(**cfg))
    assert not torch.equal(resumed.normalizer.mean["u"], first.normalizer.mean["u"])
    resumed.fit(resume=tmp_path / "model.pt")
    for name in ("u", "features"):
        assert torch.equal(resumed.normalizer.mean[name], first.normalizer.mean[name])
        assert torch.equal(resumed.normalizer.std[name], first.normalizer.std[name])
    expected = first.normalizer.normalize_field("u", other[0].fields["u"])
    torch.testing.assert_close(resumed._train[0].target[:, 0], expected, rtol=0, atol=0)
