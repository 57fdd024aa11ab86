"""Atomic writes of the operator's files: whole or not at all, and never a device or a pipe replaced."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from mcfleet.util.files import atomic_write_text
from tests.unit.test_plan_cli import _fleet, run_cli


def test_a_file_is_replaced_whole_and_a_folder_above_it_is_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "plan.json"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\n", mode=0o600)
    assert target.read_text() == "two\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["plan.json"]  # no temporary file left


@contextlib.contextmanager
def _fifo_read(fifo: Path) -> Iterator[list[bytes]]:
    """What is written to the pipe `fifo` while in the block.  A reader is there before the write opens the
    pipe (an open for writing waits for one), and a writer of its own holds the pipe open until the block ends
    (without one, the reader would see the end at once)."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    holder = os.open(fifo, os.O_WRONLY)
    os.set_blocking(reader, True)
    got: list[bytes] = []

    def read() -> None:
        chunks = []
        while chunk := os.read(reader, 65536):
            chunks.append(chunk)
        got.append(b"".join(chunks))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        os.close(holder)
        thread.join(5)
        os.close(reader)


def test_a_pipe_or_device_is_written_to_not_replaced_by_a_file(tmp_path: Path) -> None:
    """`plan -o /dev/stdout` (or a FIFO): renaming a file over the path replaced the device itself (run as
    root, /dev/stdout, /dev/null or /dev/full became a plain file holding the plan)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with _fifo_read(fifo) as got:
        atomic_write_text(fifo, '{"plan": 1}\n')
    assert got == [b'{"plan": 1}\n']
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the pipe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_plan_out_to_a_pipe_writes_the_plan_there(tmp_path: Path) -> None:
    root = _fleet(tmp_path / "f")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with _fifo_read(fifo) as got:
        code, out, err = run_cli("plan", str(root), "--on", "beta", "--connect-timeout", "1", "-o", str(fifo))
    assert code == 1, err  # beta is unreachable: the plan says so, and is written all the same
    assert got and b'"format": 2' in got[0]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert f"written to {fifo}" in err and "apply it with" not in out
