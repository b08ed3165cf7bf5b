"""``FileDataset``: a user's simulation results as pyengine samples.

Usage::

    ds = FileDataset({"path": "cars/manifest.csv", "fields": ["p", "wallShearStress"],
                      "conditioning": ["u_inf"], "forces": {"shear": "wallShearStress"}})
    s = ds.sample(0)                      # a Sample in physical units
    cache = ds.preprocess("cache/cars")   # one streaming pass -> memory-mapped arrays
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


from .assemble import SampleArrays, assemble
from .config import FileDatasetConfig, file_config_from_dict
from .manifest import SampleSpec, discover

__all__ = ["FileDataset"]


class FileDataset:
    """The samples a folder, glob or manifest describes, read on demand.

    Args:
        config: a :class:`FileDatasetConfig` or a dict of its fields.
        base: directory a relative ``config.path`` is resolved against (default: the working directory).

    Attributes:
        specs: one :class:`SampleSpec` per sample, in order; ``split[i]`` is "train" or "test".
    """

    def __init__(self, config: FileDatasetConfig | dict[str, Any], base: str | Path | None = None) -> None:
        self.config = config if isinstance(config, FileDatasetConfig) else file_config_from_dict(config)
        self.specs: list[SampleSpec] = discover(self.config.path, base)
        self.split = self._splits()

    def _splits(self) -> list[str]:
        given = [s.split for s in self.specs]
        if any(g is not None for g in given):
            if any(g is None for g in given):
                missing = next(s.name for s in self.specs if s.split is None)
                raise ValueError(f"the manifest gives a split for some samples but not for {missing!r}")
            splits = list(given)
        else:
            n, t = len(self.specs), self.config.test
            n_test = int(t) if float(t) >= 1 else max(1, int(math.ceil(t * n)))
            if n_test >= n:
                raise ValueError(f"{n} samples cannot hold out {n_test} for testing and still train; "
                                 "lower 'test' or add a split column to a manifest")
            splits = ["train"] * (n - n_test) + ["test"] * n_test
        if "train" not in splits:
            raise ValueError("no training samples (every sample is in the test split)")
        return splits

    def __len__(self) -> int:
        return len(self.specs)

    def indices(self, split: str | None = None) -> list[int]:
        """Sample indices of a split ("train", "test") or all."""
        return [i for i, s in enumerate(self.split) if split is None or s == split]

    def arrays(self, i: int) -> SampleArrays:
        """Sample ``i``'s arrays in physical units (see :func:`~.assemble.assemble`)."""
        return assemble(self.specs[i], self.config)

    def sample(self, i: int):
        """Sample ``i`` as a :class:`pyengine.data.Sample` (float32, physical units).

        ``metadata`` holds the name, split, source, location, per-sample scalars and, for
        surface samples, nothing else: area vectors for forces are in :meth:`arrays`.
        """
        import torch

        from ..sample import Sample

        a = self.arrays(i)
        f32 = torch.float32
        return Sample(points=torch.as_tensor(a.points, dtype=f32),
                      features=None if a.features is None else torch.as_tensor(a.features, dtype=f32),
                      queries=None if a.queries is None else torch.as_tensor(a.queries, dtype=f32),
                      fields={k: torch.as_tensor(v, dtype=f32) for k, v in a.fields.items()},
                      cells={k: torch.as_tensor(v) for k, v in a.cells.items()}
                      if a.location == "points" and a.queries is None else {},
                      metadata={"name": a.name, "split": self.split[i], "source": a.source,
                                "location": a.location, "scalars": a.scalars})

    def samples(self, split: str | None = None) -> list:
        """Every sample of a split (all when None) in memory: for small datasets and tests."""
        return [self.sample(i) for i in self.indices(split)]

    def preprocess(self, cache_dir: str | Path, *, progress: bool = False, workers: int | None = None):
        """Read every sample once into a memory-mapped cache (reused when nothing changed).

        ``workers``: processes preprocessing samples in parallel (default: ``config.workers``).
        Returns a :class:`~.cache.FileCache`.
        """
        from .cache import build_cache

        return build_cache(self, cache_dir, progress=progress,
                           workers=self.config.workers if workers is None else workers)

    def __repr__(self) -> str:
        return (f"FileDataset({len(self)} samples: {self.split.count('train')} train, "
                f"{self.split.count('test')} test; fields {self.config.fields})")
