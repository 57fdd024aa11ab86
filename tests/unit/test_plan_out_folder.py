"""`plan -o`: a plan is saved only into a folder that exists, checked before any host is observed.

Both forms of the command are held to it: the plain form (cli/plan_fast.py, no typer) and typer's.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from mcfleet.cli.plan_fast import parse
from mcfleet.errors import InputError
from mcfleet.plan.model import Plan
from mcfleet.plan.saved import missing_plan_folder, save_plan
from tests.conftest import run_cli
from tests.unit.test_plan_cases import write_case_fleet
from tests.unit.unreachable import closed_port


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    root.mkdir()
    port = closed_port()
    write_case_fleet(
        root, {"hosts": {"alpha": {"host": {"roles": ["master"], "addresses": ["127.0.0.1"], "ssh": {"port": port}}}}}
    )
    return root


@pytest.fixture
def no_observing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if a host is observed; returns the hosts it was asked to observe (none, then)."""
    import mcfleet.plan.planner

    asked: list[str] = []

    async def observe(_loaded: Any, hosts: list[str], **_kw: Any) -> Any:
        asked.extend(hosts)
        raise AssertionError(f"observed {hosts} for a plan that cannot be saved")

    monkeypatch.setattr(mcfleet.plan.planner, "plan_fleet", observe)
    return asked


# (extra words after `plan -o OUT`, whether cli/plan_fast.py takes the form)
FORMS = [([], True), (["--values", "--values"], False)]  # a repeated flag: typer's form, same meaning


@pytest.mark.parametrize(("extra", "fast"), FORMS)
def test_a_missing_folder_for_the_plan_is_refused_before_any_host_and_none_is_made(
    fleet: Path, tmp_path: Path, no_observing: list[str], extra: list[str], fast: bool
) -> None:
    out = tmp_path / "nonexist" / "sub" / "p.json"
    argv = ["-C", str(fleet), "plan", "-o", str(out), *extra]
    assert (parse(argv) is not None) is fast  # the form goes where the test says
    code, stdout, err = run_cli(*argv)
    assert code == 2, err  # invalid input
    assert f"invalid input: {out}: no such folder: {tmp_path / 'nonexist' / 'sub'}" in err
    assert f"hint: create it first (mkdir -p {tmp_path / 'nonexist' / 'sub'})" in err
    assert stdout == "" and no_observing == [] and "[alpha]" not in err  # no host was tried
    assert not (tmp_path / "nonexist").exists()  # no folder was made


def test_the_folder_is_checked_again_right_before_the_write(tmp_path: Path) -> None:
    """A folder removed while the hosts were observed is not made again by the write."""
    out = tmp_path / "gone" / "p.json"
    with pytest.raises(InputError) as err:
        save_plan(Plan(hosts=[]), out)
    assert err.value.location == str(out) and "no such folder" in err.value.message
    assert err.value.hint and "create it first" in err.value.hint
    assert not (tmp_path / "gone").exists()


def test_a_plan_in_a_folder_that_exists_is_still_written_whole_and_private(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text("old\n")
    out.chmod(0o644)
    save_plan(Plan(hosts=[]), out)
    assert '"format"' in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # renamed in from beside it: no temp file
    assert missing_plan_folder(Path("p.json")) is None  # a bare name: the current folder


def test_a_folder_that_cannot_be_looked_at_is_left_for_the_write_to_name(tmp_path: Path) -> None:
    """Only a folder that is not there is refused as missing; another reason is the write's to say."""
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    assert missing_plan_folder(blocked / "sub" / "p.json") is None  # not a folder: named by its own check
    assert missing_plan_folder(tmp_path / "no" / "p.json") == tmp_path / "no"
