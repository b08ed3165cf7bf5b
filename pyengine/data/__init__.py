"""Samples, batches, normalisation, caching and physics datasets."""

from .cache import DiskCache, content_hash, default_cache_dir
from .normalize import FieldStats, Normalizer
from .sample import Sample

__all__ = ["DiskCache", "FieldStats", "Normalizer", "Sample", "content_hash", "default_cache_dir"]
