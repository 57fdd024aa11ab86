"""Pipeline ordering, concurrency limits, --keep-going / --fail-fast, build-before-activate (local nodes)."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from mcfleet.apply.artifacts import BuildBlocked, Builder
from mcfleet.apply.events import ApplyEvents, Phase, Status
from mcfleet.apply.pipeline import ApplyOptions, HostWork, Limits, Pipeline
from mcfleet.fleet.desired import DesiredCert, desired_state
from mcfleet.fleet.load import HostEntry, LoadedFleet, load_fleet
from mcfleet.fleet.models import Host
from mcfleet.kinds import ApplyContext, Outcome
from mcfleet.kinds.base import MADE
from mcfleet.observe.manifest import Manifest, ManifestCert
from mcfleet.phase import Phase as PlanPhase
from mcfleet.plan.model import Action
from mcfleet.transport.base import Unreachable
from mcfleet.transport.local import LocalNode

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def entry(name: str, srv: Path, os: str = "debian") -> HostEntry:
    host = Host.model_validate(
        {
            "name": name,
            "os": os,
            "arch": "amd64",
            "roles": ["worker"],
            "ssh": {"host_key": KEY},
            "addresses": ["127.0.0.1"],
            "users": {"mcp": {"uid": 850, "gid": 850}},
            "dns": {"nameservers": ["10.0.0.53"], "fallback": ["1.1.1.1"]},
        }
    )
    # a scratch folder is not a valid agent folder on a node: set it past validation, for local runs
    agent = host.agent.model_copy(update={"path": f"{srv}/{name}/mcp-agent", "socket": f"{srv}/{name}/mcp-agent.sock"})
    return HostEntry(host.model_copy(update={"agent": agent}), (), srv)


def work(e: HostEntry, *phases: str, agent: bool = False, provision: bool = False) -> HostWork:
    """A host's work as a plan gives it: one action per phase ("delete:<phase>" for a removal)."""
    desired = desired_state(LoadedFleet(root=e.dir, fleet=None, hosts={e.host.name: e}))[e.host.name]
    actions = tuple(
        Action(
            host=e.host.name,
            phase=PlanPhase(p.removeprefix("delete:")),
            kind="delete" if p.startswith("delete:") else "create",
            subject=f"{p} thing",
            reason="test",
        )
        for p in phases
    )
    return HostWork(e, desired, actions, agent=agent, provision=provision)


def fleet_of(work: list[HostWork]) -> LoadedFleet:
    return LoadedFleet(root=work[0].entry.dir, fleet=None, hosts={w.name: w.entry for w in work})


@dataclass
class RecordingStep:
    """A real resource kind (its apply writes a file on the node) that records the order it ran in."""

    phase: Phase
    trace: list[str]
    fail_on: set[str] = field(default_factory=set)
    running: int = 0
    peak: int = 0
    name: str = "recording"
    records_desired_set: bool = False  # it records what its apply did (ctx.data)

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return None

    async def read(self, ctx: object, facts: dict) -> dict:  # type: ignore[type-arg]
        return facts

    def diff(self, *args: object, **kw: object) -> list[Action]:
        return []

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        assert [a.phase for a in actions] == [self.phase]  # exactly its planned actions, no diffing again
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        removal = "-" if actions[0].kind == "delete" else ""
        self.trace.append(f"{ctx.entry.host.name}:{removal}{self.phase}")
        if ctx.entry.host.name in self.fail_on:
            return Outcome("failed", "boom")
        res = await ctx.node.run(f"mkdir -p {ctx.entry.dir}/{ctx.entry.host.name} && echo ok")
        ctx.data[str(self.phase)] = True
        return Outcome("changed", res.stdout.strip())

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        if not ctx.data.get(str(self.phase)):
            return m
        steps = [*(getattr(m, "steps", None) or []), str(self.phase)]
        return m.model_copy(update={"steps": steps})


async def connect(e: HostEntry) -> LocalNode:
    if e.host.name.startswith("down"):
        raise Unreachable("no address answered", location=e.host.name)
    return LocalNode(e.host.name, store=str(e.dir / ".stores" / e.host.name))  # root's store, in scratch


