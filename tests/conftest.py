"""Shared test helpers.  Fixture modules (real sshd, systemd, peers) live in tests/fixtures_*.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent

# Fixture modules: every tests/fixtures_*.py is loaded as a plugin (lab, podman, peers...).
pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("fixtures_*.py"))


@pytest.fixture
def repo_root() -> Path:
    return REPO


def load_script(relpath: str, name: str) -> ModuleType:
    """A script of this repository that is not a package (e.g. under bench/), imported as module `name`."""
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `mcfleet` in-process via main() and capture (exit code, stdout, stderr)."""
    import contextlib
    import io

    from mcfleet.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- no silent skips in CI

# The only tests that may skip on a fresh Debian 12 machine: the Nix tiers that need a nixpkgs
# checkout, which cannot be fetched there (T2: nixpkgs' lib/, T3: all of nixpkgs).
SKIP_ALLOWED = {
    "tests/nix/test_modules_t2.py": "T2 needs ",
    "tests/nix/test_nixos_t3.py": "T3 needs ",
}


def _skip_allowed(nodeid: str, reason: str) -> bool:
    path = nodeid.split("::", 1)[0]
    prefix = SKIP_ALLOWED.get(path)
    return prefix is not None and reason.startswith(prefix)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: <reason>")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _add_lab_journals(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed test that made full lab nodes reports their journals (read while they still run):
    a flake seen once in CI then says what the node was doing."""
    if "tests.integration.apply_lab" not in sys.modules:
        return
    from tests.integration.apply_lab import NODES_KEY, node_journals

    made = item.stash.get(NODES_KEY, None)
    if made:
        report.sections.extend(node_journals(made))


def _add_agent_logs(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed test that started agents reports whether each still runs and the end of its log."""
    runner = getattr(item, "funcargs", {}).get("agent_runner")
    sections = getattr(runner, "report_sections", None)
    if callable(sections):
        report.sections.extend(sections())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """With CI=true (set by .ci/run), a skip outside the Nix tiers T2/T3 is a failure: a missing
    program belongs in scripts/setup.sh, not in a skip that hides an untested feature."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        _add_lab_journals(item, report)
        _add_agent_logs(item, report)
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if _skip_allowed(item.nodeid, reason):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped, and CI allows skips only in the Nix tiers T2/T3: {reason}"
