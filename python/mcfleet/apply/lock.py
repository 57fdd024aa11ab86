"""The fleet lock: two applies on one fleet at once would race on every node.

An exclusive, non-blocking `flock` on `<fleet>/.mcfleet/apply.lock`.  The kernel
drops the lock when the holder dies (even by SIGKILL), so a crashed apply never
leaves the fleet locked; the file's content (pid, user, start time, argv) only
serves the error message of the apply that is refused.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcfleet.errors import Refused
from mcfleet.util.statedir import state_dir


def lock_path(fleet_root: Path) -> Path:
    return fleet_root / ".mcfleet" / "apply.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid', '?')} ({info.get('who', '?')}, started {started}: {info.get('command', '?')})"


@contextmanager
def fleet_lock(fleet_root: Path, command: str) -> Iterator[None]:
    """Hold the fleet lock for the duration of the block, or raise Refused at once."""
    path = state_dir(fleet_root) / lock_path(fleet_root).name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"another apply holds the fleet lock: {_holder(path)}",
                location=str(path),
                hint="wait for it to finish; the lock is released automatically when that process ends",
            ) from None
        info = {
            "pid": os.getpid(),
            "who": f"{getpass.getuser()}@{socket.gethostname()}",
            "started": time.time(),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
