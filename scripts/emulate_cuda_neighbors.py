#!/usr/bin/env python3
"""Run the neighbor tests against the CUDA k-d tree algorithm, executed on the host.

The CUDA build and queries (csrc/neighbors/kdtree_cuda.cuh) are written with Thrust
algorithms and __host__ __device__ functors. Compiled with Thrust's sequential C++
backend (headers from the CUDA toolkit, no GPU needed), the same code runs on the CPU.
This script builds that host version as a small extension and runs the given tests
(default: the CPU neighbor and partition tests, which compare against scipy) with
``pyengine.ops``'s k-d tree ops routed to it, so the GPU algorithm is checked on
machines without a GPU. It does not replace the ``cuda`` tests: device code paths
(rounding intrinsics, memory, the CUB primitives) only run on a GPU.

With ``--cuda-tests`` it runs tests/neighbors/test_neighbors_cuda.py instead, on the CPU: the
"CUDA" side of its parity helpers (``radius_both``, ``knn_both``) is the host-compiled GPU
code and the reference side the CPU op; the other calls in that file run the CPU op on both
sides (which still checks the test code), and the tests about real devices are deselected.

Usage: python scripts/emulate_cuda_neighbors.py [--cuda-tests] [pytest args...]
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_TESTS = ["tests/neighbors/test_neighbors.py", "tests/neighbors/test_partition.py"]


def cccl_include() -> list[str]:
    nvcc = shutil.which("nvcc")
    roots = [pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))]
    if nvcc:
        roots.append(pathlib.Path(nvcc).resolve().parents[1])
    for root in roots:
        for inc in (root / "include" / "cccl", root / "include"):
            if (inc / "thrust" / "sort.h").exists():
                return [str(inc)]
    raise SystemExit("emulate_cuda_neighbors: Thrust headers not found (set CUDA_HOME to a CUDA toolkit)")


def load_host_kdtree():
    from torch.utils.cpp_extension import load

    import hashlib

    # torch rebuilds when the sources or flags change, not the headers: a digest of the
    # headers in the flags makes a header edit rebuild too.
    headers = sorted((ROOT / "csrc").rglob("*.h"))
    digest = hashlib.sha1(b"".join(h.read_bytes() for h in headers)).hexdigest()[:12]
    build = ROOT / "build" / "emulate_kdtree_gpu"
    build.mkdir(parents=True, exist_ok=True)
    return load(
        name="pyengine_kdtree_gpu_host",
        sources=[str(ROOT / "scripts/emulate/kdtree_gpu_host.cpp"), str(ROOT / "csrc/common/checks.cpp"),
                 str(ROOT / "csrc/neighbors/neighbors_args.cpp")],
        extra_include_paths=[str(ROOT / "csrc"), *cccl_include()],
        extra_cflags=["-O2", "-DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP", "-DTHRUST_HOST_SYSTEM=THRUST_HOST_SYSTEM_CPP",
                      f"-DPYE_HEADERS_DIGEST={digest}"],
        build_directory=str(build),
        verbose=False,
    )


class _Routed:
    """torch.ops.pyengine with the four k-d tree ops replaced by the host-compiled GPU code."""

    def __init__(self, real, host):
        self._real, self._host = real, host

    def __getattr__(self, name):
        if name.startswith("kdtree_"):
            return getattr(self._host, name)
        return getattr(self._real, name)


class RoutePlugin:
    def __init__(self, host):
        self.host = host

    def pytest_configure(self, config):
        from pyengine.ops import neighbors

        neighbors._ops = _Routed(neighbors._ops, self.host)


class CudaTestsPlugin:
    """tests/neighbors/test_neighbors_cuda.py on the CPU, its CUDA side routed to the host-compiled GPU code."""

    def __init__(self, host):
        self.host = host

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        import torch
        from pyengine.ops import neighbors

        import test_neighbors_cuda as t

        real, host = neighbors._ops, _Routed(neighbors._ops, self.host)

        def on_host(fn, *args, **kw):
            neighbors._ops = host
            try:
                return fn(*args, **kw)
            finally:
                neighbors._ops = real

        t.DEV = torch.device("cpu")
        t.assert_on_device.__defaults__ = (t.DEV,)
        t.radius_both = lambda p, q, r, **kw: (t.ops.radius_search(p, q, r, **kw),
                                               on_host(t.ops.radius_search, p, q, r, **kw))
        t.knn_both = lambda p, q, k, **kw: (t.ops.knn(p, q, k, **kw), on_host(t.ops.knn, p, q, k, **kw))
        for item in items:  # conftest skipped them all (no GPU here)
            item.own_markers = [m for m in item.own_markers if m.name != "skip"]


def main(argv: list[str]) -> int:
    host = load_host_kdtree()
    os.chdir(ROOT)
    if argv[:1] == ["--cuda-tests"]:
        sys.path.insert(0, str(ROOT / "tests"))
        args = ["tests/neighbors/test_neighbors_cuda.py", "-q", "-x", "-k", "not device_mismatch and not partition_cuda",
                *argv[1:]]
        return pytest.main(args, plugins=[CudaTestsPlugin(host)])
    args = argv or [*DEFAULT_TESTS, "-q", "-x"]
    return pytest.main(args, plugins=[RoutePlugin(host)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
