"""Dataset builders: many solver runs in parallel worker processes, seeded and cached on disk.

Shape ``i`` of a dataset with seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``,
so it depends only on ``(s, i)``: a dataset is the same whether it is built serially,
in parallel, or partly from the cache, and a larger ``n`` extends a smaller one.

Each sample is cached on its own (``DiskCache`` namespace ``potential_flow`` or
``darcy2d``) under the ``content_hash`` of every parameter that determines it: the
solver version, the body parameters (or seed), the free-stream velocity and the
resolution. A second build with the same parameters therefore loads every sample
from disk, and a change of any parameter recomputes only what it affects.

gmsh is a process-wide singleton, so parallelism uses worker *processes* (spawned,
not forked: a fork would inherit the parent's torch/OpenMP thread state). As with any
spawned pool, a script that builds with ``workers > 1`` must do so under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

import numpy as np

from ..cache import DiskCache, content_hash
from ..sample import Sample
from .darcy2d import SOLVER_VERSION as DARCY_VERSION
from .darcy2d import darcy2d
from .potential_flow import DEFAULT_RESOLUTION, _check_resolution, potential_flow
from .potential_flow import SOLVER_VERSION as FLOW_VERSION
from .bodies import BODY_KINDS, Body, random_body

__all__ = ["flow_bodies", "build_flow_dataset", "build_darcy_dataset", "QUICK_FLOW"]

#: The "quick" demo dataset: small enough to generate in a couple of minutes on 2 cores.
QUICK_FLOW = {"n": 32, "kind": "ahmed", "resolution": {"h_body": 0.06}}


def flow_bodies(n: int, kind: str = "ahmed", seed: int = 0) -> list[Body]:
    """The ``n`` bodies of a dataset: body ``i`` is drawn from ``default_rng([seed, i])``.

    ``kind`` is one of ``BODY_KINDS`` or "mixed" (the family is drawn too).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"flow_bodies: n must be a positive int, got {n!r}")
    if kind not in BODY_KINDS + ("mixed",):
        raise ValueError(f"flow_bodies: kind must be one of {BODY_KINDS + ('mixed',)}, got {kind!r}")
    out = []
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        k = BODY_KINDS[int(rng.integers(len(BODY_KINDS)))] if kind == "mixed" else kind
        out.append(random_body(k, rng))
    return out


def _as_cache(cache: Any) -> DiskCache | None:
    if cache is None or cache is False:
        return None
    if isinstance(cache, DiskCache):
        return cache
    if cache is True:
        return DiskCache()
    return DiskCache(cache)


# Worker processes run single-threaded BLAS/OpenMP: two processes with two BLAS threads
# each on two cores made scipy's CG spend most of its time waiting in threaded dot products.
_SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables (inherited by spawned workers), restoring them afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_init() -> None:
    # Each worker is one single-threaded solver; the pool provides the parallelism.
    import torch

    torch.set_num_threads(1)


def _run_jobs(fn: Callable, jobs: Sequence[tuple], keys: Sequence[str], namespace: str, cache: DiskCache | None,
              workers: int | None, progress: bool, desc: str) -> list[Sample]:
    """``fn(*job)`` for every job, from the cache where possible, the rest in a process pool."""
    from tqdm.auto import tqdm

    n = len(jobs)
    todo = [i for i in range(n) if cache is None or not cache.enabled or not cache.path(namespace, keys[i]).exists()]
    workers = min(len(todo), os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"{desc}: workers must be >= 0, got {workers!r}")
    computed: dict[int, Sample] = {}
    with tqdm(total=n, desc=desc, disable=not progress, unit="sample") as bar:
        bar.update(n - len(todo))
        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                computed[i] = fn(*jobs[i])
                bar.update(1)
        else:
            with _environment(_SINGLE_THREAD_ENV), ProcessPoolExecutor(
                workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
            ) as pool:
                futures = {pool.submit(fn, *jobs[i]): i for i in todo}
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        computed[i] = fut.result()
                    except Exception as e:  # name the failing sample; the worker's traceback is lost
                        raise RuntimeError(f"{desc}: sample {i} {jobs[i][0]!r} failed: {e}") from e
                    bar.update(1)
    out = []
    for i in range(n):
        if cache is None:
            out.append(computed[i])
        else:
            # A hit loads from disk; a miss stores the freshly computed sample (computing it
            # here only if a cache entry vanished or was corrupt after the check above).
            out.append(cache.get_or_compute(namespace, keys[i], lambda i=i: computed.pop(i, None) or fn(*jobs[i])))
    return out


