"""The apply pipeline: build everything selected, then per host, in parallel,

    [provision] → push → activate (+health, rollback) → deploy → cert → dns → route → manifest

The host kind runs as `provision`, the agent kind as build/push/activate (every
build ends before any activation, so a build error never leaves half a fleet
upgraded); then every other resource kind with planned actions runs its `apply`
with exactly those actions, in phase order; at the end every kind's `record`
writes its part of the manifest.  Reads as plain code, one step after another.  Each phase has its own concurrency
limit (a semaphore); every phase start and end is an event (see events.py), and
the summary is built from those events.  A failure stops the later phases of that
host only (`--keep-going`, the default) or every host's phases that have not
started yet (`--fail-fast`).  Nothing is activated before every build succeeded
or was reported blocked, so a build error never leaves half a fleet upgraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, TypeVar

from mcfleet.apply import nixos
from mcfleet.apply.activate import ActivateOptions, activate, probe_ready
from mcfleet.apply.artifacts import Artifact, BuildBlocked, Builder
from mcfleet.apply.events import ApplyEvents, Phase, Status
from mcfleet.apply.lock import hold_node_lock
from mcfleet.apply.migrate import MoveWork, carry_out, kept_for_moves
from mcfleet.apply.nodeio import write_manifest
from mcfleet.apply.probe import probe
from mcfleet.apply.provision import with_folders
from mcfleet.apply.push import PushReport, push_agent
from mcfleet.apply.summary import Summary, summarize
from mcfleet.errors import McfleetError, Refused
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.kinds import HEAD_PHASES, KINDS, ApplyContext, ResourceKind
from mcfleet.kinds.base import MADE, PLANNED
from mcfleet.kinds.host import HostKind, read_users
from mcfleet.kinds.stages import StageGate
from mcfleet.observe.manifest import Manifest
from mcfleet.plan.gone import note_written
from mcfleet.plan.model import Action, apply_passes, is_removal
from mcfleet.plan.route_moves import keeps_name, named
from mcfleet.report.rate import Every
from mcfleet.transport.base import Node

Connect = Callable[[HostEntry], Awaitable[Node]]
# provision(node, entry) -> (changed?, message); raises McfleetError (Refused...) on failure
Provisioner = Callable[[Node, HostEntry], Awaitable[tuple[bool, str]]]


# The kinds apply runs after the agent is active (host and agent have their own phases above).
HEAD_KINDS: list[ResourceKind] = [k for k in KINDS if k.phase in HEAD_PHASES]
STEP_KINDS: list[ResourceKind] = [k for k in KINDS if k.phase not in HEAD_PHASES]


@dataclass(frozen=True)
class HostWork:
    """What the apply does on one host: the planned actions (a step never diffs again)."""

    entry: HostEntry
    desired: DesiredHost
    actions: tuple[Action, ...] = ()
    agent: bool = True  # run the agent kind's build, push, activate
    provision: bool = False  # run the host kind's provisioning
    # services whose planned change was refused (and overridden): they keep the definition the agent holds
    held: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.entry.host.name

    def actions_for(self, phase: Phase) -> list[Action]:
        return [a for a in self.actions if a.phase == phase and a.kind != "refuse"]

    @property
    def step_passes(self) -> list[tuple[Phase, list[Action]]]:
        """The post-activation kinds' actions as apply runs them (the passes the plan's text shows): changes
        in phase order, then removals in reverse phase order (DNS, routes, then containers)."""
        passes = [(p, [a for a in acts if a.kind != "refuse"]) for p, _removal, acts in apply_passes(self.actions)]
        return [(p, acts) for p, acts in passes if acts and p not in HEAD_PHASES]

    @property
    def step_phases(self) -> list[Phase]:
        """The post-activation phases in the order they first run (a phase with only removals at its removal
        pass's place): the order the summary lists them in."""
        return list(dict.fromkeys(p for p, _acts in self.step_passes))


@dataclass(frozen=True)
class Limits:
    build: int = 2
    push: int = 4
    activate: int = 4
    steps: int = 4


@dataclass(frozen=True)
class ApplyOptions:
    fail_fast: bool = False
    activate: ActivateOptions = field(default_factory=ActivateOptions)
    nixos_goal: str = "switch"  # switch-to-configuration goal on NixOS hosts: switch, boot, test, dry-activate
    stage_timeout: float = 0.0  # seconds a deploy's boot stage may take to get healthy; 0: the agent's default
    limits: Limits = field(default_factory=Limits)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Refused):
        return f"refused: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")
    if isinstance(exc, McfleetError):
        return exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


