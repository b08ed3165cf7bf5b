"""DDP with 2 gloo processes (launched by torchrun) equals one process on the same global batches."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from pipeline_helpers import ddp_setup

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo")
def test_two_gloo_ranks_equal_single_process(tmp_path):
    out = tmp_path / "ddp_weights.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "ddp_worker.py"), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = torch.load(out)

    single = ddp_setup()
    single.fit()
    ref = single.model.state_dict()
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=2e-5, atol=2e-6, msg=f"parameter {k} differs")
    # and training did move the weights (the comparison is not between two untouched models)
    from pipeline_helpers import small_gno

    init = small_gno().state_dict()
    assert any(not torch.allclose(ref[k], init[k]) for k in ref)
