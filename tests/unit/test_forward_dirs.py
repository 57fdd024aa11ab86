"""The socket folders of forwards (`mcfleet-fwd-<pid>-…` in the temp folder): those of an mcfleet process
that is gone are removed by the next one, and nothing else is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mcfleet.transport.ssh import FORWARD_PREFIX, sweep_forward_dirs


def _gone_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return int(done.stdout)


def _folder(base: Path, name: str, *files: str) -> Path:
    folder = base / name
    folder.mkdir(mode=0o700)
    for f in files:
        if f == "sock":
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(str(folder / f))
        else:
            (folder / f).write_text("x")
    return folder


def test_the_folders_of_processes_that_are_gone_are_removed_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = _gone_pid()
    swept = _folder(tmp_path, f"{FORWARD_PREFIX}{dead}-a1b2", "sock")
    empty = _folder(tmp_path, f"{FORWARD_PREFIX}{dead}-c3d4")
    mine = _folder(tmp_path, f"{FORWARD_PREFIX}{os.getpid()}-e5f6", "sock")  # a live process's
    other_file = _folder(tmp_path, f"{FORWARD_PREFIX}{dead}-g7h8", "sock", "notes")  # not only a socket
    unnamed = _folder(tmp_path, f"{FORWARD_PREFIX}k9m0n1p2", "sock")  # no pid in the name
    sweep_forward_dirs.__wrapped__()
    assert not swept.exists() and not empty.exists()
    assert mine.exists() and other_file.exists() and unnamed.exists()
