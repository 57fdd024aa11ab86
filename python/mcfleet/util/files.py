"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`data` in `path` whole or not at all: written to a temporary file beside it, then renamed over it.
    A device or a pipe there (`-o /dev/stdout`, a FIFO) is written to as it is: a file renamed over it
    would replace the device itself (as root, /dev/stdout or /dev/null made a plain file)."""
    try:
        kind = path.stat().st_mode
    except OSError:  # not there yet (or not reachable: the write below says why)
        kind = stat.S_IFREG
    if not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
        with path.open("wb") as stream:
            stream.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def file_in_the_way(path: Path, *, itself: bool = False) -> Path | None:
    """A file standing where a folder above `path` (with `itself`, or `path` itself) would have to be."""
    folders = (path, *path.parents) if itself else path.parents
    return next((p for p in folders if p.exists() and not p.is_dir()), None)
