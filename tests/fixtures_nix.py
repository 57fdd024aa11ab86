"""Fixtures for the Nix tiers (tests/nix/): the nix binaries and a flake checkout.

A flake sees only git-tracked files, so `flake_repo` copies what the flake reads
(flake.nix, flake.lock, nix/, fleet.json, hosts/, pyproject.toml, README.md) into a
fresh git repository per worker; tests that need a broken fleet copy it again with
`flake_copy` and edit the copy.  Nothing here touches the network: evaluation is
`--offline`, substituters are empty (NIX_CONFIG from mcfleet.nix.argv).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mcfleet.nix.argv import nix_env

REPO = Path(__file__).resolve().parent.parent
FLAKE_FILES = ("flake.nix", "flake.lock", "fleet.json", "pyproject.toml", "README.md")
FLAKE_DIRS = ("nix", "hosts")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=mcfleet-tests", "-c", "user.email=tests@mcfleet.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def make_flake_repo(dest: Path, source: Path = REPO) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in FLAKE_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, dest / name)
    for name in FLAKE_DIRS:
        if (source / name).is_dir():
            shutil.copytree(source / name, dest / name, dirs_exist_ok=True)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "flake under test")
    return dest


@pytest.fixture(scope="session")
def nix_bin() -> str:
    path = shutil.which("nix")
    if path is None or shutil.which("nix-instantiate") is None:
        pytest.skip("nix is not installed (T1 needs Debian's nix-bin: apt-get install nix-bin)")
    return path


@pytest.fixture(scope="session")
def flake_repo(nix_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flake_repo(tmp_path_factory.mktemp("flake"))


@pytest.fixture
def flake_copy(nix_bin: str, tmp_path: Path) -> Callable[[], Path]:
    """A fresh flake checkout in this test's tmp_path, to break on purpose."""
    return lambda: make_flake_repo(tmp_path / "flake")


def run_nix(repo: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run nix in a flake checkout with mcfleet's NIX_CONFIG (sync: tests only)."""
    return subprocess.run(list(args), cwd=repo, env=nix_env(), capture_output=True, text=True, check=check, timeout=300)
