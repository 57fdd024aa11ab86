"""Concepts that used to exist twice now exist once: manifest path, phase vocabulary, agent decision."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mcfleet.apply import events as apply_events
from mcfleet.apply.activate import desired_agent, needs_activation
from mcfleet.apply.probe import AgentProbe, probe
from mcfleet.errors import InputError
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Host
from mcfleet.kinds import KINDS
from mcfleet.kinds.agent import AgentKind
from mcfleet.nix.host_values import agent_unit_text
from mcfleet.observe.collect import script_inputs
from mcfleet.observe.facts import AgentFacts, Facts
from mcfleet.observe.manifest import Manifest, manifest_path
from mcfleet.observe.parse import parse_facts
from mcfleet.observe.script import facts_script
from mcfleet.phase import Phase
from mcfleet.plan import model as plan_model
from mcfleet.plan.saved import read_plan
from mcfleet.transport.local import LocalNode

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def host(srv: Path, **agent: str) -> HostEntry:
    h = Host.model_validate(
        {
            "name": "n1",
            "os": "debian",
            "arch": "amd64",
            "roles": ["worker"],
            "ssh": {"host_key": KEY},
            "addresses": ["127.0.0.1"],
            "users": {"mcp": {"uid": 850, "gid": 850}, "mcq": {"uid": 851, "gid": 851}},
            "dns": {"nameservers": ["10.0.0.1"], "fallback": ["1.1.1.1"]},
            "agent": agent,
        }
    )
    # a scratch folder is not a valid agent folder on a node: set it past validation, for local runs
    moved = h.agent.model_copy(update={"path": f"{srv}/mcp-agent", "socket": f"{srv}/mcp-agent.sock"})
    return HostEntry(h.model_copy(update={"agent": moved}), (), srv)


def test_one_manifest_path_plan_reads_where_apply_writes(tmp_path: Path) -> None:
    """One function says where a node's manifest is (root's store, whatever agent.path says);
    apply's probe and the plan's facts script both read it there."""
    store = tmp_path / "store"  # a local node's stand-in for /var/lib/mcfleet
    store.mkdir()
    entry = host(tmp_path / "opt" / "agent")
    loaded = LoadedFleet(root=tmp_path, fleet=None, hosts={"n1": entry})
    assert manifest_path() == "/var/lib/mcfleet/manifest.json"
    where = manifest_path(str(store))
    written = Manifest.model_validate({"agent": {"path": entry.host.agent.path, "sha256": "a" * 64, "user": "mcp"}})
    Path(where).write_text(written.to_text())
    node = LocalNode("n1", store=str(store))
    # what apply reads before acting ...
    assert asyncio.run(probe(node, entry.host)).manifest == written
    # ... is what the plan's facts script reads (run for real by sh here), at the same path
    inputs = script_inputs(loaded, entry, desired_state(loaded)["n1"])
    assert inputs.manifest_path == manifest_path()
    local = replace(inputs, manifest_path=where)
    out = asyncio.run(node.run(facts_script(local), timeout=60))
    facts = parse_facts("n1", out.stdout, agent_path=entry.host.agent.path)
    assert facts.manifest == written and facts.manifest_error is None


def test_one_phase_vocabulary_for_plan_kinds_and_apply_events() -> None:
    assert apply_events.Phase is Phase
    assert {k.phase for k in KINDS} <= set(plan_model.PHASES)
    assert plan_model.Action.model_fields["phase"].annotation is Phase
    assert list(Phase).index(Phase.cert) < list(Phase).index(Phase.deploy) < list(Phase).index(Phase.route)


def test_a_saved_plan_with_an_unknown_phase_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps({"format": 2, "actions": [{"host": "a", "phase": "deplo", "kind": "create", "subject": "x"}]})
    )

    with pytest.raises(InputError, match="damaged"):
        read_plan(path)


def test_the_agent_decision_is_one_function_for_plan_and_apply(tmp_path: Path) -> None:
    """A change of agent.user changes the unit file: the plan shows `~ agent` with the values,
    and apply's activation decides the same from the node's state."""
    entry = host(tmp_path, user="mcq")
    loaded = LoadedFleet(root=tmp_path, fleet=None, hosts={"n1": entry})
    old_unit = agent_unit_text(host(tmp_path))  # the unit as installed for user mcp
    assert "User=mcp" in old_unit and "User=mcq" in agent_unit_text(entry)
    old_sha = hashlib.sha256(old_unit.encode()).hexdigest()
    recorded = Manifest.model_validate(
        {"agent": {"path": entry.host.agent.path, "sha256": "a" * 64, "user": "mcp", "unit": "mcp-agent.service"}}
    )
    seen = AgentFacts(path=entry.host.agent.path, present=True, sha256="a" * 64, unit_active="active",
                      unit_sha256=old_sha)  # fmt: skip
    facts = Facts(host="n1", os_id="debian", arch_raw="x86_64", agent=seen, manifest=recorded)
    [act] = AgentKind().diff(desired_state(loaded)["n1"], facts, recorded, now=datetime.now(UTC))
    assert act.kind == "update" and act.phase == Phase.agent
    assert act.reason == "the unit file changes: user mcp → mcq"
    assert act.before["user"] == "mcp" and act.after["user"] == "mcq"
    state = AgentProbe("a" * 64, None, old_sha, "active", "enabled", recorded)
    assert needs_activation(state, entry.host, pushed=False) == act.reason
    # once the new unit is installed and confirmed, neither side has anything to do
    new_sha = desired_agent(entry.host, None).unit_sha256
    done = AgentProbe("a" * 64, None, new_sha, "active", "enabled", recorded)
    assert needs_activation(done, entry.host, pushed=False) is None