def build_flow_dataset(
    n: int = QUICK_FLOW["n"],
    kind: str = QUICK_FLOW["kind"],
    seed: int = 0,
    *,
    velocity: Sequence[float] = (1.0, 0.0, 0.0),
    resolution: dict | None = None,
    workers: int | None = None,
    cache: DiskCache | str | os.PathLike | bool | None = True,
    progress: bool = True,
) -> list[Sample]:
    """``n`` random bodies with their surface Cp from :func:`potential_flow`.

    Args:
        n: number of shapes; kind: a body family ("ellipsoid", "ahmed", "car") or "mixed".
        seed: dataset seed (shape i comes from ``default_rng([seed, i])``).
        velocity: free-stream velocity (3,).
        resolution: overrides of ``DEFAULT_RESOLUTION`` (keys h_body, h_box, box, grading; body radii).
            Default: ``QUICK_FLOW["resolution"]`` (h_body 0.06).
        workers: worker processes (default: one per CPU; 0 or 1: in this process).
        cache: a DiskCache, a cache directory, True (the default directory) or False/None (no caching).
        progress: show a tqdm progress bar.
    Returns:
        A list of ``n`` Samples as returned by :func:`potential_flow` (``metadata["body"]`` holds the shape).
    """
    res = dict(DEFAULT_RESOLUTION)
    res.update(QUICK_FLOW["resolution"] if resolution is None else resolution)
    unknown = set(res) - set(DEFAULT_RESOLUTION)
    if unknown:
        raise ValueError(f"build_flow_dataset: unknown resolution keys {sorted(unknown)}")
    _check_resolution(**res)
    U = [float(v) for v in velocity]
    bodies = flow_bodies(n, kind, seed)
    jobs = [(b, U, res) for b in bodies]
    keys = [content_hash(FLOW_VERSION, b.params(), U, res) for b in bodies]
    return _run_jobs(_flow_job, jobs, keys, "potential_flow", _as_cache(cache), workers, progress,
                     f"potential flow ({kind})")


def _flow_job(body: Body, velocity: list, res: dict) -> Sample:
    return potential_flow(body, velocity, **res)


def build_darcy_dataset(
    n: int = 64,
    seed: int = 0,
    *,
    h: float = 0.03,
    n_holes: tuple[int, int] = (1, 4),
    order: int = 1,
    workers: int | None = None,
    cache: DiskCache | str | os.PathLike | bool | None = True,
    progress: bool = True,
) -> list[Sample]:
    """``n`` random 2D Darcy samples (see :func:`darcy2d`); sample i uses seed ``(seed, i)``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"build_darcy_dataset: n must be a positive int, got {n!r}")
    # One integer seed per sample, derived from (seed, i) like the flow bodies.
    seeds = [int(np.random.default_rng([int(seed), i]).integers(2**62)) for i in range(n)]
    jobs = [(s, h, tuple(n_holes), order) for s in seeds]
    keys = [content_hash(DARCY_VERSION, s, float(h), list(n_holes), int(order)) for s in seeds]
    return _run_jobs(_darcy_job, jobs, keys, "darcy2d", _as_cache(cache), workers, progress, "darcy 2d")


def _darcy_job(seed: int, h: float, n_holes: tuple, order: int) -> Sample:
    return darcy2d(seed, h=h, n_holes=n_holes, order=order)
