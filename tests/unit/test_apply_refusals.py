"""The refusal gate and plan -> work mapping (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcfleet.apply.planwork import Override, check_refusals, planned_agent_sha, work_from_plan
from mcfleet.errors import InputError, Refused
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Host
from mcfleet.phase import Phase
from mcfleet.plan.model import Action, Plan

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def entry(name: str, os: str = "debian") -> HostEntry:
    host = Host.model_validate(
        {
            "name": name,
            "os": os,
            "arch": "amd64",
            "roles": ["worker"],
            "ssh": {"host_key": KEY},
            "addresses": ["127.0.0.1"],
            "users": {"mcp": {"uid": 850, "gid": 850}},
            "dns": {"nameservers": ["10.0.0.1"], "fallback": ["1.1.1.1"]},
        }
    )
    return HostEntry(host, (), Path("/nonexistent"))


def fleet(*entries: HostEntry) -> LoadedFleet:
    return LoadedFleet(root=Path("/nonexistent"), fleet=None, hosts={e.host.name: e for e in entries})


UID_REFUSAL = Action(
    host="orion",
    phase="host",
    kind="refuse",
    subject="user mcp",
    before={"uid": 995},
    after={"uid": 850},
    reason="user mcp on orion has UID 995 but the fleet pins UID 850",
    hint="never change a rootless podman user's UID",
)


def plan(*actions: Action, hosts: list[str] | None = None) -> Plan:
    return Plan(hosts=hosts or sorted({a.host for a in actions}), actions=list(actions))


def test_a_refusal_refuses_the_whole_plan_and_says_how_to_override() -> None:
    p = plan(UID_REFUSAL, Action(host="rift", phase="agent", kind="update", subject="agent"))
    with pytest.raises(Refused) as err:
        check_refusals(p, [])
    text = err.value.format()
    assert "UID 995" in text
    assert "orion: host user mcp" in text
    assert "--override 'orion:user mcp'" in text
    assert err.value.exit_code == 1  # a refusal is 1 everywhere
    assert text.count("never change a rootless podman user's UID") == 1  # the hint, once


def test_the_refusal_others_are_held_with_is_named_first() -> None:
    """The agent's folder, refused with the user its owner comes from, sorts before the user ("dir" <
    "user"): the gate names the user, the cause, and its override first."""
    held = Action(host="orion", phase="host", kind="create", subject="dir /srv/mcp").held_with(
        UID_REFUSAL, "owner 850:850 is mcp's ids in the files, refused with the user"
    )
    assert held.kind == "refuse" and held.held_by == "orion/host/user mcp" and held.hint == UID_REFUSAL.hint
    with pytest.raises(Refused) as err:
        check_refusals(plan(held, UID_REFUSAL), [])
    assert err.value.location == "orion: host user mcp" and "(and 1 more)" in err.value.message
    assert "--override 'orion:user mcp'" in (err.value.hint or "")
    with pytest.raises(Refused) as err:  # the user overridden: what was held with it still refuses
        check_refusals(plan(held, UID_REFUSAL), [Override.parse("orion:user mcp")])
    assert err.value.location == "orion: host dir /srv/mcp"


def test_a_refusal_whose_subject_names_its_phase_is_located_without_saying_it_twice() -> None:
    cert = Action(host="full1", phase="cert", kind="refuse", subject="cert api", reason="needed by a route it keeps")
    with pytest.raises(Refused) as err:
        check_refusals(plan(cert), [])
    assert err.value.location == "full1: cert api"  # was "full1: cert cert api"
    agent = Action(host="node1", phase="agent", kind="refuse", subject="agent", reason="node1 does not run systemd")
    with pytest.raises(Refused) as err:
        check_refusals(plan(agent), [])
    assert err.value.location == "node1: agent"  # was "node1: agent agent"


def test_a_hint_the_reason_already_ends_with_is_said_once() -> None:
    said = UID_REFUSAL.model_copy(update={"reason": f"{UID_REFUSAL.reason}: {UID_REFUSAL.hint}"})
    with pytest.raises(Refused) as err:
        check_refusals(plan(said), [])
    assert err.value.format().count("never change a rootless podman user's UID") == 1
    assert err.value.hint == "to run the rest of the plan anyway: --override 'orion:user mcp'"


@pytest.mark.parametrize("what", ["user mcp", "host/user mcp", "orion/host/user mcp"])
def test_override_by_subject_phase_or_id_lets_the_rest_run(what: str) -> None:
    p = plan(UID_REFUSAL)
    assert check_refusals(p, [Override("orion", what)]) == [UID_REFUSAL]


def test_override_of_another_host_does_not_count() -> None:
    with pytest.raises(InputError, match="matches no refusal"):
        check_refusals(plan(UID_REFUSAL), [Override("rift", "user mcp")])


def test_override_text_must_be_host_colon_what() -> None:
    assert Override.parse("orion:user mcp") == Override("orion", "user mcp")
    with pytest.raises(InputError, match="HOST:WHAT"):
        Override.parse("orion")


def test_overridden_refusal_is_never_executed() -> None:
    p = plan(UID_REFUSAL, Action(host="orion", phase="agent", kind="update", subject="agent"))
    loaded = fleet(entry("orion"))
    work = work_from_plan(p, loaded, desired_state(loaded))
    assert len(work) == 1
    assert work[0].agent and not work[0].provision  # the refused user action gives no provision work


def test_work_from_plan_maps_phases() -> None:
    p = plan(
        Action(host="a", phase="host", kind="create", subject="user mcp"),
        Action(host="a", phase="agent", kind="create", subject="agent", after={"sha256": "ab" * 32}),
        Action(host="a", phase="dns", kind="create", subject="record web"),
        Action(host="n", phase="host", kind="create", subject="user mcp"),
        hosts=["a", "idle", "n"],
    )
    loaded = fleet(entry("a"), entry("idle"), entry("n", os="nixos"))
    work = work_from_plan(p, loaded, desired_state(loaded))
    by = {w.name: w for w in work}
    assert set(by) == {"a", "n"}  # a host with no action gets no work
    assert by["a"].agent and by["a"].provision and by["a"].step_phases == [Phase.dns]
    assert [a.subject for a in by["a"].actions_for(Phase.dns)] == ["record web"]  # the actions themselves
    # on NixOS the system switch creates users and subids (the configuration owns them): no provisioning
    assert by["n"].agent and not by["n"].provision
    assert planned_agent_sha(p, "a") == "ab" * 32
    assert planned_agent_sha(p, "n") is None