def run_pipeline(work: list[HostWork], steps: list[RecordingStep], **opts: object) -> tuple[ApplyEvents, object]:
    log = ApplyEvents()
    options = ApplyOptions(**opts)  # type: ignore[arg-type]
    kinds: list[Any] = list(steps)
    pipe = Pipeline(
        work, loaded=fleet_of(work), connect=connect, builder=Builder(), options=options, log=log, kinds=kinds
    )
    return log, asyncio.run(pipe.run())


def test_steps_run_in_phase_order_per_host_and_write_the_manifest(tmp_path: Path) -> None:
    trace: list[str] = []
    steps = [RecordingStep(p, trace) for p in (Phase.route, Phase.deploy, Phase.dns, Phase.cert)]
    log, summary = run_pipeline([work(entry("a", tmp_path), "deploy", "cert", "dns", "route")], steps)
    assert [t for t in trace if t.startswith("a:")] == ["a:cert", "a:deploy", "a:route", "a:dns"]
    assert summary.exit_code == 0  # type: ignore[attr-defined]
    assert log.outcome("a", Phase.manifest).status == Status.changed  # type: ignore[union-attr]
    manifest = (tmp_path / ".stores" / "a" / "manifest.json").read_text()
    assert '"steps": [' in manifest and '"deploy"' in manifest


def test_removals_run_after_the_changes_dns_then_routes_then_containers(tmp_path: Path) -> None:
    trace: list[str] = []
    steps = [RecordingStep(p, trace) for p in (Phase.route, Phase.deploy, Phase.dns, Phase.cert)]
    planned = ["delete:deploy", "delete:dns", "cert", "delete:route", "deploy"]
    _log, summary = run_pipeline([work(entry("a", tmp_path), *planned)], steps)
    assert trace == ["a:cert", "a:deploy", "a:-dns", "a:-route", "a:-deploy"]
    assert summary.exit_code == 0  # type: ignore[attr-defined]


def test_keep_going_lets_other_hosts_finish_and_exits_1(tmp_path: Path) -> None:
    trace: list[str] = []
    steps = [RecordingStep(Phase.deploy, trace, fail_on={"b"}), RecordingStep(Phase.dns, trace)]
    log, summary = run_pipeline([work(entry(n, tmp_path), "deploy", "dns") for n in "abc"], steps)
    assert "a:dns" in trace and "c:dns" in trace and "b:dns" not in trace
    assert log.outcome("b", Phase.dns).status == Status.skipped  # type: ignore[union-attr]
    assert "earlier phase" in log.outcome("b", Phase.dns).message  # type: ignore[union-attr]
    assert summary.exit_code == 1  # type: ignore[attr-defined]


@dataclass
class CertsAsDeclared(RecordingStep):
    """A kind that records its whole desired set (as cert, dns and route do): the certificate `new`."""

    records_desired_set: bool = True

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        return m.model_copy(update={"certs": [ManifestCert(name="new", path="/srv/mc-proxy/certs/new.pem")]})


def manifest_on(tmp_path: Path, host: str) -> dict[str, Any]:
    return json.loads((tmp_path / ".stores" / host / "manifest.json").read_text())


def test_what_succeeded_before_a_failure_is_recorded(tmp_path: Path) -> None:
    """The cert was issued, then the deploy failed: the manifest lists the cert (else removing its service
    later would leave the key on the node, unknown to every plan); dns never ran and is not recorded."""
    trace: list[str] = []
    steps = [CertsAsDeclared(Phase.cert, trace), RecordingStep(Phase.deploy, trace, fail_on={"a"}),
             CertsAsDeclared(Phase.dns, trace)]  # fmt: skip
    store = tmp_path / ".stores" / "a"
    store.mkdir(parents=True)
    old = Manifest(certs=[ManifestCert(name="old", path="/srv/mc-proxy/certs/old.pem")])
    (store / "manifest.json").write_text(old.to_text())
    log, summary = run_pipeline([work(entry("a", tmp_path), "cert", "deploy", "dns", "delete:cert")], steps)
    assert trace == ["a:cert", "a:deploy"] and summary.exit_code == 1  # type: ignore[attr-defined]
    manifest = log.outcome("a", Phase.manifest)
    assert manifest is not None and manifest.status == Status.changed
    assert manifest.message == "recorded what succeeded before the failure (cert)"
    assert log.outcome("a", Phase.dns).status == Status.skipped  # type: ignore[union-attr]
    # `new` issued; `old`'s removal never ran, so it stays listed (a plan will remove it later)
    assert [c["name"] for c in manifest_on(tmp_path, "a")["certs"]] == ["new", "old"]
    assert "steps" not in manifest_on(tmp_path, "a")  # the failed deploy recorded nothing


