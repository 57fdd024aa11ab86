"""Run a command under a real pseudo-terminal (what a person at a terminal sees), answering prompts."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path


def run_in_pty(
    argv: list[str],
    *,
    answer: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[int, str]:
    """(exit code, everything written to the terminal); `answer` is typed once output has appeared."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=dict(env or os.environ))
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    typed = answer is None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
                if not typed and b"?" in b"".join(chunks):
                    os.write(master, answer.encode() + b"\n")  # type: ignore[union-attr]
                    typed = True
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")
