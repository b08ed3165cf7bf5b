"""Reading ``torch.save`` files without ever running code from them.

Every file pyengine reads back (checkpoints, disk-cache entries) holds only
tensors and plain containers, and is read with ``torch.load(weights_only=True)``:
its unpickler builds tensors, dicts, lists, tuples, strings, numbers, booleans
and None, and refuses any other global (a class, or a callable such as
``os.system`` that a ``__reduce__`` payload would invoke) before anything is
executed. :func:`load_plain` turns that refusal, and any other unreadable file,
into a one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

__all__ = ["RefusedFileError", "load_plain"]


class RefusedFileError(ValueError):
    """A file was refused because loading it would have built objects other than plain data.

    ``global_name`` is the refused global (e.g. ``"posix.system"``).
    """

    def __init__(self, message: str, global_name: str) -> None:
        super().__init__(message)
        self.global_name = global_name


def _first_line(e: BaseException) -> str:
    """The first sentence of an error message (torch's are paragraphs)."""
    return (str(e).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")


def _refused_global(error: BaseException) -> str | None:
    """The global the weights-only unpickler refused to import ("GLOBAL posix.system ..."), if that was why."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else None


def load_plain(path: str | os.PathLike, what: str, kind: str = "torch.save file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    Args:
        path: the file.
        what: how messages name it (e.g. ``"checkpoint runs/x/model.pt"``).
        kind: what the file should have been, for the "not a readable ..." message.

    Raises:
        RefusedFileError: the file pickles a global outside the weights-only allow-list
            (nothing of it was executed).
        ValueError: the file is not a readable ``torch.save`` archive (truncated, garbage).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        name = _refused_global(e)
        if name is not None:
            raise RefusedFileError(f"{what} was refused: it holds a pickled object of type {name}; pyengine loads "
                                   f"only tensors and plain containers and never runs code from a file "
                                   f"(see SECURITY.md)", name) from None
        # any other opcode the weights-only unpickler rejects: bytes that are no torch.save output
        raise ValueError(f"{what} is not a readable {kind} (not a torch.save archive)") from None
    except Exception as e:  # zip/pickle errors are unreadable to users; name the file instead
        raise ValueError(f"{what} is not a readable {kind} ({type(e).__name__}: {_first_line(e)})") from None