@dataclass
class CertsPartly(RecordingStep):
    """The cert kind's way: record the desired certs; its apply issues `new`, then fails on `other`, and
    leaves the desired state narrowed to what it made under MADE."""

    records_desired_set: bool = True

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        self.trace.append(f"{ctx.entry.host.name}:{self.phase}")
        made = DesiredCert(name="new", path="/srv/mc-proxy/certs/new.pem", sans=("new.example.test",))
        ctx.data.setdefault(MADE, {})[self.phase] = replace(ctx.desired, certs={"new": made})
        return Outcome("failed", "cert other: the ACME server refused it")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        certs = [ManifestCert(name=c.name, path=c.path) for c in ctx.desired.certs.values()]
        return m.model_copy(update={"certs": certs})


def test_a_phase_that_failed_midway_records_the_part_it_made(tmp_path: Path) -> None:
    """Two certificates planned, one issued: the issued one is recorded (its key is on the node: removing
    its service later must remove it), with the manifest's earlier entries; nothing after the cert phase."""
    trace: list[str] = []
    steps = [CertsPartly(Phase.cert, trace), CertsAsDeclared(Phase.dns, trace)]
    store = tmp_path / ".stores" / "a"
    store.mkdir(parents=True)
    old = Manifest(certs=[ManifestCert(name="old", path="/srv/mc-proxy/certs/old.pem")])
    (store / "manifest.json").write_text(old.to_text())
    log, summary = run_pipeline([work(entry("a", tmp_path), "cert", "dns")], steps)
    assert trace == ["a:cert"] and summary.exit_code == 1  # type: ignore[attr-defined]
    manifest = log.outcome("a", Phase.manifest)
    assert manifest is not None and manifest.message == "recorded what succeeded before the failure (part of cert)"
    assert [c["name"] for c in manifest_on(tmp_path, "a")["certs"]] == ["new", "old"]


def test_a_failure_before_anything_was_made_writes_no_manifest(tmp_path: Path) -> None:
    trace: list[str] = []
    steps = [RecordingStep(Phase.deploy, trace, fail_on={"a"}), CertsAsDeclared(Phase.dns, trace)]
    log, summary = run_pipeline([work(entry("a", tmp_path), "deploy", "dns")], steps)
    assert summary.exit_code == 1  # type: ignore[attr-defined]
    assert log.outcome("a", Phase.manifest).status == Status.skipped  # type: ignore[union-attr]
    assert not (tmp_path / ".stores" / "a" / "manifest.json").exists()


def test_fail_fast_stops_phases_not_yet_started(tmp_path: Path) -> None:
    trace: list[str] = []
    # every host would fail; with one step at a time, the first failure must stop the other three
    # (cert: a step that takes a --parallel slot; deploy takes none, see the stage-gate test below)
    steps = [RecordingStep(Phase.cert, trace, fail_on=set("abcd")), RecordingStep(Phase.dns, trace)]
    hosts = [work(entry(n, tmp_path), "cert", "dns") for n in "abcd"]
    log, summary = run_pipeline(hosts, steps, fail_fast=True, limits=Limits(steps=1))
    assert len(trace) == 1 and trace[0].endswith(":cert")
    stopped = {e.host for e in log.events if e.status == Status.skipped and "fail-fast" in e.message}
    assert stopped == set("abcd") - {trace[0][0]}, [e.line() for e in log.events]
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_phase_limit_bounds_concurrency(tmp_path: Path) -> None:
    trace: list[str] = []
    step = RecordingStep(Phase.dns, trace)
    run_pipeline([work(entry(f"h{i}", tmp_path), "dns") for i in range(6)], [step], limits=Limits(steps=2))
    assert len(trace) == 6 and step.peak == 2


