"""Reading a declared file's `source`: a file inside the fleet folder, and nothing a link points at outside it.

The model already refuses an absolute `source` or one with `..`; a symbolic link in the fleet folder
(`files/sni/tls.pem -> ~/.ssh/id_ed25519`, which a commit can carry) would still lead the read out of it,
and the operator's key would be shown in the plan's diff, printed by `render` and written to the node.
A link that stays inside the fleet folder (a file shared by two services) is followed.  The file is
opened without blocking (a FIFO does not hang validate or plan) and must be a regular file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SourceUnusable(Exception):
    """Why a `source` cannot be used: `reason` names the source (never its content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_source_file(root: Path, source: str, cap: int) -> bytes:
    """The bytes of `root/source`; SourceUnusable when it leaves `root` through a link, is missing, is not a
    regular file, cannot be read, or holds more than `cap` bytes."""
    path = root / source
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise SourceUnusable(
            f"{source} is a link to {real}, outside the fleet folder: a source is a file of the fleet folder"
        )
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise SourceUnusable(f"{source} does not exist") from None
    except OSError as exc:
        raise SourceUnusable(f"cannot read {source}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceUnusable(f"{source} is not a file in the fleet folder")
        chunks, size = [], 0
        while size <= cap and (chunk := os.read(fd, min(cap + 1 - size, 1 << 16))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SourceUnusable(f"cannot read {source}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > cap:
        raise SourceUnusable(f"{source} is larger than {cap} bytes")
    return b"".join(chunks)
