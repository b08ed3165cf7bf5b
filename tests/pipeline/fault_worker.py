"""A small training run that the fault-injection tests kill, starve of disk and restart.

    python fault_worker.py OUT_DIR CACHE_DIR EPOCHS

Builds 8 samples through a DiskCache (the "data build"; each takes a moment, like a
solver), then trains a small GNO with a checkpoint every epoch, resuming from
OUT_DIR/model.pt when it exists. Markers on stdout let the parent kill it in a chosen
phase: ``data I`` while sample I is computed, ``save-cache I`` and ``save-model E``
while the temporary file of a cache entry or of epoch E's checkpoint is on disk but
not yet renamed into place, ``epoch E`` after each training epoch, ``done`` at the end.
A disk error exits with status 3 and prints ``oserror ERRNO``. With ``FAULT_PAUSE_AT`` set
to a marker, the worker stops there (sleeps) so that the parent's kill lands exactly in that
state, whatever the machine's load.
"""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyengine._atomic as atomic  # noqa: E402
from pipeline_helpers import field_sample, small_gno  # noqa: E402
from pyengine.data import DiskCache  # noqa: E402
from pyengine.pipeline import TrainConfig, Trainer  # noqa: E402


PAUSE_AT = os.environ.get("FAULT_PAUSE_AT")


def say(text: str) -> None:
    print(text, flush=True)
    if text == PAUSE_AT:
        time.sleep(60)  # the parent kills us here


def main(out: Path, cache_dir: Path, epochs: int) -> int:
    torch.set_num_threads(1)
    write = atomic._write_bytes

    def marked_write(path, data):  # the temp file is complete on disk, not yet renamed into place
        write(path, data)
        name = Path(path).name
        if name.startswith(".model.pt."):
            say(f"save-model {trainer.epoch}")
        elif ".pyengine-tmp-" in name and Path(path).parent.name == "samples":
            say(f"save-cache {name.split('.')[1]}")

    atomic._write_bytes = marked_write

    def compute(i):
        say(f"data {i}")
        time.sleep(0.02)  # a solver's moment
        return field_sample(i)

    cache = DiskCache(cache_dir)
    samples = [cache.get_or_compute("samples", f"s{i}", lambda i=i: compute(i)) for i in range(8)]
    trainer = Trainer(small_gno(), samples, fields=["u"],
                      config=TrainConfig(epochs=epochs, batch_size=4, lr=5e-3, progress=False, seed=1,
                                         checkpoint_every=1), out_dir=out)
    ckpt = out / "model.pt"
    orig_write_logs = trainer._write_logs

    def logs():
        orig_write_logs()
        say(f"epoch {trainer.epoch}")

    trainer._write_logs = logs
    try:
        trainer.fit(resume=ckpt if ckpt.exists() else None)
    except OSError as e:
        say(f"oserror {e.errno} {e}")
        return 3
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
