"""Atomic file writes shared by checkpoints, the disk cache, logs and mesh export.

The content goes to a temporary file in the target's directory, which is then
renamed over the target (``os.replace`` is atomic on POSIX), so a crash or an
interrupt mid-write never leaves a truncated file behind. The temporary file is
created private (``mkstemp``); the final file gets the usual permissions
(``0o666`` minus the umask) like any file ``open(path, "w")`` would create.

A process killed mid-write (SIGKILL, power cut) cannot remove its temporary file.
Temporary names therefore carry the writer's process id
(``.<target>.pyengine-tmp-<pid>-<random><suffix>``), and the next write to the same
target, a new :class:`~pyengine.pipeline.Trainer` on its output directory and a
:class:`~pyengine.data.DiskCache` on each namespace it touches remove the temporary
files of writers that are no longer running (:func:`clean_stale_temp_files`).
Liveness is judged on this host: directories shared by writers on several hosts
keep such files for :data:`STALE_AFTER_S` seconds before they count as stale.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["STALE_AFTER_S", "atomic_path", "atomic_torch_save", "atomic_write_text", "clean_stale_temp_files"]

_MARK = ".pyengine-tmp-"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.pyengine-tmp-(?P<pid>\d+)-")

#: A temporary file this old (seconds since its last write) is stale even if a process with its pid runs.
STALE_AFTER_S = 6 * 3600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def clean_stale_temp_files(directory: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Remove the temporary files that killed writers left in ``directory``; returns what was removed.

    Only files named by :func:`atomic_path` are considered (``target``: only those of that
    file name). A file is stale when its writer's process no longer runs, or when it has
    not been written to for :data:`STALE_AFTER_S` seconds. Files that vanish meanwhile or
    cannot be removed are skipped silently: cleaning never fails a run.
    """
    d = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or (target is not None and m.group("target") != target):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if old or not _pid_alive(int(m.group("pid"))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on normal exit it replaces ``path``.

    On an exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` keeps its previous content. ``suffix`` matters for writers that pick the
    format from the extension. Stale temporary files of earlier, killed writes to
    ``path`` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{_MARK}{os.getpid()}-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename in (None, tmp) and e.errno is not None:  # name the file asked for, not our temp file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_bytes(path: str, data) -> None:
    """Write ``data`` (bytes-like) to ``path``; the one place atomic writes touch the disk."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        if e.filename is None and e.errno is not None:  # write()/close() errors carry no file name
            raise OSError(e.errno, e.strerror, path) from e
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`); returns the path."""
    with atomic_path(path, suffix=Path(path).suffix or ".tmp") as tmp:
        _write_bytes(tmp, text.encode())
    return Path(path)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically, with disk errors as ``OSError`` naming ``path``.

    The archive is serialised in memory first and written with one ordinary write: torch's
    own file writer reports a full disk as ``RuntimeError("... unexpected pos ...")``, while
    this raises ``OSError(ENOSPC, "No space left on device", path)``, and the previous
    content of ``path`` stays intact either way.
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, suffix=Path(path).suffix or ".tmp") as tmp:
        _write_bytes(tmp, buf.getbuffer())
    return Path(path)
