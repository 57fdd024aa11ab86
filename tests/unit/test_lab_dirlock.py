"""The lab directory's lock: one `lab up`/`down` at a time, with a short wait for a lock on its way out."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from mcfleet.errors import LabError
from mcfleet.lab.state import DirLock


def _hold(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a separate open file: flock conflicts with it even in this process
    return fd


def test_a_lock_released_within_the_wait_is_taken(tmp_path: Path) -> None:
    lock = tmp_path / ".lab" / "lock"
    held = _hold(lock)
    releaser = threading.Timer(0.3, os.close, args=(held,))  # like a killed up's forked helper reaching exec
    releaser.start()
    try:
        with DirLock(lock, wait=10) as taken:
            assert taken.fd is not None
            assert lock.read_text() == f"{os.getpid()}\n"
    finally:
        releaser.join()


def test_a_lock_held_past_the_wait_is_refused_with_a_hint(tmp_path: Path) -> None:
    lock = tmp_path / ".lab" / "lock"
    held = _hold(lock)
    try:
        with pytest.raises(LabError) as err, DirLock(lock, wait=0.2):
            pass
    finally:
        os.close(held)
    assert "another `mcfleet lab` command is working on this directory" in str(err.value)
    assert str(lock) in (err.value.hint or "")
    with DirLock(lock, wait=0):  # free again once the holder is gone
        pass
