"""`mcfleet plan` without typer: the same parameters as typer's, the same output, typer for every other form.

cli/plan_fast.py parses the plain forms itself; each form it takes must give run_plan exactly what
typer gives it (and the same global state), and each form it does not take must be left to typer
(which then prints its own usage errors).  The output of both paths is compared on a real fleet.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from mcfleet.cli import commands_plan
from mcfleet.cli.echo import echo
from mcfleet.cli.plan_fast import parse
from mcfleet.cli.registry import hoist_globals
from mcfleet.cli.state import STATE
from tests.unit.unreachable import init_unreachable_fleet

REPO = Path(__file__).resolve().parents[2]

TAKEN = [
    ["plan"],
    ["plan", "--json"],
    ["-C", "/srv/fleet", "plan", "--json", "--skip", "agent"],
    ["plan", "--on", "a", "--on=b,c", "--skip=agent", "--skip", "dns,cert"],
    ["--debug", "--no-color", "plan", "-o", "out.json"],
    ["--fleet=/f", "plan", "--out=p.json", "--values", "--detailed-exitcode", "--connect-timeout", "2.5"],
    ["plan", "--connect-timeout=3", "--on", "@edge", "--on", "!rift"],
    ["--fleet", "/y", "plan", "--on", "name=x"],
    ["plan", "--debug", "-C", "rel/dir", "--json"],  # globals after the command: main hoists them first
    ["plan", "--values", "--out", "x y.json", "--connect-timeout", "007"],
]

LEFT_TO_TYPER = [
    ["plan", "--help"],
    ["plan", "-h"],
    ["plan", "--bogus"],
    ["plan", "--json", "--json"],
    ["plan", "-o"],
    ["plan", "--on"],
    ["plan", "--on", "-x"],
    ["plan", "--on="],
    ["plan", "-ofile.json"],
    ["plan", "-o", "a.json", "-o", "b.json"],
    ["plan", "--connect-timeout", "1e3"],
    ["plan", "--connect-timeout", "abc"],
    ["plan", "--connect-timeout", " 5"],
    ["plan", "--connect-timeout", "0"],
    ["plan", "--connect-timeout=0.000"],
    ["plan", "--connect-timeout", "-1"],
    ["plan", "--connect-timeout", "1", "--connect-timeout", "2"],
    ["plan", "somedir"],
    ["plan", "--", "x"],
    ["-C", "", "plan"],
    ["--fleet=", "plan"],
    ["plan", "--json=1"],
    ["validate"],
    ["status", "--json"],
    ["--version", "plan"],
]


def typer_parse(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(run_plan's arguments, (debug, no_color, fleet)) as typer gives them."""
    from mcfleet.cli.app import app

    seen: list[tuple[Any, ...]] = []

    def record(*args: Any) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(commands_plan, "run_plan", record)
    STATE.debug, STATE.no_color, STATE.fleet = False, False, None
    result = app(args=list(argv), prog_name="mcfleet", standalone_mode=False)
    assert result in (0, None) and len(seen) == 1, (argv, result)
    return seen[0], (STATE.debug, STATE.no_color, STATE.fleet)


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
@pytest.mark.parametrize("env_fleet", [None, "/from/env"])
def test_each_form_taken_gives_what_typer_gives(argv: list[str], env_fleet: str | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if env_fleet is None:
        monkeypatch.delenv("MCFLEET_FLEET", raising=False)
    else:
        monkeypatch.setenv("MCFLEET_FLEET", env_fleet)
    hoisted = hoist_globals(argv)
    parsed = parse(hoisted)
    assert parsed is not None, argv
    (debug, no_color, fleet), args = parsed
    assert (tuple(args), (debug, no_color, fleet)) == typer_parse(hoisted, monkeypatch)


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=" ".join)
def test_other_forms_are_left_to_typer(argv: list[str]) -> None:
    assert parse(hoist_globals(argv)) is None


def test_a_usage_error_is_typers_own(capsys: pytest.CaptureFixture[str]) -> None:
    from mcfleet.cli.main import main

    assert main(["plan", "--bogus"]) == 2
    assert "No such option: --bogus" in capsys.readouterr().err


class _Terminal(io.TextIOWrapper):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("nl", [True, False])
@pytest.mark.parametrize("text", ["plain", "", "\x1b[32m+ create\x1b[0m x\n", "a\x1b[?25lb\x1b]0;t\x07"])
def test_echo_writes_what_typer_echo_writes(text: str, nl: bool, terminal: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    written = []
    for write in (echo, typer.echo):
        raw = io.BytesIO()
        stream = (_Terminal if terminal else io.TextIOWrapper)(raw, encoding="utf-8", errors="strict")
        monkeypatch.setattr(sys, "stdout", stream)
        write(text, nl=nl)
        stream.flush()
        written.append(raw.getvalue())
    assert written[0] == written[1]


# --- the same plan through both paths, on a real fleet (a host nothing listens for) ---


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    return init_unreachable_fleet(tmp_path / "fleet")


def mcfleet(*argv: str) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr without the import lines, modules imported) of the console script."""
    env = {k: v for k, v in os.environ.items() if k != "MCFLEET_FLEET"}
    cmd = [sys.executable, "-X", "importtime", "-m", "mcfleet", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    imported = {ln.rsplit("|", 1)[1].strip() for ln in done.stderr.splitlines() if ln.startswith("import time:")}
    err = "\n".join(ln for ln in done.stderr.splitlines() if not ln.startswith("import time:"))
    return done.returncode, done.stdout, err, imported


def _without_dates(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if '"created_at"' not in ln)


@pytest.mark.parametrize("extra", [["--json"], ["--values", "--detailed-exitcode"]])
def test_plan_without_typer_prints_what_typer_prints(fleet: Path, extra: list[str]) -> None:
    fast = mcfleet("-C", str(fleet), "plan", *extra)
    slow = mcfleet("-C", str(fleet), "plan", *extra, extra[0])  # a repeated flag: typer's form, same meaning
    assert "typer" not in fast[3] and "typer" in slow[3]
    lazy = ("mcfleet.providers", "mcfleet.agent.spec", "mcfleet.observe.dns", "mcfleet.observe.routes")
    assert sorted(m for m in fast[3] if m.startswith(lazy)) == []  # neither providers nor services
    assert "node1" in fast[1] and fast[0] == 1  # unreachable: listed, exit 1
    assert (fast[0], _without_dates(fast[1]), fast[2]) == (slow[0], _without_dates(slow[1]), slow[2])


def test_an_invalid_host_file_is_reported_the_same_without_typer(fleet: Path) -> None:
    host_file = fleet / "hosts" / "node1" / "host.json"
    host_file.write_text(host_file.read_text().replace('"addresses"', '"adresses"', 1))
    fast = mcfleet("-C", str(fleet), "plan", "--json")
    slow = mcfleet("-C", str(fleet), "plan", "--json", "--json")
    assert "typer" not in fast[3]
    assert fast[0] == 2 and "invalid fleet" in fast[2] and fast[1] == ""
    assert fast[:3] == slow[:3]
    detailed = mcfleet("-C", str(fleet), "plan", "--detailed-exitcode")
    assert detailed[0] == 1 and "invalid fleet" in detailed[2]  # --detailed-exitcode: every error is 1


def test_plan_of_a_missing_folder_is_reported_the_same_without_typer(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fast = mcfleet("-C", str(empty), "plan")
    slow = mcfleet("-C", str(empty), "plan", "--values", "--values")
    assert "typer" not in fast[3] and fast[0] == 2 and fast[:3] == slow[:3]
    shutil.rmtree(empty)