def test_unreachable_host_fails_alone(tmp_path: Path) -> None:
    trace: list[str] = []
    hosts = [work(entry(n, tmp_path), "deploy") for n in ("a", "down1")]
    log, summary = run_pipeline(hosts, [RecordingStep(Phase.deploy, trace)])
    assert trace == ["a:deploy"]
    # reported on the host's first phase, before the phases it leaves skipped (was: on manifest, the last,
    # after "deploy skipped: an earlier phase did not succeed")
    assert "no address answered" in log.outcome("down1", Phase.deploy).message  # type: ignore[union-attr]
    skipped = log.outcome("down1", Phase.manifest)
    assert skipped is not None and skipped.status == Status.skipped
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_planned_step_without_implementation_is_blocked_not_faked(tmp_path: Path) -> None:
    log, summary = run_pipeline([work(entry("a", tmp_path), "route")], [])
    event = log.outcome("a", Phase.route)
    assert event is not None and event.status == Status.blocked and "no route backend" in event.message
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_nixos_build_is_blocked_and_nothing_is_activated_before_builds_end(tmp_path: Path) -> None:
    hosts = [work(entry("rift", tmp_path, os="nixos"), agent=True), work(entry("deb", tmp_path), agent=True)]
    log, summary = run_pipeline(hosts, [], fail_fast=True)
    rift = log.outcome("rift", Phase.build)
    assert rift is not None and rift.status == Status.blocked and "flake" in rift.message
    deb = log.outcome("deb", Phase.build)
    assert deb is not None and deb.status == Status.blocked  # no bundle builder given: blocked, never faked
    assert not any(e.phase in (Phase.push, Phase.activate) and e.status == Status.start for e in log.events)
    assert not (tmp_path / "deb").exists()  # nothing touched any node
    assert summary.exit_code == 1  # type: ignore[attr-defined]


@pytest.mark.nix
def test_nixos_system_is_really_built_with_nix_or_reported_blocked(repo_root: Path) -> None:
    """The real `nix build` of rift's toplevel: here nixpkgs cannot be fetched, so: blocked, with why."""
    if shutil.which("nix") is None:
        pytest.skip("nix is not installed (apt-get install nix-bin)")
    loaded = load_fleet(repo_root)
    rift = loaded.hosts["rift"].host
    with pytest.raises(BuildBlocked) as err:
        asyncio.run(Builder(flake=repo_root).build(rift))
    text = err.value.format()
    assert "rift: build" in text
    assert "`nix build` of rift's system cannot run here: nixpkgs cannot be fetched here" in text
    assert "where nix can fetch nixpkgs" in text


def test_planned_user_changes_on_nixos_are_blocked_not_done(tmp_path: Path) -> None:
    from mcfleet.apply.provision import provision_host

    async def provisioner(node: LocalNode, e: HostEntry) -> tuple[bool, str]:
        return await provision_host(node, e, None)

    log = ApplyEvents()
    hosts = [work(entry("rift", tmp_path, os="nixos"), "host", provision=True)]
    pipe = Pipeline(
        hosts,
        loaded=fleet_of(hosts),
        connect=connect,
        builder=Builder(),
        options=ApplyOptions(),
        log=log,
        provisioner=provisioner,
    )
    summary = asyncio.run(pipe.run())
    event = log.outcome("rift", Phase.provision)
    assert event is not None and event.status == Status.blocked and "NixOS configuration" in event.message
    assert summary.exit_code == 1
    assert not (tmp_path / "rift").exists()


