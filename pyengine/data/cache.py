"""A disk cache keyed by content hash, for samples, datasets and precomputed graphs.

Keys are SHA-256 digests of the *content* that determines a result (point
coordinates, radii, solver settings, seeds, ...), so a cache entry is reused
exactly when its inputs are identical and never when they differ. Entries are
written atomically (temporary file, then rename), so an interrupted write
never leaves a truncated entry behind for a later run to load.

Entries hold plain data only and are read with ``torch.load(weights_only=True)``:
a value is stored as tensors, numbers, strings, bytes, None, lists, tuples and
dicts; numpy arrays and scalars and the allow-listed dataclasses
(:data:`CACHEABLE_TYPES`: ``Sample``, ``RegionalMesh``) are encoded into such
containers on ``put`` and rebuilt through their constructors on load. A cache
file that pickles anything else (a planted ``__reduce__`` payload) is refused
before any of it runs: a warning names the file and the entry is recomputed and
overwritten, like a corrupt one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from .._atomic import atomic_torch_save, clean_stale_temp_files
from .._safe_load import RefusedFileError, load_plain

__all__ = ["CACHEABLE_TYPES", "DiskCache", "content_hash", "default_cache_dir"]

#: Dataclasses a cache entry may hold, by ``module:qualname``; nothing else is ever rebuilt.
CACHEABLE_TYPES = frozenset({"pyengine.data.sample:Sample", "pyengine.geometry.latent:RegionalMesh"})

_FORMAT = 1
_TAG = "__pyengine_cache__"  # first item of the tuples that encode non-plain values

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


def _encode(obj: Any) -> Any:
    """``obj`` as tensors and plain containers (what ``torch.load(weights_only=True)`` rebuilds)."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("DiskCache: cannot store a numpy array of Python objects")
        return (_TAG, "ndarray", torch.from_numpy(np.array(obj, copy=True)))
    if isinstance(obj, np.generic):
        return (_TAG, "npscalar", obj.dtype.str, obj.item())
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_encode(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = f"{type(obj).__module__}:{type(obj).__qualname__}"
        if name in CACHEABLE_TYPES:
            values = {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
            return (_TAG, "dataclass", name, values)
    raise TypeError(f"DiskCache: cannot store a value of type {type(obj).__name__} (tensors, numbers, strings, "
                    f"bytes, None, lists, tuples, dicts, numpy arrays and {sorted(CACHEABLE_TYPES)} can be stored)")


def _decode(obj: Any) -> Any:
    """The inverse of :func:`_encode`; dataclasses come back through their constructors (validated)."""
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, tuple):
        if len(obj) >= 2 and obj[0] == _TAG:
            kind = obj[1]
            if kind == "ndarray":
                return obj[2].numpy()
            if kind == "npscalar":
                return np.dtype(obj[2]).type(obj[3])
            if kind == "dataclass" and obj[2] in CACHEABLE_TYPES:
                module, qualname = obj[2].split(":")
                cls = getattr(importlib.import_module(module), qualname)
                return cls(**{k: _decode(v) for k, v in obj[3].items()})
            raise ValueError(f"unknown encoded value {kind!r}")
        return tuple(_decode(v) for v in obj)
    return obj


class DiskCache:
    """Results stored under ``root/<namespace>/<key>.pt`` with ``torch.save``, as plain data.

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
        self._cleaned: set[str] = set()  # namespaces whose stale temporary files were removed

    def path(self, namespace: str, key: str) -> Path:
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"DiskCache: bad namespace {namespace!r}")
        return self.root / namespace / f"{key}.pt"

    def get_or_compute(self, namespace: str, key: str, compute: Callable[[], T]) -> T:
        """The stored value for ``(namespace, key)``, computing and storing it on a miss.

        A corrupt entry (e.g. from a disk that filled up) counts as a miss and is rewritten. An
        entry that pickles anything but plain data is refused unexecuted (a ``UserWarning`` names
        it, unless it only pickles pyengine classes, as entries of older versions did), then
        recomputed and overwritten the same way.
        """
        if not self.enabled:
            self.misses += 1
            return compute()
        p = self.path(namespace, key)
        if namespace not in self._cleaned:  # temporary files of writers killed mid-write
            clean_stale_temp_files(p.parent)
            self._cleaned.add(namespace)
        if p.exists():
            try:
                value = self.load(p)
                self.hits += 1
                return value
            except RefusedFileError as e:
                # entries written before caches held plain data pickle pyengine's own classes: stale, not hostile
                if not e.global_name.startswith("pyengine."):
                    warnings.warn(f"{e}; recomputing it", stacklevel=2)
            except ValueError:  # truncated or garbage entry: recompute below and overwrite it
                pass
        self.misses += 1
        value = compute()
        self.put(namespace, key, value)
        return value

    def put(self, namespace: str, key: str, value: Any) -> Path:
        """Store ``value`` atomically; returns its path."""
        p = self.path(namespace, key)
        payload = {"pyengine_cache": _FORMAT, "value": _encode(value)}
        atomic_torch_save(payload, p)
        return p

    @staticmethod
    def load(path: str | os.PathLike) -> Any:
        """The value stored in one entry file, read with ``torch.load(weights_only=True)``.

        Raises :class:`~pyengine._safe_load.RefusedFileError` (a ``ValueError``) for a file that
        pickles anything but plain data, and ``ValueError`` for an unreadable or foreign file.
        """
        payload = load_plain(path, f"cache entry {path}", "pyengine cache entry")
        if not isinstance(payload, dict) or payload.get("pyengine_cache") != _FORMAT or "value" not in payload:
            raise ValueError(f"cache entry {path} is not a pyengine cache entry (format {_FORMAT})")
        try:
            return _decode(payload["value"])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ImportError) as e:
            raise ValueError(f"cache entry {path} holds an invalid value ({e})") from None

    def clear(self, namespace: str | None = None) -> None:
        """Delete every entry (of one namespace, or all)."""
        dirs = [self.root / namespace] if namespace else [d for d in self.root.glob("*") if d.is_dir()]
        for d in dirs:
            for f in d.glob("*.pt"):
                f.unlink()
