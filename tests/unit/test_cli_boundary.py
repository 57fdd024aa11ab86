"""The CLI's one error boundary: documented exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_missing_fleet_is_invalid_input_without_traceback(tmp_path: Path) -> None:
    code, out, err = run_cli("validate", str(tmp_path))
    assert code == 2
    assert "missing-file: fleet.json" in out
    assert "Traceback" not in out + err


def test_unknown_command_is_usage_error() -> None:
    code, _out, err = run_cli("no-such-command")
    assert code == 2
    assert "No such command" in err


def test_version_exits_zero() -> None:
    code, out, _err = run_cli("--version")
    assert code == 0
    assert out.startswith("mcfleet ")
