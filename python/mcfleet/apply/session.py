"""One apply run from start to end, as a library call (the CLI commands are thin over this).

    async with ApplySession(loaded, options) as s:
        summary = await s.plan_and_apply(names, overrides)        # apply, deploy
        summary = await s.apply_plan(plan, overrides, saved=True)  # apply PLAN
        summary = await s.upgrade(names, overrides)               # agent upgrade
        summary = await s.provision(name, overrides)              # provision

Every run that changes a node goes through the same refusal gate: the hosts are
observed and planned first (plan.planner.plan_fleet) and a plan with an open
refusal is refused before anything is written.  The session owns what a run
shares: the SSH pool (one connection per host, used for observing and applying),
the builder (each target built once), the desired state (computed once, with the
agent hashes of the build), the event log with its listeners (progress view,
NDJSON), and the journal record written at the end, whatever the outcome.  The
fleet lock is taken by the caller around the whole session.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from mcfleet.apply import journal
from mcfleet.apply.artifact_key import build_key
from mcfleet.apply.artifacts import Artifact, Builder
from mcfleet.apply.events import ApplyEvents, Listener, Phase, Status
from mcfleet.apply.migrate import MoveWork, moves_from_plan
from mcfleet.apply.pipeline import ApplyOptions, HostWork, Pipeline
from mcfleet.apply.planwork import Override, check_refusals, planned_agent_sha, work_from_plan
from mcfleet.apply.provision import provision_host
from mcfleet.apply.summary import Summary, summarize
from mcfleet.bundle.build import build_agent_bundle_async, current_inputs_hash
from mcfleet.errors import Interrupted, McfleetError, Refused
from mcfleet.fleet.desired import DesiredHost, desired_state
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.kinds import KINDS, ResourceKind
from mcfleet.kinds.system import add_closure_diffs
from mcfleet.observe.facts import Facts, Unreachable
from mcfleet.plan.model import Plan
from mcfleet.plan.planner import plan_fleet
from mcfleet.plan.saved import (
    REPLAN_HINT,
    ensure_fresh,
    ensure_same_actions,
    ensure_same_agent_sources,
    ensure_same_systems,
)
from mcfleet.report.progress import NullProgress, Progress
from mcfleet.transport.base import Node
from mcfleet.transport.ssh import SshOptions, SshPool


@dataclass
class SessionOptions:
    apply: ApplyOptions = field(default_factory=ApplyOptions)
    ssh: SshOptions = field(default_factory=SshOptions)
    bundle: Path | None = None
    command: str = "apply"
    listeners: list[Listener] = field(default_factory=list)
    progress: Progress = field(default_factory=NullProgress)


async def build_pex(step: Callable[[str], None]) -> Artifact:
    """The agent PEX from mcfleet.bundle (cached by its inputs hash: rebuilt only when they change)."""
    bundle = await build_agent_bundle_async(step=step)
    return Artifact("pex", bundle.path, bundle.sha256, bundle.version, cached=bundle.cached)


# A build that ends within this is not worth a progress line (a cached agent bundle: ~70 ms).
BUILD_QUIET_S = 0.5


def _identity(art: Artifact) -> str:
    """What the plan compares with the node: the agent's sha256, or a NixOS system's store path."""
    return art.store_path or art.sha256


class ApplySession:
    def __init__(self, loaded: LoadedFleet, options: SessionOptions) -> None:
        self.loaded = loaded
        self.options = options
        self.pool = SshPool(options.ssh, hosts=loaded.hosts)
        self.builder = Builder(bundle=options.bundle, build_pex=build_pex, flake=loaded.root, report=self._build_report)
        self._waiting: dict[str, list[str]] = {}  # build key -> the hosts that wait for that build
        self.log = ApplyEvents([*options.listeners, self._to_progress])
        self.started = time.monotonic()
        self.plan: Plan | None = None
        self.agent_hashes: dict[str, str] = {}  # host -> sha256 of the agent built for it (NixOS: toplevel path)
        self._fresh_pools: list[SshPool] = []
        self.desired: dict[str, DesiredHost] = desired_state(loaded)
        # (host, message) of the build progress held during prebuild's quiet time; None: shown at once
        self._held: list[tuple[str, str]] | None = None

    async def __aenter__(self) -> ApplySession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.pool.close()
        for pool in self._fresh_pools:
            await pool.close()

    def _to_progress(self, event: Any) -> None:
        if event.status == Status.progress:  # a long step's progress: `push 12.3/22.0 MB`, nix's last line
            self.options.progress.update(event.host, str(event.phase), event.message)
        elif event.status == Status.start:
            self.options.progress.update(event.host, f"{event.phase}…")
        elif event.status.bad:
            self.options.progress.done(event.host, ok=False, detail=f"{event.phase} {event.status}: {event.message}")
        elif event.phase == Phase.manifest and event.status != Status.skipped:
            self.options.progress.done(event.host, ok=True, detail=f"manifest {event.status}")
        else:
            self.options.progress.update(event.host, f"{event.phase} {event.status}", event.message)

    def _build_report(self, key: str, message: str) -> None:
        """A build's progress (bundle steps, nix's lines) is an event of every host waiting for it."""
        for name in self._waiting.get(key, ()):
            self._build_note(name, message)

    def _build_note(self, name: str, message: str) -> None:
        if self._held is not None:
            self._held.append((name, message))
        else:
            self.log.emit(name, Phase.build, Status.progress, message)

    def _release_held(self) -> None:
        """The quiet time is over and a build still runs: show what was held, and go live."""
        held, self._held = self._held or [], None
        for name, message in held:
            self.log.emit(name, Phase.build, Status.progress, message)

    async def connect(self, entry: HostEntry) -> Node:
        return await self.pool.connect(entry)

    async def fresh_connect(self, entry: HostEntry) -> Node:
        """A NEW SSH connection (its own pool, closed with the session): NixOS confirms over it,
        which proves the newly activated system still accepts SSH logins."""
        pool = SshPool(self.options.ssh, hosts=self.loaded.hosts)
        self._fresh_pools.append(pool)
        return await pool.connect(entry)

    # ------------------------------------------------------------------ building before planning

    async def prebuild(self, names: list[str]) -> dict[str, Artifact]:
        """Build what the selected hosts need, so the plan knows the agent hash to compare with.

        The live view says what the wait is for (a first bundle build takes ~15 s, a nix build
        minutes), but only once it has lasted BUILD_QUIET_S: a bundle found in the cache is ready in
        ~70 ms, and its "preparing", "hashing its inputs" and "ready" lines were noise before every
        apply.  What the builds said meanwhile is shown then, in order."""
        built: dict[str, Artifact] = {}
        for name in names:
            waiting = self._waiting.setdefault(build_key(self.loaded.hosts[name].host), [])
            if name not in waiting:
                waiting.append(name)
        self._held = []
        release = asyncio.get_running_loop().call_later(BUILD_QUIET_S, self._release_held)
        try:
            for name in names:
                entry = self.loaded.hosts[name]
                key = build_key(entry.host)
                news = key not in built and self.builder.built(entry.host) is None
                if news:
                    self._build_note(name, f"{key}: preparing (built once, then cached)")
                try:
                    built[key] = await self.builder.build(entry.host)
                except McfleetError:
                    continue  # reported per host by the pipeline's build phase
                if news:
                    self._build_note(name, f"{key}: ready")
        finally:
            release.cancel()
            self._held = None  # done within the quiet time: what it said is dropped
        self.agent_hashes = {
            name: _identity(built[build_key(self.loaded.hosts[name].host)])
            for name in names
            if build_key(self.loaded.hosts[name].host) in built
        }
        self.desired = desired_state(self.loaded, self.agent_hashes)
        return built

    async def observe_and_plan(
        self, names: list[str], kinds: list[ResourceKind] | None = None
    ) -> tuple[Plan, dict[str, Facts | Unreachable]]:
        plan, facts = await plan_fleet(
            self.loaded, names, pool=self.pool, progress=self.options.progress, desired=self.desired,
            kinds=KINDS if kinds is None else kinds,
        )  # fmt: skip
        await add_closure_diffs(plan)  # NixOS: package changes when both systems are in the local store
        return plan, facts

    async def plan_and_apply(self, names: list[str], overrides: list[Override]) -> Summary:
        """Build, observe, plan and apply in one go (`apply` without a plan file, `deploy`)."""
        await self.prebuild(names)
        plan, _facts = await self.observe_and_plan(names)
        return await self.apply_plan(plan, overrides, saved=False)

    async def gate(self, names: list[str], overrides: list[Override]) -> Plan:
        """The refusal gate for commands that change a node without a full plan (host and agent kinds)."""
        plan, _facts = await self.observe_and_plan(names, [k for k in KINDS if k.phase in (Phase.host, Phase.agent)])
        self.plan = plan
        check_refusals(plan, overrides)
        if plan.unreachable:
            name, why = next(iter(plan.unreachable.items()))
            raise Refused(f"{name} is unreachable: {why.reason}", location=name, hint=why.hint)
        return plan

    async def upgrade(self, names: list[str], overrides: list[Override]) -> Summary:
        """`agent upgrade`: push and activate the agent on every host, after the refusal gate."""
        await self.prebuild(names)
        plan = await self.gate(names, overrides)
        work = [
            HostWork(
                self.loaded.hosts[n], self.desired[n], tuple(a for a in plan.for_host(n) if a.phase == Phase.agent)
            )
            for n in names
        ]
        return await self.run(work)

    async def provision(self, name: str, overrides: list[Override]) -> Summary:
        """`provision`: users, folders, resolvers, then the agent, after the refusal gate."""
        await self.prebuild([name])
        plan = await self.gate([name], overrides)
        actions = tuple(a for a in plan.for_host(name) if a.kind != "refuse")
        return await self.run([HostWork(self.loaded.hosts[name], self.desired[name], actions, provision=True)])

    # ------------------------------------------------------------------ runs

    async def apply_plan(self, plan: Plan, overrides: list[Override], *, saved: bool) -> Summary:
        """Run a plan (made now, or loaded from a file and checked for staleness first)."""
        self.plan = plan
        if saved and self.options.bundle is None:  # with --bundle, the given file is compared after hashing it
            ensure_same_agent_sources(plan, current_inputs_hash)
        await self.prebuild(list(plan.hosts))
        if saved:
            now, facts = await plan_fleet(
                self.loaded, list(plan.hosts), pool=self.pool, progress=self.options.progress, desired=self.desired
            )
            ensure_fresh(plan, facts)
            self._check_planned_bundle(plan)
            ensure_same_systems(plan, now)  # first: a system built differently also differs in its action's values
            ensure_same_actions(plan, now)
        check_refusals(plan, overrides)
        work = work_from_plan(plan, self.loaded, self.desired)
        summary = await self.run(work, moves_from_plan(plan))
        gone = await self._remove_gone_records(plan)
        summary = self._with_idle_and_unreachable(summary, plan, {w.name for w in work}, gone)
        return replace(summary, not_read=tuple((u.host, str(u.phase), u.reason) for u in plan.unobserved))

    def _check_planned_bundle(self, plan: Plan) -> None:
        for name in plan.hosts:
            want = planned_agent_sha(plan, name)
            if want is None or name not in self.loaded.hosts:
                continue
            art = self.builder.built(self.loaded.hosts[name].host)
            have = art.sha256 if art else None
            if have is not None and have != want:
                raise Refused(
                    f"stale plan: it installs agent {want[:12]} on {name} but the bundle built now is {have[:12]}",
                    location=name,
                    hint=REPLAN_HINT,
                )

    async def run(self, work: list[HostWork], moves: Sequence[MoveWork] = ()) -> Summary:
        fleet = self.loaded.fleet

        async def provisioner(node: Node, entry: HostEntry) -> tuple[bool, str]:
            return await provision_host(node, entry, fleet)

        pipeline = Pipeline(
            work,
            loaded=self.loaded,
            connect=self.connect,
            builder=self.builder,
            options=self.options.apply,
            log=self.log,
            provisioner=provisioner,
            fresh_connect=self.fresh_connect,
            hosts=self.loaded.hosts,
            moves=moves,
            desired=self.desired,
        )
        return await pipeline.run()

    async def _remove_gone_records(self, plan: Plan) -> list[str]:
        """The DNS records of hosts gone from hosts/ that the plan removes (plan.gone_records), each such host's
        as one dns step after the declared hosts' work; a removal verified at the server leaves the checkout's
        note of that host.  Returns the hosts it ran for."""
        from mcfleet.plan.gone import note_records_removed
        from mcfleet.plan.gone_records import gone_record_actions
        from mcfleet.providers.steps import StepBroken, apply_dns

        actions = [a for a in gone_record_actions(plan) if a.kind != "refuse"]
        hosts = list(dict.fromkeys(a.host for a in actions))
        for host in hosts:
            mine = [a for a in actions if a.host == host]
            self.log.emit(host, Phase.dns, Status.start)
            try:
                step = await apply_dns(self.loaded, None, mine)
            except StepBroken as cut:  # removals only: nothing made to record, the error itself goes on
                raise cut.cause from None
            self.log.emit(host, Phase.dns, Status(step.status), step.message)
            if step.status == "changed":
                note_records_removed(self.loaded.root, host, (a.subject.removeprefix("dns ") for a in mine))
        return hosts

    def _with_idle_and_unreachable(
        self, summary: Summary, plan: Plan, busy: set[str], gone: Sequence[str] = ()
    ) -> Summary:
        """Every host of the plan appears: idle ones as unchanged, unobservable ones as failed; and the hosts
        gone from hosts/ whose records were removed."""
        idle = [h for h in plan.hosts if h not in busy and h not in plan.unreachable]
        if not idle and not plan.unreachable and not gone:
            return summary
        for name in idle:
            refused = [a.subject for a in plan.for_host(name) if a.kind == "refuse"]
            note = f" (overridden refusal: {', '.join(refused)})" if refused else ""
            self.log.emit(name, Phase.manifest, Status.unchanged, f"nothing to do{note}")
        for name, why in plan.unreachable.items():
            hint = f" (hint: {why.hint})" if why.hint else ""  # e.g. the sudo/doas rule to add
            # the failure is observing the host (its first phase), before any change: say so, not "manifest"
            self.log.emit(
                name, Phase.host, Status.failed, f"could not observe the host, nothing changed: {why.reason}{hint}"
            )
        hosts = [h for h in plan.hosts if h in busy or h in idle or h in plan.unreachable] + list(gone)
        phases = {h.host: [p.phase for p in h.phases] for h in summary.hosts}
        phases.update({h: [Phase.manifest] for h in idle})
        phases.update({h: [Phase.host] for h in plan.unreachable})
        phases.update({h: [Phase.dns] for h in gone})
        return summarize(self.log, hosts, phases, time.monotonic() - self.started)

    # ------------------------------------------------------------------ journal

    def record(self, summary: Summary | None, error: McfleetError | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "command": self.options.command,
            "argv": sys.argv[1:],
            "root": str(self.loaded.root),
            "plan_created_at": self.plan.created_at if self.plan else None,
            "plan_fleet_hash": self.plan.fleet_hash if self.plan else None,
        }
        if summary is None and self.plan is not None:  # refused or failed before any host ran: its plan's hosts
            entry["hosts"] = list(self.plan.hosts)
        if summary is not None:
            entry["result"] = summary.as_dict()
        if error is not None:
            entry["error"] = error.as_dict()
        return journal.append(self.loaded.root, entry)

    def record_interrupted(self) -> dict[str, Any]:
        """Journal a run stopped at Ctrl-C, with each host's phases as far as they got (one that started
        and never ended says so): the journal is where an operator looks for what a run did."""
        hosts = list(dict.fromkeys(e.host for e in self.log.events if e.host))
        phases = {h: [e.phase for e in self.log.events if e.host == h] for h in hosts}
        seconds = time.monotonic() - self.started
        summary = replace(summarize(self.log, hosts, phases, seconds), interrupted=True)
        return self.record(summary, Interrupted(f"stopped at Ctrl-C after {seconds:.1f} s (what finished is kept)"))
