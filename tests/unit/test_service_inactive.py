"""`"active": false` in a service file: the service stays registered with the agent and its containers
are kept, stopped (never removed), its routes and DNS records go; `"active": true` starts the same
containers again.

The plan: a running service made inactive is one `~` that stops it; once the agent holds it stopped,
nothing (no drift); set active again, one `~` that starts it.  A service never deployed and declared
inactive plans nothing.  Apply sends it to the agent with the others (the agent registers it
stopped) and records it with the hash of its inactive definition, so the plan after it is empty.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mcfleet.agent.spec import LABEL_HASH
from mcfleet.fleet.desired import DesiredService, desired_state, spec_hash
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import PLANNED
from mcfleet.kinds.service import ServiceKind, spec_hashes, stage_line
from mcfleet.kinds.service_ports import wanted_ports
from mcfleet.observe.facts import ContainerFacts, Facts
from mcfleet.observe.manifest import Manifest, ManifestService
from mcfleet.phase import Phase
from mcfleet.plan.model import Action, apply_passes, is_removal
from mcfleet.plan.planner import build
from mcfleet.plan.render import render_text
from tests.unit.test_plan_cases import CASES, case_facts, write_case_fleet

NOW = datetime(2026, 11, 30)
STOPPING = (
    '"active": false in web.json: its containers are stopped (kept, with their volumes); start it again with '
    '"active": true'
)


def in_sync(active: bool) -> dict[str, Any]:
    """The in-sync plan case (web deployed and running on rift, with its route, record and certificate),
    its service file saying `"active": <active>`."""
    case: dict[str, Any] = json.loads((CASES / "in-sync.json").read_text())
    case["hosts"]["rift"]["services"]["web"]["active"] = active
    return case


def fleet(tmp_path: Path, active: bool) -> LoadedFleet:
    return write_case_fleet(tmp_path / ("on" if active else "off"), in_sync(active))


def web(loaded: LoadedFleet) -> DesiredService:
    return desired_state(loaded)["rift"].services["web"]


def registry_spec(svc: DesiredService) -> dict[str, Any]:
    """The definition as the agent's registry holds it and sends it in its facts."""
    assert svc.spec is not None
    return svc.spec.model_dump(mode="json", by_alias=True, exclude={"files"})


def container(svc: DesiredService, state: str) -> ContainerFacts:
    return ContainerFacts(name="web", state=state, image="mcr.example/web:1.2",
                          labels={LABEL_HASH: spec_hashes(svc)["web"]})  # fmt: skip


def facts(svc: DesiredService, *, state: str | None, registered: str | None, spec: DesiredService | None) -> Facts:
    """The agent's answer: its container in `state` (None: none), its registry holding `spec` as `registered`
    ("running", "stopped"; None: not registered)."""
    return Facts(
        host="rift",
        containers=[container(svc, state)] if state else [],
        services_registered=["web"] if registered else [],
        services_held_stopped=["web"] if registered == "stopped" else [],
        service_specs={"web": registry_spec(spec)} if registered and spec else {},
    )


def recorded(svc: DesiredService) -> Manifest:
    return Manifest(services={"web": ManifestService(hash=svc.hash, containers=["web"],
                                                     images={"web": "mcr.example/web:1.2"})})  # fmt: skip


def diff(loaded: LoadedFleet, f: Facts, m: Manifest) -> list[tuple[str, str]]:
    d = desired_state(loaded)["rift"]
    return [(a.kind, a.reason) for a in ServiceKind().diff(d, f, m, now=NOW) if a.phase == "deploy"]


def test_an_inactive_service_is_desired_stopped_with_its_ports_and_without_routes_records_or_files(
    tmp_path: Path,
) -> None:
    on, off = desired_state(fleet(tmp_path, True))["rift"], desired_state(fleet(tmp_path, False))["rift"]
    assert off.services["web"].active is False and off.inactive == {"web"} and on.inactive == frozenset()
    # the same containers and ports: what the agent keeps stopped is started again as it is
    assert off.services["web"].ports == on.services["web"].ports and off.services["web"].containers == ("web",)
    assert spec_hashes(off.services["web"]) == spec_hashes(on.services["web"])
    # the recorded hash covers `active`: the manifest tells a stopped service from a running one
    assert off.services["web"].hash != on.services["web"].hash
    assert on.routes and on.records and not off.routes and not off.records and not off.certs
    # nothing of it is refused for a port: it publishes nothing while stopped
    assert wanted_ports(off.services.values()) == () and wanted_ports(on.services.values()) != ()


