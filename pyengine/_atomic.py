"""Atomic file writes shared by checkpoints, the disk cache and mesh export.

The content goes to a temporary file in the target's directory, which is then
renamed over the target (``os.replace`` is atomic on POSIX), so a crash or an
interrupt mid-write never leaves a truncated file behind. The temporary file is
created private (``mkstemp``); the final file gets the usual permissions
(``0o666`` minus the umask) like any file ``open(path, "w")`` would create.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on normal exit it replaces ``path``.

    On an exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` keeps its previous content. ``suffix`` matters for writers that pick the
    format from the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