def test_what_a_phase_made_adds_up_over_its_two_passes() -> None:
    """Changes, then removals: the removals pass of the cert phase fails after its changes pass issued
    `new`; the record after the failure still has `new` (MADE holds both passes' items)."""
    from mcfleet.fleet.desired import DesiredAgent, DesiredHost
    from mcfleet.kinds.providers import _outcome
    from mcfleet.providers.steps import StepOutcome

    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    certs = {n: DesiredCert(name=n, path=f"/srv/mc-proxy/certs/{n}.pem", sans=(f"{n}.example.test",))
             for n in ("new", "other")}  # fmt: skip
    desired = DesiredHost(name="a", os="debian", arch="amd64", agent=agent, certs=certs)
    ctx = ApplyContext(loaded=None, entry=None, node=None, desired=desired, manifest=Manifest())  # type: ignore[arg-type]
    _outcome(StepOutcome("changed", "new issued", made={"new"}), ctx, PlanPhase.cert, "certs")
    _outcome(StepOutcome("failed", "cert old: the proxy refused"), ctx, PlanPhase.cert, "certs")
    assert set(ctx.data[MADE][PlanPhase.cert].certs) == {"new"}


@dataclass
class StagedDeploy(RecordingStep):
    """The service kind's way through the boot stages: foundation, then wait at the fleet-wide gate until
    every host finished it, then services (kinds/service.py)."""

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        from mcfleet.fleet.models import Stage

        gate = ctx.data["stage_gate"]
        host = ctx.entry.host.name
        for stage in Stage:
            stopped = await gate.ready(stage)
            if stopped:
                return Outcome("skipped", stopped)
            await gate.done(host, stage)
        self.trace.append(f"{host}:deploy")
        return Outcome("changed", "every stage")


@pytest.mark.parametrize("steps", [1, 4])
def test_more_hosts_deploying_than_parallel_slots_do_not_wait_on_each_other_forever(tmp_path: Path, steps: int) -> None:
    """Each host waits at the boot-stage gate for every other host's earlier stages. Holding one of the
    --parallel slots while waiting there, the hosts beyond the slots never started: 5 hosts with
    services and the default --parallel 4 (or --parallel 1 and 2 hosts) hung for ever."""
    trace: list[str] = []
    hosts = [work(entry(n, tmp_path), "deploy") for n in "abcde"]
    log = ApplyEvents()
    pipe = Pipeline(hosts, loaded=fleet_of(hosts), connect=connect, builder=Builder(),
                    options=ApplyOptions(limits=Limits(steps=steps)), log=log,
                    kinds=[StagedDeploy(Phase.deploy, trace)])  # fmt: skip

    async def bounded() -> object:
        return await asyncio.wait_for(pipe.run(), timeout=30)

    summary = asyncio.run(bounded())
    assert sorted(trace) == [f"{n}:deploy" for n in "abcde"] and summary.exit_code == 0  # type: ignore[attr-defined]


@dataclass
class SlowOn(RecordingStep):
    """A step that takes longer on some hosts (a proxy far away)."""

    slow: set[str] = field(default_factory=set)

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        if ctx.entry.host.name in self.slow:
            await asyncio.sleep(0.3)
        return await super().apply(ctx, actions)


