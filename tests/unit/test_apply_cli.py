"""The apply/deploy/provision/agent commands' refusals that happen before any host is touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.pex_shaped import pex_shaped

MINIMAL = Path(__file__).resolve().parent.parent / "data" / "fleets" / "minimal"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(MINIMAL, dest)
    return dest


def test_whole_fleet_apply_needs_all_or_yes_without_a_terminal(fleet: Path) -> None:
    code, out, err = run_cli("apply", str(fleet))
    assert code == 1  # a refusal
    assert "refused: this would apply to the whole fleet (3 hosts)" in err
    assert "--all" in err
    assert out == ""
    assert not (fleet / ".mcfleet" / "journal.jsonl").exists()  # refused before the lock and the journal


def test_apply_of_an_invalid_fleet_is_refused_with_the_findings(fleet: Path) -> None:
    host = next((fleet / "hosts").glob("*/host.json"))
    data = json.loads(host.read_text())
    data["dns"]["fallback"] = []
    host.write_text(json.dumps(data))
    code, _out, err = run_cli("apply", str(fleet), "--all")
    assert code == 2
    assert "invalid fleet" in err


def test_a_second_apply_is_refused_while_the_fleet_is_locked(fleet: Path) -> None:
    from mcfleet.apply.lock import fleet_lock

    with fleet_lock(fleet.resolve(), "mcfleet apply --all (the first one)"):
        code, _out, err = run_cli("apply", str(fleet), "--all")
    assert code == 1  # a refusal
    assert "another apply holds the fleet lock" in err
    assert "the first one" in err


def test_a_damaged_plan_file_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": 2, "actions": "nope"')
    code, _out, err = run_cli("apply", str(plan))
    assert code == 2
    assert "not a plan file" in err


def test_a_plan_made_before_the_files_changed_is_stale(fleet: Path, tmp_path: Path) -> None:
    from mcfleet.fleet.load import load_fleet
    from mcfleet.plan.model import Plan
    from mcfleet.plan.saved import fleet_inputs, save_plan

    loaded = load_fleet(fleet)
    plan = Plan(created_at="2026-11-30T00:00:00+00:00", root=str(loaded.root), hosts=sorted(loaded.hosts),
                inputs=fleet_inputs(loaded))  # fmt: skip
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    host = next((fleet / "hosts").glob("*/host.json"))
    host.write_text(host.read_text().replace('"roles"', '"description": "edited after planning", "roles"', 1))
    code, _out, err = run_cli("apply", str(path))
    assert code == 1  # a refusal
    assert "stale plan: the fleet files" in err
    assert f"{host.relative_to(fleet)} (changed)" in err


def test_override_must_name_host_and_what(fleet: Path) -> None:
    code, _out, err = run_cli("apply", str(fleet), "--all", "--override", "justahost")
    assert code == 2
    assert "is not HOST:WHAT" in err


def test_provision_refuses_a_nixos_host_without_touching_it(fleet: Path) -> None:
    from mcfleet.fleet.load import load_fleet

    nixos = [n for n, e in load_fleet(fleet).hosts.items() if e.host.os == "nixos"]
    assert nixos, "the minimal fleet must keep a NixOS host for this test"
    code, out, err = run_cli("-C", str(fleet), "provision", nixos[0], "--bundle", str(pex_shaped(fleet / "agent.pex")))
    assert code == 1  # a refusal
    assert "NixOS nodes are provisioned by their modules" in err
    assert out == ""
    assert not (fleet / ".mcfleet" / "apply.lock").exists()


def test_help_of_every_command_has_examples() -> None:
    for argv in (["apply"], ["deploy"], ["provision"], ["agent", "upgrade"], ["agent", "status"]):
        code, out, _err = run_cli(*argv, "--help")
        assert code == 0
        assert "Examples:" in out and "mcfleet" in out.split("Examples:")[1]


def test_confirm_timeout_must_outlast_the_health_check(fleet: Path) -> None:
    code, _out, err = run_cli("apply", str(fleet), "--all", "--health-timeout", "30", "--confirm-timeout", "20")
    assert code == 2
    assert "--confirm-timeout 20 must be longer than --health-timeout 30" in err


def test_agent_status_with_a_fleet_folder_as_host_says_use_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = tmp_path / "lab-fleet"
    fleet.mkdir()
    (fleet / "fleet.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    code, _out, err = run_cli("agent", "status", "lab-fleet")
    assert code == 2
    assert "'lab-fleet' is a fleet folder, but the arguments here are host names" in err
    assert "hint: pass the folder with -C: mcfleet -C lab-fleet agent …" in err


@pytest.mark.parametrize(
    "command", [["apply", "--on", "edge1", "--yes"], ["agent", "upgrade", "edge1", "--yes"], ["provision", "edge1"]]
)
def test_a_bundle_that_is_not_a_pex_is_refused_before_any_host(fleet: Path, command: list[str]) -> None:
    """Pushed, a file that is not a PEX would replace the agent, fail its health check and be rolled back
    on every node: refused at the command line instead (exit 2), the hosts never tried."""
    text = fleet / "notes.txt"
    text.write_text("not an agent\n")
    for given, said in ((text, "is not an agent PEX"), (fleet / "missing.pex", "no such file")):
        code, out, err = run_cli("-C", str(fleet), *command, "--bundle", str(given))
        assert code == 2 and said in err and "--bundle" in err, err
        assert "connecting" not in out + err
    code, _out, err = run_cli("-C", str(fleet), *command, "--bundle", str(pex_shaped(fleet / "a.pex")), "--help")
    assert code == 0, err


def test_a_saved_plan_made_for_other_agent_sources_is_refused_before_any_build(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mcfleet upgraded (or its checkout edited) between plan and apply: the bundle apply would build is
    not the one the plan compared the nodes with.  Refused at once: no ~20 s build, no connection."""
    from mcfleet.bundle.build import current_inputs_hash
    from mcfleet.fleet.load import load_fleet
    from mcfleet.plan.model import Plan
    from mcfleet.plan.saved import fleet_inputs, save_plan

    cache = tmp_path / "bundle-cache"
    monkeypatch.setenv("MCFLEET_BUNDLE_CACHE", str(cache))
    loaded = load_fleet(fleet)
    plan = Plan(created_at="2026-11-30T00:00:00+00:00", root=str(loaded.root), hosts=sorted(loaded.hosts),
                inputs=fleet_inputs(loaded), agent_inputs="0" * 64)  # fmt: skip
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    code, _out, err = run_cli("apply", str(path))
    assert code == 1, err  # a refusal
    said = "stale plan: mcfleet's agent sources changed since the plan was made (bundle inputs 000000000000 then"
    assert f"{said}, {current_inputs_hash()[:12]} now)" in err
    assert not any(cache.glob("*/*.pex")), "nothing is built for a stale plan"
