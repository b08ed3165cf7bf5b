"""bench/models.py's test-error column (issue 20): the shared training loop at toy size."""

import torch

from bench.models import test_error as bench_test_error


def _bodies(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pts = torch.rand(120, 3, generator=g) * 2 - 1
        nrm = torch.nn.functional.normalize(pts, dim=1)
        out.append((pts, nrm, (2.0 + torch.sin(2 * pts[:, :1]) + nrm[:, :1])))
    return out


def test_error_falls_with_training_and_is_deterministic():
    train, test = _bodies(3, 0), _bodies(2, 1)
    untrained = bench_test_error("gno", train, test, 0, torch.device("cpu"))
    trained = bench_test_error("gno", train, test, 60, torch.device("cpu"))
    assert trained < 0.7 * untrained, (untrained, trained)
    assert bench_test_error("gno", train, test, 60, torch.device("cpu")) == trained
