"""A disk cache keyed by content hash, for samples, datasets and precomputed graphs.

Keys are SHA-256 digests of the *content* that determines a result (point
coordinates, radii, solver settings, seeds, ...), so a cache entry is reused
exactly when its inputs are identical and never when they differ. Entries are
written atomically (temporary file, then rename), so an interrupted write
never leaves a truncated entry behind for a later run to load.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from .._atomic import atomic_path

__all__ = ["DiskCache", "content_hash", "default_cache_dir"]

T = TypeVar("T")


def default_cache_dir() -> Path:
    """``$PYENGINE_CACHE`` if set, else ``$XDG_CACHE_HOME/pyengine`` (``~/.cache/pyengine``)."""
    env = os.environ.get("PYENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyengine"


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    # Every value is prefixed by a type tag and its shape/length, so that
    # different structures cannot produce the same byte stream.
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().contiguous().numpy() if obj.dtype != torch.bfloat16 else obj.float().numpy()
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"nd:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)};".encode())
        for k in sorted(obj, key=str):
            _feed(h, str(k))
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}:{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, (str, bytes)):
        b = obj.encode() if isinstance(obj, str) else obj
        h.update(f"{type(obj).__name__}:{len(b)};".encode())
        h.update(b)
    elif obj is None or isinstance(obj, (bool, int, float, np.generic)):
        h.update(f"s:{json.dumps(obj.item() if isinstance(obj, np.generic) else obj)};".encode())
    elif isinstance(obj, (os.PathLike,)):
        _feed(h, os.fspath(obj))
    else:
        raise TypeError(f"content_hash: cannot hash a value of type {type(obj).__name__}")


def content_hash(*parts: Any) -> str:
    """SHA-256 hex digest of tensors, arrays, numbers, strings and nested dicts/lists/tuples."""
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()


class DiskCache:
    """Results stored under ``root/<namespace>/<key>.pt`` with ``torch.save``.

    Args:
        root: cache directory (created on demand); ``default_cache_dir()`` when None.
        enabled: when False, every lookup computes and nothing is stored.

    ``hits`` and ``misses`` count lookups, so callers and tests can tell
    whether work was reused.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def path(self, namespace: str, key: str) -> Path:
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"DiskCache: bad namespace {namespace!r}")
        return self.root / namespace / f"{key}.pt"

    def get_or_compute(self, namespace: str, key: str, compute: Callable[[], T]) -> T:
        """The stored value for ``(namespace, key)``, computing and storing it on a miss.

        A corrupt entry (e.g. from a disk that filled up) counts as a miss and is rewritten.
        """
        if not self.enabled:
            self.misses += 1
            return compute()
        p = self.path(namespace, key)
        if p.exists():
            try:
                value = torch.load(p, map_location="cpu", weights_only=False)
                self.hits += 1
                return value
            except Exception:  # unreadable entry: recompute below and overwrite it
                pass
        self.misses += 1
        value = compute()
        self.put(namespace, key, value)
        return value

    def put(self, namespace: str, key: str, value: Any) -> Path:
        """Store ``value`` atomically; returns its path."""
        p = self.path(namespace, key)
        with atomic_path(p, suffix=".pt") as tmp:
            torch.save(value, tmp)
        return p

    def clear(self, namespace: str | None = None) -> None:
        """Delete every entry (of one namespace, or all)."""
        dirs = [self.root / namespace] if namespace else [d for d in self.root.glob("*") if d.is_dir()]
        for d in dirs:
            for f in d.glob("*.pt"):
                f.unlink()
