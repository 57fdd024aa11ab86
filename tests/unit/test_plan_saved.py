"""Saved plans: JSON round-trip, staleness (files and facts), damaged files; the text view."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from mcfleet.errors import InputError, Refused
from mcfleet.fleet.load import load_fleet
from mcfleet.observe.facts import Account, AgentFacts, Facts, Unreachable
from mcfleet.plan.model import Action, Plan
from mcfleet.plan.planner import build
from mcfleet.plan.render import render_text, summary_line
from mcfleet.plan.saved import (
    ensure_fresh,
    ensure_same_actions,
    facts_digest,
    fleet_inputs,
    load_plan,
    plan_json,
    read_plan,
    save_plan,
)
from tests.unit.test_plan_cases import write_case_fleet

NOW = datetime.fromisoformat("2026-11-30T00:00:00+00:00")
CASE = {"hosts": {"rift": {"host": {"roles": ["master"]}}, "orion": {}}}


def _facts() -> dict[str, Facts | Unreachable]:
    return {
        "orion": Facts(
            host="orion",
            os_id="debian",
            arch_raw="x86_64",
            accounts=[Account(name="mcp", uid=995, gid=995)],
            agent=AgentFacts(path="/srv/mcp/mcp-agent"),
        ),
        "rift": Unreachable(host="rift", reason="no address answered: 10.0.0.10: timed out", hint="check the node"),
    }


def _plan(tmp_path: Path) -> tuple[Plan, Path]:
    root = tmp_path / "fleet"
    root.mkdir()
    loaded = write_case_fleet(root, CASE)
    return build(loaded, _facts(), now=NOW), root


def test_json_round_trip_is_lossless(tmp_path: Path) -> None:
    plan, root = _plan(tmp_path)
    save_plan(plan, tmp_path / "plan.json")
    again = load_plan(tmp_path / "plan.json", root=root)
    assert again == plan
    assert plan_json(again) == plan_json(plan)
    data = json.loads((tmp_path / "plan.json").read_text())
    assert {a["kind"] for a in data["actions"]} >= {"refuse", "create"}
    assert data["unreachable"]["rift"]["reason"].startswith("no address answered")


def test_stale_fleet_files_are_refused(tmp_path: Path) -> None:
    plan, root = _plan(tmp_path)
    save_plan(plan, tmp_path / "plan.json")
    host_file = root / "hosts" / "orion" / "host.json"
    host_file.write_text(host_file.read_text().replace('"worker"', '"worker", "edge"'))
    with pytest.raises(Refused) as err:
        load_plan(tmp_path / "plan.json", root=root)
    assert "stale plan: the fleet files" in err.value.message
    assert err.value.hint and "mcfleet plan" in err.value.hint


def _plan_with_sources(tmp_path: Path) -> tuple[Path, Path]:
    """A plan of a fleet whose service takes a file's content from files/web/motd; (the plan file, the fleet)."""
    from tests.unit.test_files_kind import fleet_with_files

    root = fleet_with_files(tmp_path)
    loaded = load_fleet(root)
    plan = Plan(hosts=sorted(loaded.hosts), inputs=fleet_inputs(loaded))
    assert {"fleet.json", "files/web/motd", "files/web/web.toml"} <= set(plan.inputs)
    assert "hosts/alpha/services/web.json" in plan.inputs
    save_plan(plan, tmp_path / "plan.json")
    return tmp_path / "plan.json", root


def test_a_source_edited_after_the_plan_makes_it_stale_and_is_named(tmp_path: Path) -> None:
    """Seen on the lab: a plan saved with `~ file /srv/sni/tls.pem`, the source edited again, and apply of
    the saved plan wrote the new content, which nobody had reviewed (sources were not in the fleet hash)."""
    path, root = _plan_with_sources(tmp_path)
    assert load_plan(path, root=root).inputs  # unchanged: fresh
    (root / "files" / "web" / "motd").write_text("edited after the plan\n")
    with pytest.raises(Refused) as err:
        load_plan(path, root=root)
    assert err.value.message.endswith("): files/web/motd (changed)")


def test_a_secret_added_or_a_file_removed_makes_the_plan_stale(tmp_path: Path) -> None:
    path, root = _plan_with_sources(tmp_path)
    (root / "secrets").mkdir(exist_ok=True)
    (root / "secrets" / "token.age").write_bytes(b"age-encryption.org/v1 ...")
    (root / "files" / "web" / "web.toml").unlink()
    with pytest.raises(Refused) as err:
        load_plan(path, root=root)
    assert "files/web/web.toml (removed), secrets/token.age (added)" in err.value.message


