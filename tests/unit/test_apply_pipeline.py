"""Pipeline ordering, concurrency limits, --keep-going / --fail-fast, build-before-activate (local nodes)."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcfleet.apply.artifacts import BuildBlocked, Builder
from mcfleet.apply.events import EventLog, Phase, Status
from mcfleet.apply.pipeline import ApplyOptions, HostWork, Limits, Pipeline
from mcfleet.apply.steps import StepContext, StepOutcome
from mcfleet.fleet.load import HostEntry, load_fleet
from mcfleet.fleet.models import Host
from mcfleet.transport.base import Unreachable
from mcfleet.transport.local import LocalRunner

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
            "agent": {"path": f"{srv}/{name}/mcp-agent", "socket": f"{srv}/{name}/mcp-agent.sock"},
        }
    )
    return HostEntry(host, (), srv)


@dataclass
class RecordingStep:
    """A real step (it writes a file on the node) that records the order it ran in."""

    phase: Phase
    trace: list[str]
    fail_on: set[str] = field(default_factory=set)
    running: int = 0
    peak: int = 0

    async def run(self, ctx: StepContext) -> StepOutcome:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        self.trace.append(f"{ctx.entry.host.name}:{self.phase}")
        if ctx.entry.host.name in self.fail_on:
            return StepOutcome("failed", "boom")
        res = await ctx.node.run(f"mkdir -p {ctx.entry.dir}/{ctx.entry.host.name} && echo ok")
        ctx.manifest.setdefault("steps", []).append(str(self.phase))
        return StepOutcome("changed", res.stdout.strip())


async def connect(e: HostEntry) -> LocalRunner:
    if e.host.name.startswith("down"):
        raise Unreachable("no address answered", location=e.host.name)
    return LocalRunner(e.host.name)


def run_pipeline(work: list[HostWork], steps: list[RecordingStep], **opts: object) -> tuple[EventLog, object]:
    log = EventLog()
    options = ApplyOptions(**opts)  # type: ignore[arg-type]
    pipe = Pipeline(work, connect=connect, builder=Builder(), options=options, log=log, steps=list(steps))
    return log, asyncio.run(pipe.run())


def test_steps_run_in_phase_order_per_host_and_write_the_manifest(tmp_path: Path) -> None:
    trace: list[str] = []
    steps = [RecordingStep(p, trace) for p in (Phase.route, Phase.deploy, Phase.dns, Phase.cert)]
    work = [HostWork(entry("a", tmp_path), agent=False, steps=frozenset({"deploy", "cert", "dns", "route"}))]
    log, summary = run_pipeline(work, steps)
    assert [t for t in trace if t.startswith("a:")] == ["a:deploy", "a:cert", "a:dns", "a:route"]
    assert summary.exit_code == 0  # type: ignore[attr-defined]
    assert log.outcome("a", Phase.manifest).status == Status.changed  # type: ignore[union-attr]
    manifest = (tmp_path / "a" / "mcfleet-state.json").read_text()
    assert '"steps": [' in manifest and '"deploy"' in manifest


def test_keep_going_lets_other_hosts_finish_and_exits_1(tmp_path: Path) -> None:
    trace: list[str] = []
    steps = [RecordingStep(Phase.deploy, trace, fail_on={"b"}), RecordingStep(Phase.dns, trace)]
    work = [HostWork(entry(n, tmp_path), agent=False, steps=frozenset({"deploy", "dns"})) for n in "abc"]
    log, summary = run_pipeline(work, steps)
    assert "a:dns" in trace and "c:dns" in trace and "b:dns" not in trace
    assert log.outcome("b", Phase.dns).status == Status.skipped  # type: ignore[union-attr]
    assert "earlier phase" in log.outcome("b", Phase.dns).message  # type: ignore[union-attr]
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_fail_fast_stops_phases_not_yet_started(tmp_path: Path) -> None:
    trace: list[str] = []
    # every host would fail; with one step at a time, the first failure must stop the other three
    steps = [RecordingStep(Phase.deploy, trace, fail_on=set("abcd")), RecordingStep(Phase.dns, trace)]
    work = [HostWork(entry(n, tmp_path), agent=False, steps=frozenset({"deploy", "dns"})) for n in "abcd"]
    log, summary = run_pipeline(work, steps, fail_fast=True, limits=Limits(steps=1))
    assert len(trace) == 1 and trace[0].endswith(":deploy")
    stopped = {e.host for e in log.events if e.status == Status.skipped and "fail-fast" in e.message}
    assert stopped == set("abcd") - {trace[0][0]}, [e.line() for e in log.events]
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_phase_limit_bounds_concurrency(tmp_path: Path) -> None:
    trace: list[str] = []
    step = RecordingStep(Phase.deploy, trace)
    work = [HostWork(entry(f"h{i}", tmp_path), agent=False, steps=frozenset({"deploy"})) for i in range(6)]
    run_pipeline(work, [step], limits=Limits(steps=2))
    assert len(trace) == 6 and step.peak == 2


def test_unreachable_host_fails_alone(tmp_path: Path) -> None:
    trace: list[str] = []
    work = [HostWork(entry(n, tmp_path), agent=False, steps=frozenset({"deploy"})) for n in ("a", "down1")]
    log, summary = run_pipeline(work, [RecordingStep(Phase.deploy, trace)])
    assert trace == ["a:deploy"]
    assert "no address answered" in log.outcome("down1", Phase.manifest).message  # type: ignore[union-attr]
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_planned_step_without_implementation_is_blocked_not_faked(tmp_path: Path) -> None:
    work = [HostWork(entry("a", tmp_path), agent=False, steps=frozenset({"route"}))]
    log, summary = run_pipeline(work, [])
    event = log.outcome("a", Phase.route)
    assert event is not None and event.status == Status.blocked and "no route step" in event.message
    assert summary.exit_code == 1  # type: ignore[attr-defined]


def test_nixos_build_is_blocked_and_nothing_is_activated_before_builds_end(tmp_path: Path) -> None:
    work = [HostWork(entry("rift", tmp_path, os="nixos")), HostWork(entry("deb", tmp_path))]
    log, summary = run_pipeline(work, [], fail_fast=True)
    rift = log.outcome("rift", Phase.build)
    assert rift is not None and rift.status == Status.blocked and "flake" in rift.message
    deb = log.outcome("deb", Phase.build)
    assert deb is not None and deb.status == Status.blocked  # no bundle builder given: blocked, never faked
    assert not any(e.phase in (Phase.push, Phase.activate) and e.status == Status.start for e in log.events)
    assert not (tmp_path / "deb").exists()  # nothing touched any node
    assert summary.exit_code == 1  # type: ignore[attr-defined]


@pytest.mark.nix
def test_nixos_agent_closure_is_really_built_with_nix_or_reported_blocked(repo_root: Path) -> None:
    """The real `nix build` of the flake's agent closure: here nixpkgs cannot be fetched, so: blocked, with why."""
    if shutil.which("nix") is None:
        pytest.skip("nix is not installed (apt-get install nix-bin)")
    loaded = load_fleet(repo_root)
    rift = loaded.hosts["rift"].host
    with pytest.raises(BuildBlocked) as err:
        asyncio.run(Builder(flake=repo_root).build(rift))
    text = err.value.format()
    assert "rift: build" in text
    assert "`nix build` of the agent closure cannot run here" in text or "not implemented yet" in text


def test_planned_user_changes_on_nixos_are_blocked_not_done(tmp_path: Path) -> None:
    from mcfleet.apply.provision import provision_host

    async def provisioner(node: LocalRunner, e: HostEntry) -> tuple[bool, str]:
        return await provision_host(node, e, None)

    log = EventLog()
    work = [HostWork(entry("rift", tmp_path, os="nixos"), agent=False, provision=True)]
    pipe = Pipeline(work, connect=connect, builder=Builder(), options=ApplyOptions(), log=log, provisioner=provisioner)
    summary = asyncio.run(pipe.run())
    event = log.outcome("rift", Phase.provision)
    assert event is not None and event.status == Status.blocked and "NixOS configuration" in event.message
    assert summary.exit_code == 1
    assert not (tmp_path / "rift").exists()
