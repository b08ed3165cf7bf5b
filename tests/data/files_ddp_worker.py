"""Worker for test_files_training.py's DDP test, launched with torchrun (2 gloo ranks on CPU).

Trains a small GNO from a file cache (random point subsets, one DataLoader worker per rank,
each rank loading only its shard of every global batch) and writes rank 0's final weights.
"""

import argparse

import torch
import torch.distributed as dist

from pyengine.data.files import CachedSamples, FileCache
from pyengine.models import build
from pyengine.pipeline import TrainConfig, Trainer

GNO = dict(hidden=8, layers=1, radius=0.5, kernel_hidden=(8,), max_neighbors=8)


def trainer_for(cache_dir: str, workers: int) -> Trainer:
    cache = FileCache(cache_dir)
    data = CachedSamples(cache, "train", points_per_step=60, encoder_points=80, frame="dataset", seed=4,
                         workers=workers)
    torch.manual_seed(0)
    return Trainer(build("gno", 3, 1, 3, **GNO), data, fields=["cp"],
                   config=TrainConfig(epochs=3, batch_size=2, lr=5e-3, progress=False, seed=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    trainer = trainer_for(args.cache, workers=1)
    trainer.fit()
    if dist.get_rank() == 0:
        torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, args.out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
