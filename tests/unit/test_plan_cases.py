"""The pure diff, data-driven: tests/data/plan/<case>.json gives the files (fleet, hosts,
services) and the observed facts; the plan must be exactly the expected actions.

Case format (see any file there):
    fleet            fleet.json overrides (merged into BASE_FLEET)
    hosts            name -> {"host": host.json overrides, "services": {svc: service.json}}
    files            repository path -> text (the sources of services' `files`)
    facts            name -> Facts overrides (merged into BASE_FACTS) or {"kind": "unreachable", ...}
    now              the clock for cert expiry (ISO 8601)
    expected         ["<host> <phase> <kind> <subject>", ...] in plan order
    unreachable      [host, ...]
    agent_hashes     {host: sha256 of the agent bundle built for it} (what apply passes to the planner)
    reasons          {"<host>/<phase>/<subject>": ["text the reason must contain", ...]}
    held_by          {"<id of a refusal held with another>": "<id of that other>"}: every one of them
In facts, "<spec:SVC>" is replaced by the spec hash of that service as the files declare it.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from mcfleet.fleet.desired import desired_state, spec_hash
from mcfleet.fleet.load import LoadedFleet, load_fleet
from mcfleet.observe.facts import HostFacts
from mcfleet.plan.planner import build
from mcfleet.plan.render import render_text

CASES = Path(__file__).resolve().parent.parent / "data" / "plan"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBWZRO9QS8rs2nD4rWBAJO66ergx6C1wxmrprZvKMhQE"

BASE_FLEET: dict[str, Any] = {
    "name": "cases",
    "zone": "svc.mcp.example.test",
    "pins": {"mcp": {"uid": 850, "gid": 850, "reason": "test pin"}},
}
BASE_HOST: dict[str, Any] = {
    "os": "debian",
    "arch": "amd64",
    "roles": ["worker"],
    "ssh": {"user": "root", "host_key": KEY},
    "users": {"mcp": {"uid": 850, "gid": 850}},
    "dns": {"nameservers": ["10.0.0.1"], "fallback": ["9.9.9.9"]},
}
BASE_FACTS: dict[str, Any] = {
    "kind": "facts",
    "os_id": "debian",
    "os_version": "12",
    "arch_raw": "x86_64",
    "euid": 0,
    # the unit file on the node is the one apply installs unless a case says otherwise
    "agent": {"path": "/srv/mcp/mcp-agent", "present": False, "unit_sha256": "<unit>"},
    # the agent's account has the subordinate ranges provisioning gives it (a case drops them with [])
    "subuid": {"mcp": [{"start": 100000, "count": 65536}]},
    "subgid": {"mcp": [{"start": 100000, "count": 65536}]},
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_case_fleet(root: Path, case: dict[str, Any]) -> LoadedFleet:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in case.get("files", {}).items():  # repository files a service's `files` read
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "fleet.json").write_text(json.dumps(merge(BASE_FLEET, case.get("fleet", {}))))
    for i, (name, spec) in enumerate(case["hosts"].items()):
        hdir = root / "hosts" / name
        (hdir / "services").mkdir(parents=True)
        host = merge(BASE_HOST, {"name": name, "addresses": [f"10.0.0.{10 + i}"], **spec.get("host", {})})
        (hdir / "host.json").write_text(json.dumps(host))
        for svc_name, svc in spec.get("services", {}).items():
            (hdir / "services" / f"{svc_name}.json").write_text(json.dumps({"name": svc_name, **svc}))
    loaded = load_fleet(root)
    assert not loaded.findings, [f.format() for f in loaded.findings]
    return loaded


def substitute(value: Any, hashes: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("<spec:"):
        return hashes[value[6:-1]]
    if value == "<unit>":
        return hashes["<unit>"]
    if isinstance(value, dict):
        return {k: substitute(v, hashes) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, hashes) for v in value]
    return value


def case_facts(loaded: LoadedFleet, case: dict[str, Any]) -> dict[str, Any]:
    hashes = {s.name: spec_hash(s) for e in loaded.hosts.values() for s in e.services}
    adapter: TypeAdapter[Any] = TypeAdapter(HostFacts)
    facts = {}
    desired = desired_state(loaded)
    for name, over in case["facts"].items():
        raw = over if over.get("kind") == "unreachable" else merge(BASE_FACTS, over)
        own = {**hashes, "<unit>": desired[name].agent.unit_sha256}
        facts[name] = adapter.validate_python(substitute({"host": name, **raw}, own))
    return facts


@pytest.mark.parametrize("case_name", sorted(p.stem for p in CASES.glob("*.json")))
def test_plan_case(case_name: str, tmp_path: Path) -> None:
    case = json.loads((CASES / f"{case_name}.json").read_text())
    loaded = write_case_fleet(tmp_path, case)
    now = datetime.fromisoformat(case["now"])
    # the kinds' diffs as they are once every backend is configured (blocked kinds: see the test below)
    facts = case_facts(loaded, case)
    plan = build(loaded, facts, now=now, agent_hashes=case.get("agent_hashes"), check_backends=False)
    got = [f"{a.host} {a.phase} {a.kind} {a.subject}" for a in plan.actions]
    assert got == case["expected"], "\n".join(got)
    assert sorted(plan.unreachable) == sorted(case.get("unreachable", []))
    by_id = {a.id: a for a in plan.actions}
    for action_id, needles in case.get("reasons", {}).items():
        text = by_id[action_id].reason + " " + (by_id[action_id].hint or "")
        for needle in needles:
            assert needle in text, f"{action_id}: {needle!r} not in {text!r}"
    held = {a.id: a.held_by for a in plan.actions if a.held_by is not None}
    assert held == case.get("held_by", {})


def test_a_kind_without_a_backend_shows_one_blocked_line_not_actions(tmp_path: Path) -> None:
    case = json.loads((CASES / "drift.json").read_text())
    loaded = write_case_fleet(tmp_path, case)
    plan = build(loaded, case_facts(loaded, case), now=datetime.fromisoformat(case["now"]))
    phases = {a.phase for a in plan.actions}
    assert phases == {"agent", "deploy", "manifest"}  # no cert/dns/route actions apply could not perform
    blocked = {b.phase: b.reason for b in plan.blocked if b.host == "rift"}
    assert sorted(blocked) == ["cert", "dns", "route"]
    assert blocked["dns"].startswith("no dns provider configured (providers.dns in fleet.json)")
    assert "1 change(s) not planned" in blocked["route"]
    text = render_text(plan)
    assert "    blocked: no cert provider configured" in text
