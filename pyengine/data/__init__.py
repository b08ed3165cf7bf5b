"""Samples, batches, normalisation, caching and physics datasets."""

from .cache import DiskCache, content_hash, default_cache_dir
from .sample import Sample

__all__ = ["DiskCache", "Sample", "content_hash", "default_cache_dir"]
