"""Training checkpoints written so that a crash at any instant leaves a loadable file.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then moved
over the previous one with :func:`os.replace`, which is atomic on POSIX file systems (and on
NFS and most shared volumes within one folder). A reader therefore sees either the old
checkpoint or the new one, never half of one. Nothing here imports Django.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def save_atomic(payload: Any, path: Path) -> None:
    """Write ``payload`` with :func:`torch.save` to ``path`` atomically.

    The parent folder is created if needed. A temporary file left by a writer that died
    mid-write starts with a dot and is ignored by :func:`load_latest`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(path.parent)


def load(path: Path) -> dict[str, Any] | None:
    """Read a checkpoint written by :func:`save_atomic`; None when there is none.

    Only tensors, numbers, strings and containers of them are accepted (``weights_only``), so
    a checkpoint file cannot run code when loaded.
    """
    if not path.is_file():
        return None
    loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return loaded


def load_latest(folder: Path) -> dict[str, Any] | None:
    """The newest complete checkpoint in ``folder``, or None when training has none yet."""
    return load(folder / CHECKPOINT_NAME)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a crash right after it must not undo it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