def test_a_running_service_made_inactive_is_one_update_that_stops_it(tmp_path: Path) -> None:
    loaded_on, loaded_off = fleet(tmp_path, True), fleet(tmp_path, False)
    on = web(loaded_on)
    running = facts(on, state="running", registered="running", spec=on)
    assert diff(loaded_on, running, recorded(on)) == []  # in sync while active
    [(kind, reason)] = diff(loaded_off, running, recorded(on))
    assert (kind, reason) == ("update", STOPPING)
    [act] = [a for a in ServiceKind().diff(desired_state(loaded_off)["rift"], running, recorded(on), now=NOW)]
    assert act.before["active"] is True and act.after["active"] is False  # type: ignore[index]
    # the agent not read (its podman down): the record says it was applied running
    assert diff(loaded_off, Facts(host="rift", services_error="podman down"), recorded(on)) == [("update", STOPPING)]


def test_a_service_the_agent_holds_stopped_as_declared_plans_nothing(tmp_path: Path) -> None:
    loaded = fleet(tmp_path, False)
    off = web(loaded)
    stopped = facts(off, state="exited", registered="stopped", spec=off)
    assert diff(loaded, stopped, recorded(off)) == []
    # its containers gone (a Recover makes none for a stopped service): no drift, `"active": true` makes them
    assert diff(loaded, facts(off, state=None, registered="stopped", spec=off), recorded(off)) == []
    # the agent not read: the record says it was applied stopped
    assert diff(loaded, Facts(host="rift", services_error="podman down"), recorded(off)) == []
    # applied, but the apply ended before its record: apply records it
    [(kind, reason)] = diff(loaded, stopped, Manifest())
    assert kind == "update" and reason.endswith("no apply recorded it: apply records it")


def test_a_service_never_deployed_and_declared_inactive_plans_nothing(tmp_path: Path) -> None:
    loaded = fleet(tmp_path, False)
    assert diff(loaded, Facts(host="rift", containers=[], services_registered=[], service_specs={}), Manifest()) == []
    assert diff(loaded, Facts(host="rift"), Manifest()) == []  # the agent not installed yet


def test_an_inactive_service_started_by_hand_or_stopped_by_hand_before(tmp_path: Path) -> None:
    loaded_on, loaded_off = fleet(tmp_path, True), fleet(tmp_path, False)
    on, off = web(loaded_on), web(loaded_off)
    # `mcfleet agent start web` after it was made inactive: the files say it stays stopped
    started = facts(off, state="running", registered="running", spec=off)
    [(kind, reason)] = diff(loaded_off, started, recorded(off))
    assert (kind, reason) == ("update", 'drift: web is running while "active": false in web.json: apply stops it '
                                        "again (its containers kept)")  # fmt: skip
    # stopped with `mcfleet agent stop` while active, then made inactive: the agent is sent `active: false`
    held = facts(on, state="exited", registered="stopped", spec=on)
    assert diff(loaded_off, held, recorded(on)) == [("update", STOPPING)]
    # the registry lost it (reset): apply registers it again, stopped
    [(kind, reason)] = diff(loaded_off, facts(off, state="exited", registered=None, spec=None), recorded(off))
    assert reason.startswith("drift: the agent's registry does not list it (removed or reset): apply registers it")


def test_a_definition_changed_while_inactive_says_the_old_containers_go(tmp_path: Path) -> None:
    case = in_sync(False)
    loaded = write_case_fleet(tmp_path / "old", case)
    old = web(loaded)
    bumped = copy.deepcopy(case)
    bumped["hosts"]["rift"]["services"]["web"]["components"][0]["image"] = "mcr.example/web:1.3"
    loaded_new = write_case_fleet(tmp_path / "new", bumped)
    stopped = facts(old, state="exited", registered="stopped", spec=old)
    [(kind, reason)] = diff(loaded_new, stopped, recorded(old))
    assert kind == "update"
    assert reason == (
        'the service definition changed while it is stopped ("active": false in web.json): components[0].image: '
        '"mcr.example/web:1.2" → "mcr.example/web:1.3"; web, made from the old one, removed (volumes kept): '
        '"active": true makes it again'
    )


