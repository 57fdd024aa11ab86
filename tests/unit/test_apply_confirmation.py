"""When `apply` asks before changing hosts: never for a saved plan (terminal or not), and as
`apply --help` states for a live plan (more than one host, the whole fleet, --yes/--all, no terminal)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from mcfleet.cli import commands_apply
from mcfleet.cli.commands_apply import confirmation
from tests.conftest import run_cli

MINIMAL = Path(__file__).resolve().parent.parent / "data" / "fleets" / "minimal"  # 3 hosts


# (saved, whole_fleet, hosts, yes, terminal) -> the decision
RULE = [
    # a saved plan is the approval: never asks, on a terminal or not, whatever it holds
    ((True, True, 3, False, True), "go"),
    ((True, True, 3, False, False), "go"),
    ((True, True, 1, False, False), "go"),
    ((True, True, 3, True, False), "go"),
    # live plan, --yes or --all: never asks
    ((False, True, 3, True, False), "go"),
    ((False, False, 3, True, True), "go"),
    # live plan of the whole fleet: asks on a terminal, refused without one (even of one host)
    ((False, True, 3, False, True), "ask"),
    ((False, True, 3, False, False), "refuse"),
    ((False, True, 1, False, False), "refuse"),
    ((False, True, 1, False, True), "go"),
    # live plan with --on: one host goes ahead; more than one asks, or is refused without a terminal
    ((False, False, 1, False, False), "go"),
    ((False, False, 1, False, True), "go"),
    ((False, False, 2, False, True), "ask"),
    ((False, False, 2, False, False), "refuse"),
]


@pytest.mark.parametrize(("given", "decision"), RULE)
def test_the_confirmation_rule(given: tuple[bool, bool, int, bool, bool], decision: str) -> None:
    saved, whole_fleet, hosts, yes, terminal = given
    assert confirmation(saved=saved, whole_fleet=whole_fleet, hosts=hosts, yes=yes, terminal=terminal) == decision


def test_apply_help_states_when_it_asks() -> None:
    code, out, _err = run_cli("apply", "--help")
    assert code == 0
    text = re.sub(r"\s+", " ", out)
    assert "applying a saved plan never asks, on a terminal or not" in text
    assert "the plan is the approval" in text
    assert "--yes and --all change nothing there" in text
    assert "Without a plan file, apply asks (y/N) before it changes more than one host" in text
    assert "the whole fleet (no --on) needs --all or --yes or a terminal, even with one host" in text
    assert "With no terminal on stdin, a question is a refusal instead (exit 1)" in text


class _Stdin:
    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(MINIMAL, dest)
    return dest


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The questions put at the prompt (each answered no); run_session is recorded, not run."""
    questions: list[str] = []

    def confirm(text: str, **_kw: Any) -> bool:
        questions.append(text)
        return False

    monkeypatch.setattr(typer, "confirm", confirm)
    monkeypatch.setattr(commands_apply, "run_session", lambda *_a, **_kw: questions.append("<ran>"))
    return questions


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("flags", [[], ["--yes"], ["--all"]])
def test_a_saved_plan_is_applied_without_asking_on_a_terminal_or_not(
    fleet: Path, monkeypatch: pytest.MonkeyPatch, asked: list[str], terminal: bool, flags: list[str]
) -> None:
    from mcfleet.fleet.load import load_fleet
    from mcfleet.plan.model import Plan
    from mcfleet.plan.saved import fleet_inputs, save_plan

    loaded = load_fleet(fleet)
    assert len(loaded.hosts) > 1  # a live plan of these hosts would ask
    plan = Plan(created_at="2026-12-07T00:00:00+00:00", root=str(loaded.root), hosts=sorted(loaded.hosts),
                inputs=fleet_inputs(loaded))  # fmt: skip
    saved = fleet.parent / "plan.json"
    save_plan(plan, saved)
    monkeypatch.setattr(sys, "stdin", _Stdin(terminal))
    code, _out, err = run_cli("apply", str(saved), *flags)
    assert code == 0, err
    assert asked == ["<ran>"]  # no question, straight to the run


def test_a_live_plan_of_several_hosts_asks_on_a_terminal_and_is_refused_without_one(
    fleet: Path, monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(True))
    code, _out, err = run_cli("-C", str(fleet), "apply", "--on", "alpha,beta")
    assert code == 1 and "apply: nothing done (answered no)" in err
    assert asked == ["apply on 2 hosts (alpha, beta)?"]
    asked.clear()
    monkeypatch.setattr(sys, "stdin", _Stdin(False))
    code, _out, err = run_cli("-C", str(fleet), "apply", "--on", "alpha,beta")
    assert code == 1 and "apply may change 2 hosts (alpha, beta) and there is no terminal" in err
    code, _out, err = run_cli("-C", str(fleet), "apply")
    assert code == 1 and "this would apply to the whole fleet (3 hosts) and there is no terminal" in err
    assert asked == []
    code, _out, err = run_cli("-C", str(fleet), "apply", "--on", "alpha,beta", "--yes")
    assert code == 0, err
    assert asked == ["<ran>"]
