"""Shared test helpers.  Fixture modules (real sshd, systemd, peers) live in tests/fixtures_*.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Fixture modules: every tests/fixtures_*.py is loaded as a plugin (lab, podman, peers...).
pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("fixtures_*.py"))


@pytest.fixture
def repo_root() -> Path:
    return REPO


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `mcfleet` in-process via main() and capture (exit code, stdout, stderr)."""
    import contextlib
    import io

    from mcfleet.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