def test_a_stopped_service_set_active_again_is_one_update_that_starts_it(tmp_path: Path) -> None:
    loaded_on, loaded_off = fleet(tmp_path, True), fleet(tmp_path, False)
    on, off = web(loaded_on), web(loaded_off)
    stopped = facts(off, state="exited", registered="stopped", spec=off)
    [(kind, reason)] = diff(loaded_on, stopped, recorded(off))
    assert (kind, reason) == ("update", '"active": true in web.json: its stopped containers are started again')
    # its containers gone while it was stopped: made again
    [(kind, reason)] = diff(loaded_on, facts(off, state=None, registered="stopped", spec=off), recorded(off))
    assert (kind, reason) == ("update", '"active": true in web.json: it is started again (web made from its image: '
                                        "removed while it was stopped)")  # fmt: skip
    # an older agent that sends no definition: the recorded hash says it was applied inactive
    older = stopped.model_copy(update={"service_specs": None})
    assert diff(loaded_on, older, recorded(off)) == [
        ("update", '"active": true in web.json: its stopped containers are started again')
    ]
    # once started and recorded: in sync
    assert diff(loaded_on, facts(on, state="running", registered="running", spec=on), recorded(on)) == []


def test_the_whole_plan_stops_it_and_removes_its_route_record_and_certificate_then_is_empty(tmp_path: Path) -> None:
    """The plan of the whole host: the deploy's `~` and the removals of what led to it (never a `- service`);
    after apply (the agent holding it stopped, the manifest recording it so) the plan is empty."""
    case = in_sync(False)
    case["facts"]["rift"]["containers"] = [{"name": "web", "state": "running"}]
    # the last apply deployed it active
    case["facts"]["rift"]["manifest"]["services"]["web"]["hash"] = web(fleet(tmp_path, True)).hash
    loaded = write_case_fleet(tmp_path / "before", case)
    plan = build(loaded, case_facts(loaded, case), now=NOW, check_backends=False)
    got = [f"{a.host} {a.phase} {a.kind} {a.subject}" for a in plan.actions]
    assert "rift deploy update service web" in got and not any("delete service" in g for g in got), got
    assert {g for g in got if " delete " in g} == {
        "rift dns delete dns web.svc.mcp.example.test",
        "rift route delete route 443/web.svc.mcp.example.test",
        "rift cert delete cert web",
    }, got
    [stop] = [a for a in plan.actions if a.subject == "service web"]
    assert stop.reason == STOPPING
    # stopped where a removal runs: after its record and route are gone, so no route leads to a stopped container
    assert got.index("rift deploy update service web") > got.index(
        "rift route delete route 443/web.svc.mcp.example.test"
    )
    passes = [(str(p), removal, [a.subject for a in acts]) for p, removal, acts in apply_passes(plan.for_host("rift"))]
    assert [p for p in passes if p[1]] == [
        ("dns", True, ["dns web.svc.mcp.example.test"]),
        ("route", True, ["route 443/web.svc.mcp.example.test"]),
        ("deploy", True, ["service web"]),
        ("cert", True, ["cert web"]),
    ], passes
    text = render_text(plan)
    assert text.index("route removals") < text.index("deploy stops") < text.index("~ service web"), text
    gone = {a.reason for a in plan.actions if a.kind == "delete"}  # why they go: not "no longer declared"
    assert gone == {'"active": false in web.json: removed while the service is kept stopped'}, gone

    after = copy.deepcopy(case)
    node = after["facts"]["rift"]
    off = web(loaded)
    node["containers"] = [{"name": "web", "state": "exited", "labels": {LABEL_HASH: spec_hashes(off)["web"]}}]
    node["services_registered"], node["services_held_stopped"] = ["web"], ["web"]
    node["service_specs"] = {"web": registry_spec(off)}
    node["certs"], node["dns"] = [], {}
    node["manifest"] = {"agent": {"sha256": "aa"}, "services": {"web": {"hash": "<spec:web>", "containers": ["web"]}}}
    loaded_after = write_case_fleet(tmp_path / "after", after)
    plan = build(loaded_after, case_facts(loaded_after, after), now=NOW, check_backends=False)
    assert [f"{a.host} {a.phase} {a.kind} {a.subject}" for a in plan.actions] == []
    assert spec_hash(off.spec) == off.hash  # type: ignore[arg-type]


