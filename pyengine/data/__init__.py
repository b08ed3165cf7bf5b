"""Samples, batches, normalisation, caching and physics datasets."""

from .batch import Batch
from .cache import DiskCache, content_hash, default_cache_dir
from .normalize import Normalizer
from .sample import Sample

__all__ = ["Batch", "DiskCache", "Normalizer", "Sample", "content_hash", "default_cache_dir"]
