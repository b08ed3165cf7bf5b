"""Worker for tests/pipeline/test_pipeline_ddp.py, launched with torchrun (2 gloo ranks on CPU).

Trains the same small GNO on the same samples as the single-process run in the
test and writes rank 0's final weights to ``--out``.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_helpers import ddp_setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    trainer = ddp_setup()
    trainer.fit()
    if dist.get_rank() == 0:
        torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, args.out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