class FakeAgent:
    """The agent's ReconcileServices as apply calls it: what it was sent, and an answer."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, bool, dict[str, int]]]] = []
        self.pruned: list[bool] = []

    async def reconcile(self, services: Any, *, prune: bool, stage_timeout_s: float) -> Any:
        self.sent.append([(s.name, s.active, dict(p)) for s, p in services])
        self.pruned.append(prune)
        acts = [SimpleNamespace(kind="stop", container=s.name, service=s.name) for s, _ in services if not s.active]
        return SimpleNamespace(ok=True, error="", actions=acts)

    async def busy(self) -> None:
        return None


def test_apply_sends_the_inactive_service_to_the_agent_and_records_it(tmp_path: Path) -> None:
    """The deploy call carries it with `active: false` (the agent registers it stopped and stops its
    containers) and its ports; the record is its inactive definition's hash, so the next plan is empty."""
    loaded = fleet(tmp_path, False)
    d = desired_state(loaded)["rift"]
    ctx = SimpleNamespace(desired=d, data={}, entry=loaded.hosts["rift"], manifest=Manifest(), node=None)
    agent = FakeAgent()
    outcome = asyncio.run(ServiceKind()._deploy(ctx, agent, {"web"}))  # type: ignore[arg-type]
    assert outcome.status == "changed" and "stop web" in outcome.message, outcome
    assert agent.sent == [[("web", False, d.services["web"].ports)]]
    m = ServiceKind().record(Manifest(), ctx, [])  # type: ignore[arg-type]
    assert m.services["web"].hash == d.services["web"].hash
    # a removal elsewhere prunes with every declared service: the inactive one is kept (sent, not pruned)
    agent = FakeAgent()
    asyncio.run(ServiceKind()._remove(ctx, agent, []))  # type: ignore[arg-type]
    assert agent.sent == [[("web", False, d.services["web"].ports)]]


def test_apply_stops_it_in_the_removal_call_not_with_the_changes(tmp_path: Path) -> None:
    """A service this apply makes inactive is left out of the changes' deploy (prune is off: it runs on as
    it is), and stopped by the call that runs after the route and DNS removals, without pruning (nothing
    is removed), then recorded with its inactive definition."""
    loaded = fleet(tmp_path, False)
    d = desired_state(loaded)["rift"]
    stop = Action(host="rift", phase=Phase.deploy, kind="update", subject="service web", before={"active": True},
                  after={"active": False}, reason=STOPPING)  # fmt: skip
    assert is_removal(stop)
    ctx = SimpleNamespace(desired=d, data={PLANNED: [stop]}, entry=loaded.hosts["rift"], manifest=Manifest(),
                          node=None)  # fmt: skip
    agent = FakeAgent()
    outcome = asyncio.run(ServiceKind()._deploy(ctx, agent, set()))  # type: ignore[arg-type]
    assert agent.sent == [] and outcome.status == "unchanged", outcome  # not stopped yet: its route still leads to it
    outcome = asyncio.run(ServiceKind()._remove(ctx, agent, [stop]))  # type: ignore[arg-type]
    assert agent.sent == [[("web", False, d.services["web"].ports)]] and agent.pruned == [False]
    assert outcome.status == "changed" and outcome.message.startswith("stopped web (web; containers kept)"), outcome
    m = ServiceKind().record(Manifest(), ctx, [stop])  # type: ignore[arg-type]
    assert m.services["web"].hash == d.services["web"].hash


def test_the_progress_line_says_an_inactive_service_is_stopped() -> None:
    from mcfleet.fleet.models import Stage

    line = stage_line(Stage("services"), ["web", "api", "db"], {"web", "api"}, {"web", "db"})
    assert line == "stage services: deploying api; stopping web"
    assert stage_line(Stage("services"), ["web"], set(), {"web"}) == "stage services: as declared"


def test_the_nodes_addresses_are_read_for_an_active_service_that_binds_not_an_inactive_one(tmp_path: Path) -> None:
    """The addresses are read only for bind refusals, which a service kept stopped never gets: one shell
    command fewer on its host."""
    from mcfleet.observe.collect import script_inputs

    for active in (True, False):
        case = in_sync(active)
        web_file = case["hosts"]["rift"]["services"]["web"]
        web_file["components"][0]["publish"] = [{"host_ip": "10.0.0.10", "host_port": 53, "container_port": 53}]
        loaded = write_case_fleet(tmp_path / f"binds-{active}", case)
        inputs = script_inputs(loaded, loaded.hosts["rift"], desired_state(loaded)["rift"])
        assert inputs.addresses is active