def test_a_plan_file_cannot_make_mcfleet_read_outside_the_fleet_folder(tmp_path: Path) -> None:
    """The names come from a file on disk: one outside the fleet folder is never read, and counts as gone."""
    path, root = _plan_with_sources(tmp_path)
    data = json.loads(path.read_text())
    data["inputs"]["/etc/hostname"] = data["inputs"]["../outside"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(Refused) as err:
        load_plan(path, root=root)
    assert "../outside (removed), /etc/hostname (removed)" in err.value.message


def test_stale_facts_are_refused_and_fresh_ones_pass(tmp_path: Path) -> None:
    plan, _root = _plan(tmp_path)
    facts = _facts()
    ensure_fresh(plan, facts)  # same facts: fine
    facts["orion"] = Facts(host="orion", os_id="debian", arch_raw="x86_64")
    with pytest.raises(Refused) as err:
        ensure_fresh(plan, facts)
    assert "orion" in err.value.message and "stale plan" in err.value.message


def test_a_plan_whose_actions_are_not_the_ones_planned_now_is_refused(tmp_path: Path) -> None:
    plan, root = _plan(tmp_path)
    loaded = load_fleet(root)
    ensure_same_actions(plan, build(loaded, _facts(), now=NOW))  # planned again from the same: fine
    first = plan.actions[0]
    added = first.model_copy(update={"phase": "deploy", "kind": "create", "subject": "service evil"})
    edited = plan.model_copy(update={"actions": [*plan.actions[1:], added]})
    with pytest.raises(Refused) as err:
        ensure_same_actions(edited, plan)
    assert "in the file only: orion deploy: create service evil" in err.value.message
    assert f"planned now only: orion {first.phase}: {first.kind} {first.subject}" in err.value.message
    assert err.value.hint and "mcfleet plan -o" in err.value.hint


def test_a_plan_whose_actions_say_other_values_or_reasons_is_refused(tmp_path: Path) -> None:
    """`mcfleet show` displays the file's values and reasons: a reviewer approves those, so a file whose
    same actions say other ones (an `after` changed, a reason reworded) is refused; a count of days in a
    reason may change with the date (applied a day later) and is no edit."""
    plan, root = _plan(tmp_path)
    now = build(load_fleet(root), _facts(), now=NOW)
    ensure_same_actions(plan, now)
    first = plan.actions[0]
    others = plan.actions[1:]
    for update, field in (({"after": {"uid": 0}}, "after"), ({"reason": "unchanged (cosmetic)"}, "reason"),
                          ({"hint": "nothing to do"}, "hint")):  # fmt: skip
        edited = plan.model_copy(update={"actions": [first.model_copy(update=update), *others]})
        with pytest.raises(Refused) as err:
            ensure_same_actions(edited, now)
        assert err.value.message.startswith(
            f"the plan's action {first.host} {first.phase}: {first.kind} {first.subject}"
        )
        assert f"({field} differ); was the file edited?" in err.value.message, err.value.message
    cert = Action(
        host="rift", phase="cert", kind="update", subject="cert web", reason="expires in 12 days (renewed under 30)"
    )
    later = cert.model_copy(update={"reason": "expires in 11 days (renewed under 30)"})
    ensure_same_actions(Plan(hosts=["rift"], actions=[cert]), Plan(hosts=["rift"], actions=[later]))


def test_a_planned_change_that_is_refused_now_says_why() -> None:
    """The DNS server rejects the key since the plan was made: apply said "was the file edited?"."""
    create = Action(host="rift", phase="dns", kind="create", subject="dns web.example.test", reason="no A record")
    manifest = Action(host="rift", phase="manifest", kind="update", subject="manifest", reason="record")
    why = "the DNS server rejected the TSIG key 'k': BADSIG, so …"
    refusal = create.model_copy(update={"kind": "refuse", "hint": "check key_file", "reason": why})
    with pytest.raises(Refused) as err:
        ensure_same_actions(Plan(hosts=["rift"], actions=[create, manifest]), Plan(hosts=["rift"], actions=[refusal]))
    assert err.value.message == f"stale plan: rift: dns web.example.test is refused now: {why}"
    assert err.value.hint == "check key_file"


def test_digest_ignores_which_address_answered() -> None:
    a = Facts(host="h", os_id="debian", address="10.0.0.1")
    b = Facts(host="h", os_id="debian", address="192.168.1.1")
    assert facts_digest(a) == facts_digest(b)
    assert facts_digest(a) != facts_digest(Facts(host="h", os_id="nixos"))


def test_digest_ignores_the_seconds_a_container_has_run_and_where_a_crash_loop_is_caught() -> None:
    """The agent reports each container's seconds since its start and podman's restart count: both grow
    between plan and apply, and a saved plan was refused as stale every time (the migrate lab test).
    A crash loop counts as one state whether the container was caught running or stopped."""
    from mcfleet.observe.facts import ContainerFacts

    def seen(**fields: object) -> Facts:
        return Facts(host="h", os_id="debian", containers=[ContainerFacts(name="web", image="i", **fields)])  # type: ignore[arg-type]

    assert facts_digest(seen(state="running", up_s=5.0)) == facts_digest(seen(state="running", up_s=65.2))
    looping = facts_digest(seen(state="running", restarts=4, up_s=0.1, exit_code=1))
    assert looping == facts_digest(seen(state="stopped", restarts=90, up_s=0.3, exit_code=1))
    assert looping != facts_digest(seen(state="running", up_s=0.1))  # a loop that started since the plan
    assert facts_digest(seen(state="running")) != facts_digest(seen(state="exited"))


def test_digest_ignores_why_a_backend_did_not_answer() -> None:
    """The agent's error names a socket forwarded for that run: a plan saved while the agent was down
    would otherwise always be stale at apply."""
    down = "agent Facts failed: UNAVAILABLE: unix:/tmp/mcfleet-fwd-{}/sock: Socket closed"
    a = Facts(host="h", os_id="debian", services_error=down.format("7z4g4q3k"), dns_error="timed out")
    b = Facts(host="h", os_id="debian", services_error=down.format("q1w2e3r4"))
    assert facts_digest(a) == facts_digest(b) == facts_digest(Facts(host="h", os_id="debian"))


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "invalid JSON"), ('{"format": 99}', "not a plan file"), ('{"format": 2, "actions": 3}', "damaged")],
)
def test_bad_plan_files_are_input_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        read_plan(path)
    assert message in err.value.message