def test_a_route_moving_to_another_proxy_leaves_its_old_one_only_once_the_new_one_took_it(tmp_path: Path) -> None:
    """A service made public: its route leaves its node's proxy (a) for the edge's (b).  Hosts run in
    parallel, so a removed it while b was adding it, and when b failed the name was served by neither.
    a's removal now waits for b's route phase, and is kept (a's route phase fails, so it stays recorded
    and the next plan removes it again) when b did not take the route."""

    def moving(name: str, kind: str) -> HostWork:
        e = entry(name, tmp_path)
        desired = desired_state(LoadedFleet(root=e.dir, fleet=None, hosts={name: e}))[name]
        action = Action(host=name, phase=PlanPhase.route, kind=kind, subject="route 443/api.example.test", reason="t")
        return HostWork(e, desired, (action,), agent=False)

    trace: list[str] = []
    log, summary = run_pipeline(
        [moving("a", "delete"), moving("b", "create")], [SlowOn(Phase.route, trace, slow={"b"})]
    )
    assert trace == ["b:route", "a:-route"]  # was: a's quick removal first
    assert summary.exit_code == 0  # type: ignore[attr-defined]

    trace.clear()
    failing = SlowOn(Phase.route, trace, fail_on={"b"}, slow={"b"})
    log, summary = run_pipeline([moving("a", "delete"), moving("b", "create")], [failing])
    assert trace == ["b:route"]  # a's removal never ran
    kept = log.outcome("a", Phase.route)
    assert kept is not None and kept.status == Status.failed, kept
    assert kept.message == "route 443/api.example.test kept on a: it moves to b's proxy, which did not take it"
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_a_name_is_pointed_at_another_proxy_only_once_that_proxy_took_its_route(tmp_path: Path) -> None:
    """A service made public: its name's A record (owned by its node a) is pointed at the edge b, whose
    proxy takes the route.  Routes come before the names that lead to them on one host; across hosts a's
    record change now waits for b's route phase, and is left as it was when b did not take the route
    (the name keeps leading to a, whose proxy still carries the route: its removal is kept too)."""

    def host_with(name: str, *acts: tuple[PlanPhase, str, str]) -> HostWork:
        e = entry(name, tmp_path)
        desired = desired_state(LoadedFleet(root=e.dir, fleet=None, hosts={name: e}))[name]
        actions = tuple(Action(host=name, phase=p, kind=k, subject=s, reason="t") for p, k, s in acts)
        return HostWork(e, desired, actions, agent=False)

    def moving() -> list[HostWork]:
        return [
            host_with("a", (PlanPhase.dns, "update", "dns api.example.test")),
            host_with("b", (PlanPhase.route, "create", "route 443/api.example.test")),
        ]

    trace: list[str] = []
    steps = [SlowOn(Phase.route, trace, slow={"b"}), SlowOn(Phase.dns, trace)]
    log, summary = run_pipeline(moving(), steps)
    assert trace == ["b:route", "a:dns"]  # was: a's record changed first
    assert summary.exit_code == 0  # type: ignore[attr-defined]

    trace.clear()
    steps = [SlowOn(Phase.route, trace, fail_on={"b"}, slow={"b"}), SlowOn(Phase.dns, trace)]
    log, summary = run_pipeline(moving(), steps)
    assert trace == ["b:route"]  # a's record was not changed
    kept = log.outcome("a", Phase.dns)
    assert kept is not None and kept.status == Status.failed, kept
    assert kept.message == "dns api.example.test left as it was: its route moves to b's proxy, which did not take it"
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_a_proxy_changes_a_route_to_another_hosts_service_only_once_that_host_deployed(tmp_path: Path) -> None:
    """The edge's route to a service on a worker: hosts run in parallel, so the edge pointed the name at the
    service's new port while the worker was still deploying it there, and kept pointing at it when that
    deploy failed (another service still held the port: the edge sent its requests to that one).  The
    route change now waits for the worker's deploy, and is kept as it was when it did not succeed."""
    from mcfleet.fleet.desired import DesiredRoute

    route = DesiredRoute(hostname="api.example.test", mode="l7", service="api", service_host="worker",
                         backend="127.0.0.1:20001")  # fmt: skip

    def host_with(name: str, phase: PlanPhase, subject: str) -> HostWork:
        e = entry(name, tmp_path)
        desired = desired_state(LoadedFleet(root=e.dir, fleet=None, hosts={name: e}))[name]
        if name == "edge":
            desired = replace(desired, routes={route.key: route})
        action = Action(host=name, phase=phase, kind="update", subject=subject, reason="t")
        return HostWork(e, desired, (action,), agent=False)

    def hosts() -> list[HostWork]:
        return [host_with("worker", PlanPhase.deploy, "service api"),
                host_with("edge", PlanPhase.route, "route 443/api.example.test")]  # fmt: skip

    trace: list[str] = []
    log, summary = run_pipeline(hosts(), [SlowOn(Phase.deploy, trace, slow={"worker"}), SlowOn(Phase.route, trace)])
    assert trace == ["worker:deploy", "edge:route"]  # was: the edge's quick route change first
    assert summary.exit_code == 0  # type: ignore[attr-defined]

    trace.clear()
    failing = SlowOn(Phase.deploy, trace, fail_on={"worker"}, slow={"worker"})
    log, summary = run_pipeline(hosts(), [failing, SlowOn(Phase.route, trace)])
    assert trace == ["worker:deploy"]  # the edge's route was not changed
    kept = log.outcome("edge", Phase.route)
    assert kept is not None and kept.status == Status.failed, kept
    assert (
        kept.message
        == "route 443/api.example.test kept as it was: it leads to api on worker, whose deploy did not succeed"
    )
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_a_removal_waits_for_the_new_proxy_by_name_and_not_when_its_proxy_keeps_the_name(tmp_path: Path) -> None:
    """Made public on another listener at once (9443 on a's proxy -> 443 on b's): matched by the route key,
    a's removal did not wait.  Matched by name, it waits; a name a's proxy keeps a route of does not."""
    from dataclasses import replace as swap

    from mcfleet.fleet.desired import DesiredRoute

    def host_with(name: str, kind: str, key: str, keeps: bool = False) -> HostWork:
        e = entry(name, tmp_path)
        desired = desired_state(LoadedFleet(root=e.dir, fleet=None, hosts={name: e}))[name]
        if keeps:
            own = DesiredRoute("api.example.test", "l4", "api", name, "127.0.0.1:1", 8443)
            desired = swap(desired, routes={own.key: own})
        action = Action(host=name, phase=PlanPhase.route, kind=kind, subject=f"route {key}", reason="t")
        return HostWork(e, desired, (action,), agent=False)

    trace: list[str] = []
    steps = [SlowOn(Phase.route, trace, slow={"b"})]
    run_pipeline(
        [host_with("a", "delete", "9443/api.example.test"), host_with("b", "create", "443/api.example.test")], steps
    )
    assert trace == ["b:route", "a:-route"]  # was: a's removal first

    trace.clear()
    steps = [SlowOn(Phase.route, trace, slow={"b"})]
    work = [
        host_with("a", "delete", "9443/api.example.test", keeps=True),
        host_with("b", "create", "443/api.example.test"),
    ]
    run_pipeline(work, steps)
    assert trace == ["a:-route", "b:route"]  # a keeps serving the name: nothing to wait for


