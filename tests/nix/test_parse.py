"""T1: every .nix file in the repository parses (nix-instantiate --parse)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mcfleet.nix.argv import parse_argv

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
NIX_FILES = sorted(
    p.relative_to(REPO).as_posix()
    for p in [REPO / "flake.nix", *REPO.glob("nix/**/*.nix"), *REPO.glob("hosts/*/*.nix"), *REPO.glob("tests/**/*.nix")]
    if p.is_file()
)


def test_the_nix_files_are_found() -> None:
    # flake.nix, nix/lib, nix/modules, nix/packages: a glob that finds nothing must fail.
    assert "flake.nix" in NIX_FILES
    assert {"nix/lib/default.nix", "nix/modules/users.nix", "nix/packages/default.nix"} <= set(NIX_FILES)


@pytest.mark.parametrize("path", NIX_FILES)
def test_nix_file_parses(nix_bin: str, path: str) -> None:
    result = subprocess.run(parse_argv(str(REPO / path)), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
