"""Samples, batches, normalisation, caching and physics datasets."""

from .sample import Sample

__all__ = ["Sample"]