@dataclass
class Buggy(RecordingStep):
    """A kind with a bug on some hosts (an unexpected exception, not a McfleetError)."""

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        if ctx.entry.host.name in self.fail_on:
            raise KeyError("backend")
        return await super().apply(ctx, actions)


def test_a_bug_on_one_host_fails_that_host_saying_where_and_the_others_finish_and_record(tmp_path: Path) -> None:
    """Was: the exception left the gather at once, the apply ended with a traceback while the other hosts
    were mid-way, unrecorded (a test harness hung there for ever)."""
    trace: list[str] = []
    hosts = [work(entry(n, tmp_path), "deploy") for n in "abc"]

    async def bounded() -> tuple[ApplyEvents, object]:
        log = ApplyEvents()
        pipe = Pipeline(hosts, loaded=fleet_of(hosts), connect=connect, builder=Builder(), options=ApplyOptions(),
                        log=log, kinds=[Buggy(Phase.deploy, trace, fail_on={"b"})])  # fmt: skip
        return log, await asyncio.wait_for(pipe.run(), timeout=30)

    log, summary = asyncio.run(bounded())
    assert sorted(trace) == ["a:deploy", "c:deploy"]
    failed = log.outcome("b", Phase.deploy)
    assert failed is not None and failed.status == Status.failed
    assert failed.message.startswith("internal error at ") and "KeyError: 'backend' (a bug in mcfleet" in failed.message
    for ok in "ac":
        written = log.outcome(ok, Phase.manifest)
        assert written is not None and written.status == Status.changed, written
    assert summary.exit_code == 1  # type: ignore[attr-defined]
