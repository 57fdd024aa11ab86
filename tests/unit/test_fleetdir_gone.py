"""A command run in a folder that was removed (a shell still in it) is a clear error, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def in_removed_folder(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    argv = ["sh", "-c", script, "sh", str(gone), sys.executable, "-m", "mcfleet", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("args", [["validate"], ["validate", "--json"], ["hosts"], ["-C", ".", "validate"]])
def test_a_removed_working_folder_is_a_clear_error(tmp_path: Path, args: list[str]) -> None:
    res = in_removed_folder(tmp_path, *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    assert "the current folder no longer exists" in res.stderr
    assert "cd to the fleet folder or use -C DIR" in res.stderr


def test_an_absolute_fleet_folder_still_works_from_a_removed_folder(tmp_path: Path) -> None:
    res = in_removed_folder(tmp_path, "-C", str(REPO), "validate", "--no-cache")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("ok: ")
