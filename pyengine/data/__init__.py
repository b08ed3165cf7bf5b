"""Samples, batches, normalisation, caching and physics datasets."""

from .cache import DiskCache, content_hash, default_cache_dir
from .sample import Sample

__all__ = ["DiskCache", "Sample", "content_hash", "default_cache_dir"]

# batching and normalisation (geometry/data issue 6)
from .batch import Batch  # noqa: E402
from .normalize import Normalizer  # noqa: E402

__all__ += ["Batch", "Normalizer"]
