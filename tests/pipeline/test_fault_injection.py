"""Fault injection for the pipeline: SIGKILL at random points of training, a full disk, corrupt cache entries.

In every case the last good checkpoint loads, a restart resumes to bitwise the parameters of an
uninterrupted run (the design promise: per-epoch seeded shuffles, and weights, optimizer, schedule
and normaliser state in the checkpoint), and the temporary files of killed writes are gone after
the next start. The worker is tests/pipeline/fault_worker.py.
"""

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pyengine._atomic as atomic
from pipeline_helpers import field_sample, small_gno
from pyengine.data import DiskCache
from pyengine.pipeline import TrainConfig, Trainer, load_checkpoint

WORKER = Path(__file__).resolve().parent / "fault_worker.py"
EPOCHS = 5
SEED = int(os.environ.get("PYENGINE_FAULT_SEED", "14"))


def _reference_weights():
    """The uninterrupted run, in this process, with the worker's settings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = Trainer(small_gno(), [field_sample(i) for i in range(8)], fields=["u"],
                    config=TrainConfig(epochs=EPOCHS, batch_size=4, lr=5e-3, progress=False, seed=1))
        t.fit()
    finally:
        torch.set_num_threads(threads)
    return t.model.state_dict()


def _run(out, cache, *, pause_at=None, kill_after=None):
    """Start the worker; kill it when it prints ``pause_at`` or ``kill_after`` seconds after its first
    marker. Returns (the markers it printed, its exit status)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("FAULT_PAUSE_AT", None)
    if pause_at:
        env["FAULT_PAUSE_AT"] = pause_at
    proc = subprocess.Popen([sys.executable, str(WORKER), str(out), str(cache), str(EPOCHS)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, start = [], None
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            start = start or time.monotonic()
            if lines[-1] == pause_at or (kill_after is not None and time.monotonic() - start >= kill_after):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode not in (0, -signal.SIGKILL, 3):
        raise AssertionError(f"worker failed ({proc.returncode}): {err[-2000:]}")
    return lines, proc.returncode


def _temp_files(*dirs):
    return sorted(str(p) for d in dirs if d.exists() for p in d.rglob(".*"))


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_during_data_build_training_and_writes_then_exact_resume(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    rng = random.Random(SEED)
    # kills in each phase, then one at a random moment; each restart resumes
    plan = [dict(pause_at=f"data {rng.randrange(1, 7)}"),             # while a sample is computed
            dict(pause_at=f"save-cache s{rng.randrange(3, 8)}"),      # a cache entry half-written
            dict(pause_at=f"save-model {rng.randrange(2, EPOCHS)}"),  # a checkpoint written, not yet renamed
            dict(kill_after=rng.uniform(0.0, 1.0)),                   # anywhere in training or writing
            dict(kill_after=rng.uniform(0.0, 1.0))]
    last_good = None  # epoch of the last checkpoint whose write certainly completed
    for step in plan:
        lines, code = _run(out, cache, **step)
        saves = [i for i, x in enumerate(lines) if x.startswith("save-model")]
        finished = [int(lines[i].split()[1]) for i in saves if i + 1 < len(lines) or code == 0]
        unsure = [int(lines[i].split()[1]) for i in saves if i + 1 == len(lines) and code != 0]
        last_good = finished[-1] if finished else last_good
        if code == 0:  # a random kill can come too late
            continue
        ckpt = out / "model.pt"
        if step.get("pause_at", "").startswith("save-model"):
            assert _temp_files(out), "the kill should have left the checkpoint's temporary file"
            assert load_checkpoint(ckpt)["train_state"]["epoch"] == int(step["pause_at"].split()[1]) - 1
        elif ckpt.exists():
            epoch = load_checkpoint(ckpt)["train_state"]["epoch"]  # whatever was interrupted, it loads
            assert epoch in [last_good, *unsure], (epoch, last_good, unsure)
        else:
            assert last_good is None
        if step.get("pause_at", "").startswith("save-cache"):
            assert _temp_files(cache), "the kill should have left the cache entry's temporary file"
        if unsure and load_checkpoint(ckpt)["train_state"]["epoch"] == unsure[0]:
            last_good = unsure[0]
    lines, code = _run(out, cache)
    assert code == 0 and lines[-1] == "done"
    assert _temp_files(out, cache) == []  # the restart cleaned every killed write's temp file
    payload = load_checkpoint(out / "model.pt")
    assert [row["epoch"] for row in payload["train_state"]["history"]] == list(range(1, EPOCHS + 1))
    assert _same_weights(payload["state_dict"], _reference_weights())


def test_full_disk_keeps_the_last_checkpoint_and_resume_is_exact(tmp_path, monkeypatch):
    out = tmp_path / "run"
    write = atomic._write_bytes
    calls = {"n": 0}

    def full_disk(path, data):  # the 3rd checkpoint fills the disk half-way through its write
        if Path(path).name.startswith(".model.pt."):
            calls["n"] += 1
            if calls["n"] == 3:
                with open(path, "wb") as f:
                    f.write(bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(atomic, "_write_bytes", full_disk)
    cfg = dict(epochs=EPOCHS, batch_size=4, lr=5e-3, progress=False, seed=1, checkpoint_every=1)
    samples = [field_sample(i) for i in range(8)]
    t = Trainer(small_gno(), samples, fields=["u"], config=TrainConfig(**cfg), out_dir=out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(OSError) as info:
            t.fit()
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(out / "model.pt")
        assert _temp_files(out) == []  # the failed write removed its partial file
        assert load_checkpoint(out / "model.pt")["train_state"]["epoch"] == 2
        monkeypatch.setattr(atomic, "_write_bytes", write)  # space freed: resume
        again = Trainer(small_gno(), samples, fields=["u"], config=TrainConfig(**cfg), out_dir=out)
        again.fit(resume=out / "model.pt")
    finally:
        torch.set_num_threads(threads)
    assert _same_weights(again.model.state_dict(), _reference_weights())


_TMPFS_WORKER = """
import os, sys
from pyengine.models import build
from pyengine.pipeline import load_checkpoint, save_checkpoint
d = sys.argv[1]
model = build("gno", 2, 1, 2, hidden=64, layers=2, kernel_hidden=(64,))  # a checkpoint of ~100 KB
save_checkpoint(os.path.join(d, "model.pt"), model)
ckpt_size = os.path.getsize(os.path.join(d, "model.pt"))
st = os.statvfs(d)
with open(os.path.join(d, "filler"), "wb") as f:  # leave room for half a checkpoint
    f.write(b"x" * (st.f_bavail * st.f_frsize - ckpt_size // 2))
try:
    save_checkpoint(os.path.join(d, "model.pt"), model)
    print("saved")
except OSError as e:
    print("oserror", e.errno, e.filename == os.path.join(d, "model.pt"))
load_checkpoint(os.path.join(d, "model.pt"))
print("files", sorted(os.listdir(d)))
"""


def test_real_full_disk_on_a_small_tmpfs(tmp_path):
    """A real ENOSPC (a 1 MiB tmpfs in a user+mount namespace) is an OSError naming the checkpoint, not
    torch's 'unexpected pos' RuntimeError, and the previous checkpoint survives."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = tmp_path / "w.py"
    script.write_text(_TMPFS_WORKER)
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode().strip()}")
    cmd = f"mount -t tmpfs -o size=1m none {mnt} && exec {sys.executable} {script} {mnt}"
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", cmd], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode != 0 and "mount" in r.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"oserror {errno.ENOSPC} True" in r.stdout
    assert "files ['filler', 'model.pt']" in r.stdout  # no temporary file left, previous checkpoint loads


def test_corrupt_cache_entries_are_rebuilt(tmp_path):
    cache = DiskCache(tmp_path)
    for i in range(4):
        cache.put("samples", f"s{i}", field_sample(i))
    p = [cache.path("samples", f"s{i}") for i in range(4)]
    p[0].write_bytes(p[0].read_bytes()[:100])  # truncated by a crash of another tool
    p[1].write_bytes(b"\0" * 4096)  # zeroed by the file system
    bad = torch.load(p[2], weights_only=True)  # well-formed archive, invalid content: NaN coordinates
    bad["value"][3]["points"][0, 0] = float("nan")
    torch.save(bad, p[2])
    computed = []

    def compute(i):
        computed.append(i)
        return field_sample(i)

    got = [cache.get_or_compute("samples", f"s{i}", lambda i=i: compute(i)) for i in range(4)]
    assert computed == [0, 1, 2] and (cache.hits, cache.misses) == (1, 3)
    for i, s in enumerate(got):
        assert torch.equal(s.points, field_sample(i).points)
    again = DiskCache(tmp_path)
    [again.get_or_compute("samples", f"s{i}", lambda: pytest.fail("recomputed")) for i in range(4)]
    assert again.hits == 4 and _temp_files(tmp_path) == []