def _internal(exc: Exception) -> str:
    """An unexpected error, with the innermost mcfleet line it came from (for the report)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/mcfleet/" in f.filename]
    where = f" at {frames[-1].filename.rpartition('/mcfleet/')[2]}:{frames[-1].lineno}" if frames else ""
    said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"internal error{where}: {said} (a bug in mcfleet: please report it with this line)"


# NixOS goals after which the later steps (files, deploy, cert, DNS, route, the manifest) do not run:
# the running system did not change, so they would meet the old one, and the manifest would record a
# state the node does not have.
GOAL_STOPS_AFTER_SWITCH = {
    "dry-activate": "--goal dry-activate: a dry run, nothing else is changed",
    "boot": "--goal boot: the new system starts at the next boot; apply again after it for the later steps",
}


class HostFailed(Exception):
    """Internal: this host's remaining phases are skipped."""


T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """`work` awaited to its end even when this task is cancelled meanwhile (Ctrl-C, or a second cancel of a
    task already recording what it did); the cancellation is raised once `work` has ended.  A manifest
    write is never cut half-way: the node keeps either the manifest before or the one written."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # `work` itself was cancelled (the event loop shutting down): nothing left to wait for
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


class CtrlCHeld:
    """While an apply records what it did in a node's manifest, a Ctrl-C waits for the write to end, then
    stops the run as it would have (asyncio's handler: the first cancels, a later one raises
    KeyboardInterrupt); a second Ctrl-C meanwhile stops it at once.  Only the main thread handles signals:
    elsewhere this does nothing."""

    def __init__(self) -> None:
        self.depth = 0
        self.pressed = 0
        self.previous: Any = None
        self.released = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        if self.depth == 0:
            self.previous, self.pressed, self.released = signal.getsignal(signal.SIGINT), 0, False
            if self.previous is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, self._press)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and not self.released:
                self.released = True
                if self.previous is not signal.SIG_IGN:
                    signal.signal(signal.SIGINT, self.previous)
                if self.pressed and self.previous not in (signal.SIG_IGN, None):
                    signal.raise_signal(signal.SIGINT)  # the Ctrl-C held back, now that the manifest is written

    def _press(self, signum: int, frame: FrameType | None) -> None:
        self.pressed += 1
        if self.pressed == 1:
            sys.stderr.write("\nrecording what finished in the manifest on the node; Ctrl-C again to stop at once\n")
            return
        self.released = True  # a second Ctrl-C: the user does not want to wait
        signal.signal(signal.SIGINT, self.previous)
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous is not None:
            signal.raise_signal(signal.SIGINT)


CTRL_C = CtrlCHeld()


class Pipeline:
    def __init__(
        self,
        work: list[HostWork],
        *,
        loaded: LoadedFleet,
        connect: Connect,
        builder: Builder,
        options: ApplyOptions,
        log: ApplyEvents,
        provisioner: Provisioner | None = None,
        kinds: Sequence[ResourceKind] | None = None,
        fresh_connect: Connect | None = None,
        hosts: Mapping[str, HostEntry] | None = None,
        moves: Sequence[MoveWork] = (),
        desired: Mapping[str, DesiredHost] | None = None,
    ) -> None:
        self.work = work
        self.moves = list(moves)  # services moved between hosts: after every host's own apply
        self.desired = desired or {w.name: w.desired for w in work}  # the whole desired state (moves need it)
        self.loaded = loaded
        self.connect = connect
        self.fresh_connect = fresh_connect or connect  # NixOS confirms over a NEW connection
        self.hosts = hosts or {}  # the fleet: an `ssh.jump` naming a fleet host (nix copy goes through it too)
        self.builder = builder
        self.options = options
        self.log = log
        self.provisioner = provisioner
        self.kinds = {k.phase: k for k in (STEP_KINDS if kinds is None else kinds)}
        limits = options.limits
        self.sem = {
            Phase.build: asyncio.Semaphore(limits.build),
            Phase.push: asyncio.Semaphore(limits.push),
            Phase.activate: asyncio.Semaphore(limits.activate),
            Phase.provision: asyncio.Semaphore(limits.activate),
        }
        self.step_sem = asyncio.Semaphore(limits.steps)
        self.stop = asyncio.Event()  # set on the first failure under --fail-fast
        self.stages = StageGate(
            w.name for w in work if any(p == Phase.deploy and not is_removal(a[0]) for p, a in w.step_passes)
        )
        # A route that moves between proxies (a service made public goes from its node's proxy to the
        # edge's): its old host removes it, and points the name's A record at the new host, only once
        # the new host's proxy took it, or the name would be served by neither.  hostname -> the host
        # adding a route of it; host -> whether its route changes succeeded.
        self.name_dest = {named(a): w.name for w in work for a in w.actions_for(Phase.route) if a.kind != "delete"}
        self.routes_added: dict[str, asyncio.Future[bool]] = {}
        # A route a proxy adds or changes leads to a service's port on its host: when that host deploys in this
        # apply, the proxy waits for its deploy, or it would send requests to a port nothing (or, after a port
        # move, another service) listens on; after a failed deploy the route is kept as it was.
        self.deploying = {
            w.name for w in work if any(p == Phase.deploy and not is_removal(a[0]) for p, a in w.step_passes)
        }
        self.deployed: dict[str, asyncio.Future[bool]] = {}

    def phases(self, w: HostWork) -> list[Phase]:
        out = [Phase.provision] if w.provision else []
        if w.agent:
            out += [Phase.build, Phase.push, Phase.activate]
        return [*out, *w.step_phases, Phase.manifest]

    async def run(self) -> Summary:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self.routes_added = {host: loop.create_future() for host in set(self.name_dest.values())}
        self.deployed = {host: loop.create_future() for host in self.deploying}
        artifacts = await self._build_all()
        if not (self.options.fail_fast and self.stop.is_set()):
            await asyncio.gather(*(self._host(w, artifacts.get(w.name)) for w in self.work))
        if self.moves:
            await carry_out(self.moves, loaded=self.loaded, desired=self.desired, connect=self.connect, log=self.log,
                            ready=self._move_ready)  # fmt: skip
        per_host = {w.name: self.phases(w) for w in self.work}
        for move in self.moves:
            for host in (move.source, move.dest):
                per_host[host] = [*per_host.get(host, []), Phase.migrate]
        return summarize(self.log, list(per_host), per_host, time.monotonic() - started)

    # ------------------------------------------------------------------ build (all before any activation)

    async def _build_all(self) -> dict[str, Artifact | None]:
        async def one(w: HostWork) -> tuple[str, Artifact | None]:
            async with self.sem[Phase.build]:
                self.log.emit(w.name, Phase.build, Status.start)
                try:
                    art = await self.builder.build(w.entry.host)
                except BuildBlocked as exc:
                    self.log.emit(w.name, Phase.build, Status.blocked, _reason(exc))
                    self._failed()
                    return w.name, None
                except Exception as exc:
                    self.log.emit(w.name, Phase.build, Status.failed, _reason(exc))
                    self._failed()
                    return w.name, None
            status, how = (Status.unchanged, "cached") if art.cached else (Status.changed, "built")
            self.log.emit(w.name, Phase.build, status, f"{art.key} {art.sha256[:12]} ({how})", sha256=art.sha256)
            return w.name, art

        results = await asyncio.gather(*(one(w) for w in self.work if w.agent))
        return dict(results)

    def _move_ready(self, move: MoveWork) -> str | None:
        """Why a move cannot run now: the source's or the destination's own apply did not succeed."""
        if self.options.fail_fast and self.stop.is_set():
            return "stopped: a host failed (--fail-fast)"
        for w in self.work:
            if w.name in (move.source, move.dest) and any(
                (e := self.log.outcome(w.name, p)) is not None and e.status.bad for p in self.phases(w)
            ):
                return f"the apply on {w.name} did not succeed"
        return None

    def _failed(self) -> None:
        if self.options.fail_fast:
            self.stop.set()

    # ------------------------------------------------------------------ one host

    async def _host(self, w: HostWork, art: Artifact | None) -> None:
        ctx: ApplyContext | None = None  # set once the node is read: what a failure can still record
        try:
            if w.agent and art is None:
                raise HostFailed  # build failed or blocked: already reported
            first = self._first_phase(w)
            node = await self._phase(w, first, self.connect(w.entry))
            await self._phase(w, first, hold_node_lock(node))  # held until the connection closes
            # read (and refuse a node without systemd, or with a corrupt manifest) before anything is written
            check = probe_ready(node, w.entry.host, first.value) if w.agent else probe(node, w.entry.host)
            state = await self._phase(w, first, check)
            ctx = ApplyContext(
                self.loaded, w.entry, node, w.desired, state.manifest or Manifest(),
                {"stage_gate": self.stages, "stage_timeout": self.options.stage_timeout, "held_services": w.held},
            )  # fmt: skip
            if w.provision:
                await self._provision(w, node, ctx)
            if w.agent and art is not None and art.store_path is not None:
                await self._nixos(w, node, art.store_path)
                if (held := GOAL_STOPS_AFTER_SWITCH.get(self.options.nixos_goal)) is not None:
                    self._skip_rest(w, held)
                    return
            elif w.agent and art is not None:
                await self._agent(w, node, state, art, ctx)
            await self._steps(w, ctx)
            await self._record(w, ctx, state.manifest)
        except HostFailed:
            if ctx is not None and self.log.outcome(w.name, Phase.manifest) is None:
                await self._record_after_failure(w, ctx)
            self._skip_rest(w)
        except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: what finished is recorded, then the run stops
            if ctx is not None and self.log.outcome(w.name, Phase.manifest) is None:
                await self._record_after_failure(w, ctx, cause="the interruption")
            raise
        finally:
            await self.stages.withdraw(w.name)  # nobody waits at a boot stage for a host that is done
            self._routes_settled(w.name, ok=False)  # nobody waits for routes of a host that never added them
            self._deploy_settled(w.name, ok=False)  # nor for the deploy of a host that never ran it

    async def _nixos(self, w: HostWork, node: Node, toplevel: str) -> None:
        """NixOS: copy the system closure (push), then profile + switch + health + confirm (activate)."""
        entry = w.entry
        async with self.sem[Phase.push]:
            self._check_stop()
            self.log.emit(w.name, Phase.push, Status.start)
            address = str(getattr(node, "address", "") or entry.host.addresses[0])
            jump = nixos.jump_of(entry, self.hosts)
            every = Every()

            def on_line(line: str) -> None:  # nix copy: which path it is copying
                if every.due():
                    self.log.emit(w.name, Phase.push, Status.progress, f"nix: {line[:200]}")

            copied = await self._phase(
                w, Phase.push, nixos.copy_system(node, entry, toplevel, address=address, jump=jump, on_line=on_line)
            )
        self.log.emit(w.name, Phase.push, Status.changed if copied.changed else Status.unchanged, copied.message)
        opts = nixos.NixosOptions(
            goal=self.options.nixos_goal,
            health_timeout=self.options.activate.health_timeout,
            confirm_timeout=self.options.activate.deadline,
        )

        async def fresh() -> Node:
            return await self.fresh_connect(entry)

        async with self.sem[Phase.activate]:
            self._check_stop()
            self.log.emit(w.name, Phase.activate, Status.start)
            result = await self._phase(
                w, Phase.activate, nixos.switch_system(node, entry, toplevel, opts=opts, fresh_connect=fresh)
            )
        self.log.emit(w.name, Phase.activate, Status(result.status), result.message)
        if result.status not in ("changed", "unchanged"):
            self._failed()
            raise HostFailed

    async def _agent(self, w: HostWork, node: Node, state: Any, art: Artifact, ctx: ApplyContext) -> None:
        async with self.sem[Phase.push]:
            self._check_stop()
            self.log.emit(w.name, Phase.push, Status.start)
            pushed = await self._phase(
                w, Phase.push, push_agent(node, w.entry.host, art.path, art.sha256, state, report=self._reporter(w))
            )
        status = Status.changed if pushed.changed else Status.unchanged
        self.log.emit(w.name, Phase.push, status, pushed.message, bytes_sent=pushed.bytes_sent)
        async with self.sem[Phase.activate]:
            self._check_stop()
            self.log.emit(w.name, Phase.activate, Status.start)
            result = await self._phase(
                w,
                Phase.activate,
                activate(node, w.entry.host, state, pushed=pushed.changed, sha=art.sha256, opts=self.options.activate),
            )
        self.log.emit(w.name, Phase.activate, Status(result.status), result.message)
        if result.status not in ("changed", "unchanged"):
            self._failed()
            raise HostFailed
        ctx.data["agent_sha256"] = art.sha256
        ctx.data["agent_version"] = result.health.version if result.health else None

    def _progress_of(self, host: str, phase: Phase) -> Callable[[str], None]:
        def say(message: str) -> None:
            self.log.emit(host, phase, Status.progress, message)

        return say

    def _reporter(self, w: HostWork) -> PushReport:
        """The push's progress as events: the first and the last always, in between one a second."""
        every = Every()

        def report(message: str, *, final: bool = False, **data: Any) -> None:
            if every.due(force=final):
                self.log.emit(w.name, Phase.push, Status.progress, message, **data)

        return report

    def _recorded(self, w: HostWork, ctx: ApplyContext, kinds: list[ResourceKind]) -> Manifest:
        new = ctx.manifest
        for kind in kinds:
            new = kind.record(new, ctx, w.actions_for(kind.phase))
        return kept_for_moves(new, ctx.manifest, w.name, self.moves)  # the moves record what they carry

    async def _record(self, w: HostWork, ctx: ApplyContext, before: Manifest | None) -> None:
        """Every kind writes its part; the users are read back from the node (what it has, not what was asked)."""
        ctx.data["users"] = await self._phase(w, Phase.manifest, read_users(ctx))
        new = self._recorded(w, ctx, [*HEAD_KINDS, *self.kinds.values()])
        if before is not None and new.content() == before.content():
            self.log.emit(w.name, Phase.manifest, Status.unchanged, "as applied")
            return
        await self._phase(w, Phase.manifest, self._write_manifest(w, ctx, new, "written"))

    async def _write_manifest(self, w: HostWork, ctx: ApplyContext, new: Manifest, said: str) -> None:
        """Write the manifest, note it and say so, to the end whatever cancels this task meanwhile (a Ctrl-C
        held back until then): the node's manifest is the one record of what mcfleet made there."""

        async def write() -> None:
            await write_manifest(ctx.node, new)
            note_written(self.loaded.root, w.name, new)
            self.log.emit(w.name, Phase.manifest, Status.changed, said)

        with CTRL_C.held():
            await to_the_end(write())

    async def _record_after_failure(self, w: HostWork, ctx: ApplyContext, cause: str = "the failure") -> None:
        """Record what did succeed before the failure (or Ctrl-C: `cause`), so that no later plan forgets it:
        a certificate issued, a file written or a service deployed in an earlier stage, whose declaration is
        then removed, would stay on the node with nothing left to say it is mcfleet's.  After Ctrl-C the
        whole of it runs to its end, a further cancel and a Ctrl-C held back until then (CtrlCHeld); the
        phase it stopped in counts as not succeeded.

        A kind that records its whole desired set counts when its phase succeeded, and when it failed
        with the part it did put in place (MADE: two certificates of three issued); and what the
        manifest had beside that set stays listed, since its removal may not have run (a removal
        planned again later finds nothing to do; a forgotten entry is never removed)."""
        ok = (Status.changed, Status.unchanged)
        succeeded = {p for p in self.phases(w) if (e := self.log.outcome(w.name, p)) and e.status in ok}
        kinds = [k for k in [*HEAD_KINDS, *self.kinds.values()] if not k.records_desired_set or k.phase in succeeded]
        made: dict[Phase, DesiredHost] = ctx.data.get(MADE, {})
        partly = [k for k in self.kinds.values() if k.records_desired_set and k.phase not in succeeded
                  and made.get(k.phase) is not None]  # fmt: skip

        async def record() -> None:
            try:
                ctx.data["users"] = await read_users(ctx)
                new = self._recorded(w, ctx, kinds)
                for kind in partly:
                    new = kind.record(new, replace(ctx, desired=made[kind.phase]), w.actions_for(kind.phase))
                new = kept_for_removal(new, ctx.manifest)
                if {**new.content(), "users": None} == {**ctx.manifest.content(), "users": None}:
                    return  # nothing made (the users alone are not worth a manifest): `_skip_rest` says why
                agent = ["agent"] if new.agent != ctx.manifest.agent else []  # a new agent, pushed and confirmed
                done = ", ".join(
                    [*agent, *sorted({str(k.phase) for k in self.kinds.values() if k.phase in succeeded}),
                     *(f"part of {k.phase}" for k in partly)]
                ) or "nothing"  # fmt: skip
                await self._write_manifest(w, ctx, new, f"recorded what succeeded before {cause} ({done})")
            except (McfleetError, TimeoutError, OSError) as exc:
                said = f"what succeeded was not recorded: {_reason(exc)}"
                self.log.emit(w.name, Phase.manifest, Status.failed, said)

        with CTRL_C.held():  # reading the users too: a Ctrl-C meanwhile is held back until the record is written
            await to_the_end(record())

    def _first_phase(self, w: HostWork) -> Phase:
        """The phase connecting, locking and reading the node count as: the first the host shows, so that a
        refusal there (another orchestrator's lock) comes before the phases it leaves skipped."""
        if w.provision:
            return Phase.provision
        if w.agent:
            return Phase.push
        return w.step_phases[0] if w.step_phases else Phase.manifest

    async def _provision(self, w: HostWork, node: Node, ctx: ApplyContext) -> None:
        if self.provisioner is None:  # a caller bug, reported as this host's failure
            self.log.emit(w.name, Phase.provision, Status.failed, "no provisioner for a host that needs provisioning")
            raise HostFailed
        async with self.sem[Phase.provision]:
            self._check_stop()
            self.log.emit(w.name, Phase.provision, Status.start)
            changed, message = await self._phase(w, Phase.provision, self.provisioner(node, w.entry))
            dirs = await self._phase(w, Phase.provision, HostKind().apply(ctx, w.actions_for(Phase.host)))
        if dirs.status == "changed":
            changed, message = True, with_folders(changed, message, dirs.message)
        self.log.emit(w.name, Phase.provision, Status.changed if changed else Status.unchanged, message)

    async def _steps(self, w: HostWork, ctx: ApplyContext) -> None:
        ctx.data[PLANNED] = [a for _, actions in w.step_passes for a in actions]  # what the others will do
        for phase, planned in w.step_passes:
            actions = planned  # narrowed below when a route moves
            kind = self.kinds.get(phase)
            if kind is None:  # planned, but this mcfleet cannot do it: say so, never pretend
                self.log.emit(w.name, phase, Status.blocked, f"no {phase} backend in this version of mcfleet")
                self._failed()
                continue
            kept: list[str] = []
            if (phase, actions[0].kind == "delete") in ((Phase.route, True), (Phase.dns, False)):
                actions, kept = await self._after_moved_routes(w.name, phase, actions)  # before a slot: it may wait
            elif phase == Phase.route and actions[0].kind != "delete":
                actions, kept = await self._after_deploys(w.name, actions)  # before a slot: it may wait
            # Deploy takes no --parallel slot: it waits at the boot-stage gate for every other host's
            # earlier stages, and holding a slot there, the hosts beyond the slots never started (five
            # hosts with services and the default 4 hung for ever).  The gate orders the deploys; each
            # one's work is the agent's on its own node.
            async with self.step_sem if phase != Phase.deploy else contextlib.nullcontext():
                self._check_stop()
                self.log.emit(w.name, phase, Status.start)
                ctx.data["progress"] = self._progress_of(w.name, phase)  # for a kind that waits long
                outcome = await self._phase(w, phase, kind.apply(ctx, actions)) if actions else None
            if phase == Phase.route and actions and actions[0].kind != "delete":
                self._routes_settled(w.name, ok=outcome is not None and outcome.status in ("changed", "unchanged"))
            if phase == Phase.deploy and not is_removal(planned[0]):
                self._deploy_settled(w.name, ok=outcome is not None and outcome.status in ("changed", "unchanged"))
            if kept:  # not changed: still recorded as they were, so the next plan changes them again
                said = f"{outcome.message}; " if outcome is not None and outcome.message else ""
                self.log.emit(w.name, phase, Status.failed, said + "; ".join(kept))
                self._failed()
                raise HostFailed
            assert outcome is not None
            self.log.emit(w.name, phase, Status(outcome.status), outcome.message)
            if outcome.status in ("failed", "blocked"):
                self._failed()
                raise HostFailed

    def _deploy_settled(self, host: str, *, ok: bool) -> None:
        done = self.deployed.get(host)
        if done is not None and not done.done():
            done.set_result(ok)

    async def _after_deploys(self, host: str, actions: list[Action]) -> tuple[list[Action], list[str]]:
        """The route changes to make now, once the hosts their services run on deployed in this apply; and why
        each route to a host whose deploy did not succeed is kept as it was."""
        go, kept = [], []
        for action in actions:
            route = self.desired[host].routes.get(action.subject.removeprefix("route "))
            there = route.service_host if route is not None and route.service is not None else host
            if there == host or there not in self.deployed or await self.deployed[there]:
                go.append(action)
            else:
                kept.append(f"{action.subject} kept as it was: it leads to {route.service if route else 'a service'} "
                            f"on {there}, whose deploy did not succeed")  # fmt: skip
        return go, kept

    def _routes_settled(self, host: str, *, ok: bool) -> None:
        added = self.routes_added.get(host)
        if added is not None and not added.done():
            added.set_result(ok)

    async def _after_moved_routes(
        self, host: str, phase: Phase, actions: list[Action]
    ) -> tuple[list[Action], list[str]]:
        """What to do now of a route removal pass or a record change pass, and why each action that follows a
        route moving to another host's proxy in this apply is held back: that proxy did not take the route
        (its route phase failed, or its host did not get that far).  The route stays on `host`, the name
        keeps leading to it."""
        go, kept = [], []
        for action in actions:
            name = named(action)  # by name, whatever the listener (a move may change it too)
            stays = phase == Phase.route and keeps_name(self.desired[host], name)
            dest = None if stays else self.name_dest.get(name)
            if dest is None or dest == host or await self.routes_added[dest]:
                go.append(action)
            else:
                held = f"kept on {host}: it" if phase == Phase.route else "left as it was: its route"
                kept.append(f"{action.subject} {held} moves to {dest}'s proxy, which did not take it")
        return go, kept

    async def _phase(self, w: HostWork, phase: Phase, work: Awaitable[Any]) -> Any:
        """Await one piece of a phase; an error ends the phase as failed and the host's run."""
        try:
            return await work
        except BuildBlocked as exc:
            self.log.emit(w.name, phase, Status.blocked, _reason(exc))
        except McfleetError as exc:
            self.log.emit(w.name, phase, Status.failed, _reason(exc))
        except (TimeoutError, OSError) as exc:
            self.log.emit(w.name, phase, Status.failed, _reason(exc))
        except Exception as exc:  # a bug: this host fails saying where, the others go on and record
            self.log.emit(w.name, phase, Status.failed, _internal(exc))
        self._failed()
        raise HostFailed

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise HostFailed

    def _skip_rest(self, w: HostWork, why: str | None = None) -> None:
        own = any((e := self.log.outcome(w.name, p)) is not None and e.status.bad for p in self.phases(w))
        why = why or (
            "an earlier phase did not succeed"
            if own or not self.stop.is_set()
            else "stopped: another host failed (--fail-fast)"
        )
        for phase in self.phases(w):
            if self.log.outcome(w.name, phase) is None:
                self.log.emit(w.name, phase, Status.skipped, why)


def kept_for_removal(new: Manifest, had: Manifest) -> Manifest:
    """`new` with the certificates, DNS records and routes `had` listed that `new` no longer does (by
    name, by name and type, by listener and hostname): after a failure their removals may not have run."""
    certs = {c.name for c in new.certs}
    records = {(r.name, r.type) for r in new.dns}
    routes = {(r.listener, r.hostname) for r in new.routes}
    return new.model_copy(
        update={
            "certs": [*new.certs, *(c for c in had.certs if c.name not in certs)],
            "dns": [*new.dns, *(r for r in had.dns if (r.name, r.type) not in records)],
            "routes": [*new.routes, *(r for r in had.routes if (r.listener, r.hostname) not in routes)],
        }
    )
