"""Training and evaluation items from a :class:`~.cache.FileCache`, through ``torch.utils.data``.

:class:`CachedSamples` is a map-style ``Dataset``: item ``(i, epoch)`` is geometry ``i``
with a random subset of ``points_per_step`` queries and, for the geometry encoder, an
independent random subset of ``encoder_points`` surface points (both drawn from
``default_rng([seed, epoch, i])``, so an item is the same whichever worker loads it).
Coordinates are in the dataset's frame; features and targets normalised with the cache's
statistics. Only the sampled rows are read from the memory-mapped arrays.

:class:`ShardedBatchSampler` yields, per step, this rank's share of a global batch:
the same permutation and global batches as :class:`pyengine.pipeline.Trainer` uses for
in-memory samples, split ``ids[rank::world]`` as DDP requires. Unlike
``torch.utils.data.DistributedSampler``, whose global batches depend on the number of
ranks, a step here sees the same geometries on 1 rank or on 8, so a multi-rank run
reproduces the single-process one (and each rank reads only its own shard).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .cache import FileCache
from .frames import CoordinateFrame

__all__ = ["CachedSamples", "LoadedItem", "ShardedBatchSampler", "make_loader"]


@dataclass
class LoadedItem:
    """One geometry ready for a model: framed coordinates, normalised inputs and targets.

    Shapes: points (N', d), features (N', C) or None, queries (M', d), target (M', C_out);
    ``query_ids`` (M',) rows of the sample's queries (None: all, in order); ``index`` the sample.
    """

    index: int
    points: Tensor
    features: Tensor | None
    queries: Tensor
    target: Tensor | None
    query_ids: np.ndarray | None = None

    def to(self, device) -> "LoadedItem":
        mv = (lambda t: None if t is None else t.to(device, non_blocking=True))
        return LoadedItem(self.index, mv(self.points), mv(self.features), mv(self.queries), mv(self.target),
                          self.query_ids)


def eval_seed(seed: int, n_points: int) -> list[int]:
    """Seed of the encoder subsample at evaluation and prediction (same geometry, same subset)."""
    return [int(seed), 2**31 - 1, int(n_points)]


def _subset(rng: np.random.Generator, n: int, k: int | None) -> np.ndarray | None:
    if k is None or k >= n:
        return None
    return np.sort(rng.choice(n, size=k, replace=False))


class CachedSamples(Dataset):
    """Geometries of one split of a cache, as :class:`LoadedItem` s.

    Args:
        cache: the :class:`FileCache`.
        split: "train", "test" or None (all).
        points_per_step: queries per geometry per item (None: all).
        encoder_points: surface points the encoder sees (None: all).
        frame: "unit" or "dataset" (or a :class:`CoordinateFrame`).
        seed: seeds the subsets.
        workers: DataLoader worker processes a Trainer uses for this data.
    """

    def __init__(self, cache: FileCache, split: str | None = "train", *, points_per_step: int | None = None,
                 encoder_points: int | None = None, frame: str | CoordinateFrame = "unit", seed: int = 0,
                 workers: int = 0) -> None:
        self.cache = cache
        self.ids = cache.indices(split)
        if not self.ids:
            raise ValueError(f"the cache at {cache.root} has no {split!r} samples")
        self.points_per_step, self.encoder_points, self.seed = points_per_step, encoder_points, int(seed)
        self.frame = frame if isinstance(frame, CoordinateFrame) else \
            CoordinateFrame.fit(frame, cache.index.get("train_bbox"))
        self.fields = dict(cache.fields)
        self.workers = int(workers)
        self._norm = cache.normalizer()

    def __len__(self) -> int:
        return len(self.ids)

    def normalizer(self):
        """The normalisation statistics (train split) the items are scaled with."""
        return self._norm

    def set_normalizer(self, normalizer) -> None:
        """Scale items with ``normalizer`` instead of the cache's statistics."""
        self._norm = normalizer

    @property
    def subsampled(self) -> bool:
        """Whether training items are random subsets (so each step sees new coordinates)."""
        return self.points_per_step is not None or self.encoder_points is not None

    def _frame(self, j: int):
        lo, hi = self.cache.samples[j]["bbox"]
        return self.frame.center_scale(lo, hi)

    def load(self, pos: int, *, epoch: int = 0, train: bool = True, with_target: bool = True) -> LoadedItem:
        """Item ``pos`` of this split. ``train``: random subsets for ``epoch``; else every query and a
        seeded encoder subset (the same at every call)."""
        j = self.ids[pos]
        c = self.cache
        pts, feats = c.array(j, "points"), c.array(j, "features")
        # evaluation: the encoder subset depends on the geometry's size only, as in prediction
        rng = np.random.default_rng([self.seed, epoch, j] if train else eval_seed(self.seed, len(pts)))
        enc = _subset(rng, len(pts), self.encoder_points)
        qsrc = c.array(j, "queries")
        separate = qsrc is not None
        nq = len(qsrc) if separate else len(pts)
        q = _subset(rng, nq, self.points_per_step) if train else None
        center, scale = self._frame(j)
        points = torch.from_numpy(self.frame.apply(pts if enc is None else pts[enc], center, scale))
        f = None
        if feats is not None:
            f = self._norm.normalize_field("features", torch.from_numpy(np.array(feats if enc is None else feats[enc])))
        if separate or enc is not None or q is not None:
            src = qsrc if separate else pts
            queries = torch.from_numpy(self.frame.apply(src if q is None else src[q], center, scale))
        else:
            queries = points  # the same tensor, as for in-memory samples without separate queries
        target = None
        if with_target:
            t = c.array(j, "target")
            target = self._normalize_target(torch.from_numpy(np.array(t if q is None else t[q])))
        return LoadedItem(j, points, f, queries, target, q)

    def _normalize_target(self, t: Tensor) -> Tensor:
        cols, start = [], 0
        for name, w in self.fields.items():
            block = t[:, start:start + w]
            cols.append(self._norm.normalize_field(name, block[:, 0] if w == 1 else block).reshape(len(t), w))
            start += w
        return torch.cat(cols, dim=1)

    def __getitem__(self, key) -> LoadedItem:
        pos, epoch = key if isinstance(key, tuple) else (key, 0)
        return self.load(int(pos), epoch=int(epoch), train=True)


class ShardedBatchSampler(Sampler):
    """Per step, this rank's indices of a global batch, as ``(index, epoch)`` pairs (see module doc).

    Args:
        n: samples in the split; batch_size: global batch (geometries per step, all ranks).
        rank, world: this process and the number of processes.
        seed: the Trainer's seed; epoch order is ``randperm(n)`` seeded ``seed * 1_000_003 + epoch``.
    """

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must be divisible by the {world} ranks")
        self.n, self.batch_size, self.rank, self.world, self.seed = n, batch_size, rank, world, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        out = []
        for i in range(0, self.n, self.batch_size):
            ids = order[i:i + self.batch_size]
            ids = ids[: len(ids) - len(ids) % self.world]
            if ids:
                out.append(ids[self.rank::self.world])
        return out

    def __iter__(self):
        for ids in self._batches():
            yield [(i, self.epoch) for i in ids]

    def __len__(self) -> int:
        return len(self._batches())


def _as_list(items):
    return list(items)


def make_loader(data: CachedSamples, batch_size: int, *, rank: int = 0, world: int = 1, seed: int = 0,
                workers: int = 0) -> DataLoader:
    """A DataLoader of per-rank batches (lists of :class:`LoadedItem`) with ``workers`` processes;
    call ``loader.batch_sampler.set_epoch(e)`` before each epoch."""
    sampler = ShardedBatchSampler(len(data), batch_size, rank=rank, world=world, seed=seed)
    # items carry their epoch, so workers can persist across epochs (no restart per epoch)
    return DataLoader(data, batch_sampler=sampler, num_workers=workers, collate_fn=_as_list,
                      persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