def test_missing_plan_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the plan"):
        read_plan(tmp_path / "nope.json")


def test_text_view_groups_by_host_and_phase_with_symbols(tmp_path: Path) -> None:
    plan, _root = _plan(tmp_path)
    text = render_text(plan, detailed=True)
    lines = text.splitlines()
    assert lines[0] == "orion"
    assert "  host" in lines and "  agent" in lines
    assert any(line.startswith("    ! user mcp  user mcp on orion has UID 995") for line in lines)
    assert "    + agent  no agent binary at /srv/mcp/mcp-agent" in lines
    assert "        before: " + json.dumps({"gid": 995, "uid": 995}, sort_keys=True) in lines
    assert "rift: unreachable: no address answered: 10.0.0.10: timed out" in lines
    assert lines[-1] == summary_line(plan)
    assert lines[-1] == (
        "Plan: 2 to create, 0 to update, 0 to replace, 0 to delete, 1 refused; 1 host unreachable (rift)."
    )


def test_a_saved_plan_whose_nixos_system_is_built_differently_now_is_refused() -> None:
    """flake.nix, flake.lock and the modules it imports may lie outside the plan's inputs: a change there
    keeps `~ system` but changes the toplevel; apply of the saved plan would switch to the new one."""
    from mcfleet.plan.saved import ensure_same_systems

    def plan(toplevel: str) -> Plan:
        before = {"system": "/nix/store/aaaaaaaaaaaa-nixos-system-rift", "agent_unit": "active"}
        system = Action(host="rift", phase="agent", kind="update", subject="system", before=before,
                        after={"system": toplevel}, reason="system change")  # fmt: skip
        return Plan(hosts=["rift"], actions=[system])

    reviewed = plan("/nix/store/bbbbbbbbbbbbbbbb-nixos-system-rift")
    ensure_same_systems(reviewed, plan("/nix/store/bbbbbbbbbbbbbbbb-nixos-system-rift"))  # the same: goes ahead
    with pytest.raises(Refused) as err:
        ensure_same_systems(reviewed, plan("/nix/store/cccccccccccccccc-nixos-system-rift"))
    assert err.value.message.startswith(
        "stale plan: it switches rift to bbbbbbbb-nixos-system-rift but the system built now is "
        "cccccccc-nixos-system-rift"
    )
    assert err.value.location == "rift"


def test_a_saved_plan_made_for_other_agent_sources_is_refused_and_the_same_ones_pass() -> None:
    from mcfleet.plan.saved import ensure_same_agent_sources

    asked: list[str] = []

    def now() -> str:
        asked.append("now")
        return "a" * 64

    ensure_same_agent_sources(Plan(hosts=["orion"]), now)  # no bundle compared when planned: nothing to check
    assert asked == []
    ensure_same_agent_sources(Plan(hosts=["orion"], agent_inputs="a" * 64), now)  # the same sources
    with pytest.raises(Refused) as err:
        ensure_same_agent_sources(Plan(hosts=["orion"], agent_inputs="b" * 64), now)
    assert "agent sources changed since the plan was made (bundle inputs bbbbbbbbbbbb then, aaaaaaaaaaaa now)" in (
        err.value.message
    )
