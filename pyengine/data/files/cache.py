"""Preprocess once, memory-map at train time: raw ``.npy`` arrays plus one JSON index.

:func:`build_cache` reads every sample of a :class:`~.dataset.FileDataset` once, in a
single streaming pass: read, clean, compute features, write the arrays to
``<cache>/<index>/<name>.npy`` (float32) and fold the training samples into running
per-channel moments (the normalisation statistics) and the training bounding box (the
dataset frame). Only one sample is in memory at a time. ``index.json`` is written last,
atomically: it is the commit point, so an interrupted pass leaves no half cache behind.

:class:`FileCache` opens a cache: arrays come back as read-only ``np.memmap`` views
(``np.load(mmap_mode="r", allow_pickle=False)``: nothing in a cache executes code), so
a training process touches only the rows it samples.

The index records a content key (the dataset options that shape the arrays, every file's
size and modification time): a second :func:`build_cache` with the same key reuses the
cache, and any change rebuilds it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import atomic_path
from ..cache import content_hash
from ..normalize import FEATURES, Normalizer, _Moments
from .records import DataFileError

__all__ = ["CACHE_FORMAT", "FileCache", "build_cache", "dataset_key", "worker_context"]

CACHE_FORMAT = 1
# options that do not change the arrays (how they are sampled and loaded)
_LOAD_ONLY = ("points_per_step", "encoder_points", "eval_chunk", "cache_dir", "workers", "frame", "forces")


def _stat(p: Path) -> list:
    if p.is_dir():
        return [[str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns]
                for f in sorted(p.rglob("*")) if f.is_file()]
    if not p.exists():
        raise DataFileError(f"{p}: no such file")
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def dataset_key(dataset) -> str:
    """Content key of a dataset: array-shaping options, samples, splits and file stamps."""
    opts = {k: v for k, v in dataset.config.to_dict().items() if k not in _LOAD_ONLY}
    samples = []
    for spec, split in zip(dataset.specs, dataset.split):
        files = [spec.geometry] + [p for _, p in spec.field_files] + ([spec.surface] if spec.surface else [])
        samples.append([spec.name, split, [str(f) for f in files], [_stat(Path(f)) for f in files],
                        [n for n, _ in spec.field_files], spec.scalars])
    return content_hash(CACHE_FORMAT, opts, samples)


def _save(root: Path, rel: str, array: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(array)
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, a, allow_pickle=False)
    return {"file": rel, "shape": list(a.shape), "dtype": a.dtype.str}


# what a preprocessing worker imports: loaded once by the forkserver, inherited by every worker
_PRELOAD = ("pyengine.data.files.cache", "pyengine.data.files.assemble", "vtkmodules.vtkIOXML",
            "vtkmodules.vtkIOGeometry", "vtkmodules.vtkFiltersCore", "vtkmodules.util.numpy_support")


def worker_context():
    """The multiprocessing context preprocessing workers start in.

    Linux: a forkserver whose server process imports torch, vtk and this package once
    (``set_forkserver_preload``), so each worker is a fork of it and starts in milliseconds
    instead of paying ~1.7 CPU-s of imports as a spawned interpreter does. The server is a
    fresh interpreter that only imports (it never runs an OpenMP or VTK parallel region), so
    no worker is forked from a process holding OpenMP or other threads, which plain ``fork``
    of the caller (a trainer with live OpenMP pools) would risk. A forkserver that something
    else in this program already started keeps its own preload list: the workers then import
    what they miss themselves (slower, same results).

    Elsewhere (Windows has no forkserver; on macOS forking a process that loaded system
    frameworks is unsafe, which is why Python defaults to spawn there): ``spawn``.
    """
    import multiprocessing as mp

    if sys.platform.startswith("linux") and "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(_PRELOAD))
        return ctx
    return mp.get_context("spawn")


def _keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks of up to 32 MiB in the heap for reuse (a worker's
    initializer; True when set).

    Preprocessing a sample allocates and frees dozens of 8-32 MB temporaries. By default glibc
    serves each of them with a fresh ``mmap`` and unmaps it on free, so every sample touches
    new pages again: on a 1M-point surface that is ~70k page faults, about 0.3 of 0.8 CPU-s
    (measured; more in a VM). With a fixed 32 MiB mmap threshold (glibc's maximum) and a 1 GiB
    trim threshold the second and later samples of a worker reuse the first one's pages and
    fault none. Only preprocessing workers (short-lived, their own processes) do this, never
    the caller's process; elsewhere than glibc it does nothing.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _process(dataset, i: int, root: Path) -> dict[str, Any]:
    """Read, assemble and store sample ``i``; returns its index entry, shapes and the moments of
    its stored fields and features (only one sample is in memory at a time)."""
    cfg = dataset.config
    a = dataset.arrays(i)
    # each array is converted once; the moments below use the same float32 copies
    # (np.asarray: no copy where the dtype already matches)
    f32 = (lambda x: np.asarray(x, dtype=np.float32))
    arrays = {"points": _save(root, f"{i:05d}/points.npy", f32(a.points))}
    features = None if a.features is None else f32(a.features)
    if features is not None:
        arrays["features"] = _save(root, f"{i:05d}/features.npy", features)
    if a.queries is not None:
        arrays["queries"] = _save(root, f"{i:05d}/queries.npy", f32(a.queries))
    columns = [f32(a.fields[f]).reshape(len(a.fields[f]), -1) for f in cfg.fields]
    target = np.concatenate(columns, axis=1)
    arrays["target"] = _save(root, f"{i:05d}/target.npy", target)
    if a.area is not None:
        arrays["area"] = _save(root, f"{i:05d}/area.npy", f32(a.area))
    for kind, c in (a.cells.items() if a.location == "points" and a.queries is None else ()):
        arrays[f"cells_{kind}"] = _save(root, f"{i:05d}/cells_{kind}.npy", np.asarray(c, dtype=np.int64))
    if a.point_ids is not None:
        arrays["point_ids"] = _save(root, f"{i:05d}/point_ids.npy", np.asarray(a.point_ids, dtype=np.int64))
    widths = {k: 1 if v.ndim == 1 else int(v.shape[1]) for k, v in a.fields.items()}
    moments = {}
    if dataset.split[i] == "train":  # moments of the values as stored (float32)
        for f, col in zip(cfg.fields, columns):
            moments[f] = _moments(col)
        if features is not None:
            moments[FEATURES] = _moments(features)
    lo, hi = a.points.min(axis=0), a.points.max(axis=0)
    entry = {"name": a.name, "split": dataset.split[i], "source": a.source, "location": a.location,
             "scalars": a.scalars, "n_points": int(len(a.points)), "n_queries": int(len(a.query_points)),
             "bbox": [lo.tolist(), hi.tolist()], "arrays": arrays}
    return {"entry": entry, "widths": widths, "features": 0 if a.features is None else int(a.features.shape[1]),
            "moments": moments, "points": int(len(a.points)) + (0 if a.queries is None else int(len(a.queries)))}


def _moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, mean, sum of squared deviations) per column, in float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    return len(x), mean, ((x - mean) ** 2).sum(axis=0)


def _merge(m: _Moments, part: tuple[int, np.ndarray, np.ndarray]) -> None:
    """Fold one sample's moments into ``m`` (Chan et al.'s pairwise update, as _Moments.add does)."""
    import torch

    nb, mb, m2b = part
    if nb == 0:
        return
    mb, m2b = torch.as_tensor(mb, dtype=torch.float64), torch.as_tensor(m2b, dtype=torch.float64)
    n = m.n + nb
    delta = mb - m.mean
    m.mean = m.mean + delta * (nb / n)
    m.m2 = m.m2 + m2b + delta ** 2 * (m.n * nb / n)
    m.n = n


def _process_parallel(dataset, root: Path, workers: int, results: list, bar) -> None:
    """Fill ``results`` with :func:`_process` of every sample, in ``workers`` processes.

    Starting the workers costs the forkserver's imports (~1.6 CPU-s, once per program); the
    first ``submit`` waits for them. So a thread submits the samples from the front while
    this process preprocesses samples from the back until that thread is done: the start-up
    overlaps with useful work, and then this process only collects results. Which process
    handles a sample does not change its arrays (tested), and results stay in sample order.
    """
    import threading
    from concurrent.futures import ProcessPoolExecutor

    n = len(results)
    lock = threading.Lock()
    span = {"front": 0, "back": n}  # the pool has [0, front), this process [back, n)
    futures: dict[int, Any] = {}
    failed: list[BaseException] = []
    pool = ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_keep_freed_memory)

    def submit() -> None:
        try:
            while True:
                with lock:
                    i = span["front"]
                    if i >= span["back"]:
                        return
                    span["front"] = i + 1
                futures[i] = pool.submit(_process, dataset, i, root)
        except BaseException as e:  # noqa: BLE001  (re-raised by the caller)
            failed.append(e)

    thread = threading.Thread(target=submit, name="pyengine-preprocess-submit", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            with lock:
                j = span["back"] - 1
                if j < span["front"]:
                    break
                span["back"] = j
            results[j] = _process(dataset, j, root)
            bar.update(1)
        thread.join()
        if failed:
            raise failed[0]
        for i in sorted(futures):
            results[i] = futures[i].result()
            bar.update(1)
    except BaseException:
        with lock:  # stop the submitting thread, drop what has not started, then re-raise
            span["back"] = span["front"]
        thread.join()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def build_cache(dataset, cache_dir: str | os.PathLike, *, progress: bool = False, force: bool = False,
                workers: int = 0) -> "FileCache":
    """Preprocess ``dataset`` into ``cache_dir`` (or reuse it when its key matches).

    ``workers`` > 1 preprocesses that many samples at once in worker processes started by
    :func:`worker_context` (the statistics are merged in sample order, so the result does not
    depend on it).
    Returns the opened :class:`FileCache`; ``cache.built_seconds`` and ``cache.points_per_second``
    tell how long the pass took (None when reused).
    """
    from tqdm.auto import tqdm

    root = Path(cache_dir)
    key = dataset_key(dataset)
    index_path = root / "index.json"
    if not force and index_path.is_file():
        try:
            old = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("key") == key and old.get("format") == CACHE_FORMAT:
            return FileCache(root)
    cfg = dataset.config
    t0 = time.perf_counter()
    n = len(dataset)
    results: list[dict | None] = [None] * n
    with tqdm(total=n, desc="preprocess", disable=not progress, unit="sample") as bar:
        if workers > 1 and n > 1:
            _process_parallel(dataset, root, min(workers, n), results, bar)
        else:
            for i in range(n):
                results[i] = _process(dataset, i, root)
                bar.update(1)
    moments: dict[str, _Moments] = {}
    lo = hi = None
    widths, n_features = results[0]["widths"], results[0]["features"]
    for r in results:
        e = r["entry"]
        if r["widths"] != widths or r["features"] != n_features:
            raise DataFileError(f"{e['source']}: fields {r['widths']} / {r['features']} input channels differ from "
                                f"the first sample's {widths} / {n_features}")
        for name, part in r["moments"].items():
            _merge(moments.setdefault(name, _Moments(len(part[1]))), part)
        if e["split"] == "train":
            lo = np.array(e["bbox"][0]) if lo is None else np.minimum(lo, e["bbox"][0])
            hi = np.array(e["bbox"][1]) if hi is None else np.maximum(hi, e["bbox"][1])
    entries = [r["entry"] for r in results]
    total_points = sum(r["points"] for r in results)
    norm = Normalizer()
    for name, m in moments.items():
        std = (m.m2 / m.n).sqrt()
        norm.mean[name] = m.mean
        norm.std[name] = std.where(std >= norm.eps, std.new_ones(()))
    state = norm.state_dict()
    seconds = time.perf_counter() - t0
    index = {"format": CACHE_FORMAT, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "fields": widths, "in_channels": n_features, "features": cfg.features,
             "conditioning": list(cfg.conditioning), "location": entries[0]["location"], "sample": cfg.sample,
             "stats": {"eps": state["eps"], "mean": {k: v.tolist() for k, v in state["mean"].items()},
                       "std": {k: v.tolist() for k, v in state["std"].items()}},
             "train_bbox": [lo.tolist(), hi.tolist()], "samples": entries,
             "build": {"seconds": seconds, "points": total_points, "workers": workers}}
    with atomic_path(index_path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(index, indent=1))
    cache = FileCache(root)
    cache.built_seconds = seconds
    cache.points_per_second = total_points / max(seconds, 1e-9)
    return cache


class FileCache:
    """A preprocessed dataset on disk (see the module docstring).

    Attributes:
        index: the parsed ``index.json``; fields: name -> channel count, in target-column order;
        in_channels: input feature channels; samples: the per-sample index entries.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        path = self.root / "index.json"
        if not path.is_file():
            raise DataFileError(f"{self.root}: not a pyengine file cache (no index.json)")
        try:
            self.index = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataFileError(f"{path}: unreadable cache index ({e})") from None
        if self.index.get("format") != CACHE_FORMAT:
            raise DataFileError(f"{path}: cache format {self.index.get('format')!r}, expected {CACHE_FORMAT}")
        self.fields: dict[str, int] = dict(self.index["fields"])
        self.in_channels: int = int(self.index["in_channels"])
        self.samples: list[dict] = self.index["samples"]
        self.built_seconds: float | None = None
        self.points_per_second: float | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def indices(self, split: str | None = None) -> list[int]:
        return [i for i, s in enumerate(self.samples) if split is None or s["split"] == split]

    def array(self, i: int, name: str) -> np.ndarray | None:
        """Sample ``i``'s array ``name`` (points, features, queries, target, area, cells_<type>,
        point_ids) memory-mapped read-only, or None when the sample has none."""
        meta = self.samples[i]["arrays"].get(name)
        if meta is None:
            return None
        path = (self.root / meta["file"]).resolve()
        if self.root.resolve() not in path.parents:
            raise DataFileError(f"{self.root}: cache entry {meta['file']!r} points outside the cache")
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(a.shape) != meta["shape"] or a.dtype.str != meta["dtype"]:
            raise DataFileError(f"{path}: shape {a.shape} {a.dtype.str} disagrees with the cache index; "
                                "delete the cache to rebuild it")
        return a

    def normalizer(self) -> Normalizer:
        """The training split's normalisation statistics (fields and features)."""
        return Normalizer().load_state_dict(self.index["stats"])

    @property
    def dim(self) -> int:
        """Coordinate dimension of the samples (3)."""
        return int(self.samples[0]["arrays"]["points"]["shape"][1])
