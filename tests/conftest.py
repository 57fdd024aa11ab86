"""Shared test helpers.  Lab fixtures (real sshd, systemd, peers) live in tests/lab_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
