"""Desired services → podman containers, stage by stage, each stage healthy before the next starts.

Every path that starts containers — ReconcileServices, boot at agent start, Recover,
StartService — goes through `_converge`: for each stage in order (foundation → core →
management → services) it creates/recreates/starts that stage's containers, then waits
until every one is healthy before touching the next stage.  A stage that does not get
healthy in time ends the sequence with an error naming the stage, container and check.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from mcfleet.agent.crash_loop import crash_loop_text, is_crash_loop
from mcfleet.agent.events import BOOT_RETRY_MAX_S, BOOT_RETRY_S, BootStatus, EventLog
from mcfleet.agent.health import wait_healthy
from mcfleet.agent.podman_ops import Managed, Podman
from mcfleet.agent.ports import take_ports
from mcfleet.agent.registry import RUNNING, STOPPED, Entry, Registry
from mcfleet.agent.spec import ASIDE, LABEL_HASH, ContainerSpec, container_specs
from mcfleet.errors import McfleetError, PeerError
from mcfleet.fleet.models import Service, Stage

T = TypeVar("T")


class UnknownService(McfleetError):
    kind = "unknown service"


class Superseded(Exception):
    """The boot sequence gave way to a ReconcileServices call while it waited on health checks."""


@dataclass(frozen=True)
class ContainerAction:
    service: str
    component: str
    container: str
    kind: str  # create | recreate | start | stop | remove | unchanged | restart
    reason: str = ""


@dataclass(frozen=True)
class Work:
    """The change of the containers the agent is making (one at a time, under its lock)."""

    what: str  # deploy | boot | recover | stop | start | restart
    services: tuple[str, ...]  # those asked for (none for boot and recover: every registered one)
    started: float  # time.monotonic() of the agent


@dataclass
class Outcome:
    ok: bool = True
    error: str = ""
    actions: list[ContainerAction] = field(default_factory=list)
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    stages_healthy: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(self, registry: Registry, podman: Podman, events: EventLog, *, stage_timeout: float = 120.0) -> None:
        self.registry = registry
        self.podman = podman
        self.events = events
        self.stage_timeout = stage_timeout
        self.boot = BootStatus()
        self._lock = asyncio.Lock()
        # What holds the lock, and how many calls wait for it: Info says so, so that an apply
        # that waits behind an earlier one (interrupted, its stage still waiting on health
        # checks) can say what it waits for instead of seeming to hang.
        self.working: Work | None = None
        self.waiting = 0
        # While a stage waits for its health checks: container -> why its last check failed (Info
        # sends it, so that an apply waiting on the stage can say which check fails, and why).
        self.failing: dict[str, str] = {}
        # Operations that held the lock so far: a failed boot is tried again only while nothing
        # else has run since (a deploy, recover, start or stop then decides what runs).
        self.operations = 0
        # Set by ReconcileServices while the boot sequence runs: the boot brings the registry's
        # definitions up, and a deploy brings newer ones.  A registered service whose health check
        # can never pass (a wrong path, fixed in the files since) would otherwise hold the lock for
        # the whole stage timeout before the fix may even be sent.  The boot gives way only while it
        # waits on health checks, never amid a podman call.
        self._yield_boot = asyncio.Event()
        # The current stage's replaced containers: name -> the old container, set aside (`<name>.old`)
        # until the stage is healthy, then removed; put back if the stage does not get healthy.
        self._asides: dict[str, Managed] = {}
        # During a ReconcileServices call: each service's registry entry before it (what a container put
        # back runs, so the registry is restored with it: the next boot brings that definition up).
        self._previous: dict[str, Entry] = {}

    @asynccontextmanager
    async def _exclusive(self, what: str, services: Iterable[str]) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        self.working = Work(what, tuple(services), time.monotonic())
        self.operations += 1
        try:
            yield
        finally:
            self.working = None
            self.failing.clear()
            self._lock.release()

    # ------------------------------------------------------------------ public operations

    async def reconcile(
        self,
        desired: list[tuple[Service, dict[str, int]]],
        *,
        prune: bool = True,
        stage_timeout: float | None = None,
    ) -> Outcome:
        if self.boot.state == "running" and self.boot.what == "boot":
            self._yield_boot.set()
        async with self._exclusive("deploy", (s.name for s, _ in desired)):
            self._yield_boot.clear()
            try:
                registered = self.registry.entries()
                before = {e.name: e.ports for e in registered}
                ports = take_ports(desired, before)
                entries = [Entry(s, ports[s.name], RUNNING if s.active else STOPPED) for s, _ in desired]
                # The registry is written first, in one transaction: if the agent dies mid-way,
                # boot sequencing finishes the job from it.
                (self.registry.replace_all if prune else self.registry.upsert)(entries)
                self.events.add("registry", f"{len(entries)} service(s) recorded (prune={prune})")
            except McfleetError as exc:
                return Outcome(ok=False, error=exc.message)
            # With prune the registry now holds exactly `desired`.  Without it only the services asked
            # for are converged: a deploy asks stage by stage for the stages done so far, and another
            # registered service (one whose own deploy failed: a missing image) must not fail the call.
            asked = {e.name for e in entries}
            todo = [e for e in self.registry.entries() if prune or e.name in asked]
            self._previous = {e.name: e for e in registered}
            try:
                # a deploy ends the wait for a container that keeps stopping: what it replaced is put back
                outcome = await self._converge(todo, prune=prune, stage_timeout=stage_timeout, crash_loop_ends=True)
            finally:
                self._previous = {}
            outcome.ports = {e.name: e.ports for e in entries}
            return outcome

    async def run_boot(self, *, stage_timeout: float | None = None) -> Outcome:
        """Agent start: bring every registered service up, stage by stage."""
        async with self._exclusive("boot", ()):
            return await self._sequence("boot", recreate=False, stage_timeout=stage_timeout)

    async def _boot_again(self, attempt: int, mark: int) -> Outcome | None:
        """The boot sequence once more; None, doing nothing, when another operation ran after `mark`."""
        async with self._exclusive("boot", ()):
            if self.operations != mark + 1:
                return None
            return await self._sequence("boot", recreate=False, stage_timeout=None, attempt=attempt)

    async def boot_until_healthy(self, *, retry_s: float = BOOT_RETRY_S) -> Outcome:
        """The boot sequence, and while it fails, again after a wait that doubles from `retry_s` up to
        BOOT_RETRY_MAX_S (0: no retry).  What fails at boot often passes by itself: an image registry
        on another node that is not up yet after a power cut, a dependency slower than the stage
        timeout.  Left failed, the later stages would stay down until someone applies or recovers.
        Retrying ends once any other operation ran (a deploy, recover, start or stop decides then)."""
        outcome = await self.run_boot()
        wait, mark = retry_s, self.operations
        while not outcome.ok and self.boot.state == "failed" and retry_s > 0:
            attempt = self.boot.attempt + 1
            self.boot.retry_at = time.time() + wait
            self.events.add("boot-retry", f"boot: trying again in {wait:g} s (attempt {attempt})")
            await asyncio.sleep(wait)
            again = await self._boot_again(attempt, mark)
            if again is None:  # the boot gave way, as to a deploy that arrives while it runs
                self.boot.retry_at = 0.0
                if self.boot.what == "boot":  # (a recover since has its own state)
                    self.boot.state = "superseded"
                self.events.add("boot-retry-ended", "boot: not tried again: a later operation decides what runs")
                return outcome
            outcome, wait, mark = again, min(wait * 2, BOOT_RETRY_MAX_S), self.operations
        return outcome

    async def recover(self, *, stage_timeout: float | None = None) -> Outcome:
        """Recreate every container from the registry (podman state lost); volumes untouched."""
        async with self._exclusive("recover", ()):
            return await self._sequence("recover", recreate=True, stage_timeout=stage_timeout)

    async def stop_service(self, name: str) -> Outcome:
        async with self._exclusive("stop", [name]):
            entry = self._entry(name)
            self.registry.set_desired(name, STOPPED)
            outcome = Outcome()
            for spec in reversed(container_specs(entry.service, entry.ports)):
                await self.podman.in_thread(self.podman.stop, spec.name)
                self._act(outcome, spec, "stop", "stopped on request")
            return outcome

    async def start_service(self, name: str, *, stage_timeout: float | None = None) -> Outcome:
        async with self._exclusive("start", [name]):
            self._entry(name)
            self.registry.set_desired(name, RUNNING)
            return await self._converge([self._entry(name)], prune=False, stage_timeout=stage_timeout)

    async def restart_service(self, name: str, *, stage_timeout: float | None = None) -> Outcome:
        async with self._exclusive("restart", [name]):
            entry = self._entry(name)
            self.registry.set_desired(name, RUNNING)
            outcome = Outcome()
            specs = container_specs(entry.service, entry.ports)
            try:
                for spec in specs:
                    if await self.podman.in_thread(self.podman.state, spec.name) == "missing":
                        await self._create(spec, outcome, "create", "missing at restart")
                    else:  # stopped, then started once its ports are free (not `podman restart`)
                        await self.podman.in_thread(self.podman.stop, spec.name)
                        await _released(spec)
                        await self._start_when_ports_free(spec.name)
                        self._act(outcome, spec, "restart", "restarted on request")
                # a person or apply (after a files change) waits for the answer: a container that keeps
                # stopping ends it, as in a deploy (the boot, at which a dependency may come up late, waits on)
                await self._wait_stage(entry.service.stage, specs, stage_timeout, outcome, crash_loop_ends=True)
            except (McfleetError, TimeoutError) as exc:
                outcome.ok, outcome.error = False, _text(exc)
            return outcome

    # ------------------------------------------------------------------ internals

    def _entry(self, name: str) -> Entry:
        entry = self.registry.get(name)
        if entry is None:
            raise UnknownService(f"no service {name!r} in the agent's registry", hint="deploy it first (apply)")
        return entry

    def _act(self, outcome: Outcome, spec: ContainerSpec, kind: str, reason: str) -> None:
        outcome.actions.append(ContainerAction(spec.service, spec.component, spec.name, kind, reason))
        if kind != "unchanged":
            self.events.add(kind, reason, stage=spec.stage.value, service=spec.service, component=spec.component)

    async def _sequence(self, what: str, *, recreate: bool, stage_timeout: float | None, attempt: int = 1) -> Outcome:
        self.boot = BootStatus(state="running", what=what, attempt=attempt)
        self.events.add(f"{what}-start", f"{what}: bringing registered services up stage by stage")
        outcome = Outcome()
        if self.registry.entries():
            # At node boot the agent may come up before podman's API socket does: wait for it
            # (bounded by the stage timeout) rather than failing the whole sequence at once.
            outcome = await self._wait_podman(stage_timeout or self.stage_timeout)
        if recreate and outcome.ok:
            try:
                managed = await self.podman.in_thread(self.podman.list_managed)
                await self._all(self.podman.in_thread(self.podman.remove, m.name) for m in managed)
                for m in managed:
                    self.events.add("remove", f"{what}: removed {m.name} to recreate it from the registry")
            except McfleetError as exc:
                outcome.ok, outcome.error = False, exc.message
        superseded = False
        if outcome.ok:
            try:
                outcome = await self._converge(
                    self.registry.entries(), prune=False, stage_timeout=stage_timeout, yields=what == "boot"
                )
            except Superseded:
                superseded = True
                outcome = Outcome(ok=False, error=f"{what}: gave way at stage {self.boot.stage} to a deploy")
        self.boot.state = "superseded" if superseded else "ok" if outcome.ok else "failed"
        self.boot.error = outcome.error
        self.boot.finished_at = time.time()
        self.events.add(
            f"{what}-{self.boot.state}", outcome.error or f"{what}: every stage healthy", error=not outcome.ok
        )
        return outcome

    async def _wait_podman(self, within_s: float) -> Outcome:
        deadline = time.monotonic() + within_s
        if await self.podman.in_thread(self.podman.ping):
            return Outcome()
        self.events.add("podman-wait", f"podman API not answering at {self.podman.url}; waiting up to {within_s:g}s")
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if await self.podman.in_thread(self.podman.ping):
                self.events.add("podman-up", f"podman API answers at {self.podman.url}")
                return Outcome()
        return Outcome(ok=False, error=f"podman API not reachable at {self.podman.url} within {within_s:g}s")

    async def _create(self, spec: ContainerSpec, outcome: Outcome, kind: str, reason: str) -> None:
        await self.podman.in_thread(self.podman.ensure_image, spec.image)
        await self.podman.in_thread(self.podman.create, spec)
        try:
            await self.podman.in_thread(self.podman.start, spec.name)
        except McfleetError as exc:
            raise _port_taken(spec, exc) or exc from exc
        self._act(outcome, spec, kind, reason)

    async def _watched(self, spec: ContainerSpec, check: Awaitable[None]) -> None:
        """`check`, with the container's entry in `failing` gone once it ends (passed, or the call is over)."""
        try:
            await check
        finally:
            self.failing.pop(spec.name, None)

    async def _wait_stage(
        self,
        stage: Stage,
        specs: list[ContainerSpec],
        stage_timeout: float | None,
        outcome: Outcome,
        *,
        yields: bool = False,
        crash_loop_ends: bool = False,
    ) -> None:
        """Until every container of the stage is healthy (TimeoutError at the deadline); with `yields`,
        raise Superseded as soon as a ReconcileServices call asks the boot to give way."""
        deadline = time.monotonic() + (stage_timeout or self.stage_timeout)
        healthy = asyncio.ensure_future(
            asyncio.gather(
                *(
                    self._watched(
                        spec,
                        wait_healthy(
                            spec,
                            self.podman,
                            deadline,
                            crash_loop_ends=crash_loop_ends,
                            reforward=self._reforwarder(spec, outcome),
                            failed=functools.partial(self.failing.__setitem__, spec.name),
                        ),
                    )
                    for spec in specs
                )
            )
        )
        if not yields:
            await healthy
            return
        asked = asyncio.ensure_future(self._yield_boot.wait())
        either: set[asyncio.Future[Any]] = {healthy, asked}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this task cancelled (the agent stops): leave no health check running
            healthy.cancel()
            raise
        finally:
            asked.cancel()
        if not healthy.done():
            healthy.cancel()
            await asyncio.gather(healthy, return_exceptions=True)
            raise Superseded
        await healthy

    async def _converge(
        self,
        entries: list[Entry],
        *,
        prune: bool,
        stage_timeout: float | None,
        yields: bool = False,
        crash_loop_ends: bool = False,
    ) -> Outcome:
        outcome = Outcome()
        if not entries and not prune:
            return outcome  # nothing registered: podman need not even be up
        self._asides = {}
        current: list[Entry] = []  # the services of the stage being converged
        pending: list[Entry] = []  # those of that stage and the later ones: not healthy yet
        try:
            existing = {m.name: m for m in await self.podman.in_thread(self.podman.list_managed, forwarders=True)}
            for name in [n for n in existing if n.endswith(ASIDE)]:
                # A replace runs within one converge, under the lock: a set-aside container seen here was
                # left by an agent that died amid one; it would hold its ports against its replacement.
                await self.podman.in_thread(self.podman.remove, name)
                service = _label(existing.pop(name), "service")
                why = "left by a replace that did not finish"
                outcome.actions.append(ContainerAction(service, "", name, "remove", why))
                self.events.add("remove", f"{name}: {why}", service=service)
            plan = [(e, container_specs(e.service, e.ports)) for e in entries]
            if prune:
                wanted = {spec.name for _, specs in plan for spec in specs}
                for name, managed in existing.items():
                    if name not in wanted:
                        await self.podman.in_thread(self.podman.remove, name)
                        outcome.actions.append(
                            ContainerAction(_label(managed, "service"), "", name, "remove", "not desired")
                        )
                        self.events.add("remove", f"{name}: no longer desired", service=_label(managed, "service"))
            for stage in Stage:
                staged = [(e, specs) for e, specs in plan if e.service.stage == stage]
                if not staged:
                    continue
                current = [e for e, _ in staged]
                pending = [e for e, _ in plan if Stage(e.service.stage).order >= stage.order]
                self.boot.stage = stage.value
                self.events.add("stage-start", f"starting {len(staged)} service(s)", stage=stage.value)
                to_wait = await self._converge_stage(staged, existing, outcome)
                try:
                    await self._wait_stage(
                        stage, to_wait, stage_timeout, outcome, yields=yields, crash_loop_ends=crash_loop_ends
                    )
                except TimeoutError as exc:
                    kept = await self._put_back_asides(outcome, pending)
                    later = sorted({e.service.name for e, _ in plan if Stage(e.service.stage).order > stage.order})
                    outcome.ok = False
                    outcome.error = (
                        f"stage {stage.value} did not get healthy: {exc}"
                        + (f"; {kept}" if kept else "")
                        + (f"; not started: {', '.join(later)}" if later else "")
                    )
                    self.events.add("stage-failed", outcome.error, error=True, stage=stage.value)
                    return outcome
                except Superseded:
                    # A replacement is kept only once its stage is healthy: the deploy the boot gave way
                    # to starts from the containers as they were, and replaces them with its own checks.
                    await self._put_back_asides(Outcome(), current)
                    raise
                await self._drop_asides()
                outcome.stages_healthy.append(stage.value)
                self.events.add("stage-healthy", f"{len(to_wait)} container(s) healthy", stage=stage.value)
        except McfleetError as exc:
            # a container of the stage could not be made: what the stage replaced goes back with it
            kept = await self._put_back_asides(outcome, pending)
            what_to_do = f" (what to do: {exc.hint})" if exc.hint else ""  # e.g. a pull: check the name and tag
            outcome.ok, outcome.error = False, exc.message + what_to_do + (f"; {kept}" if kept else "")
            self.events.add("error", outcome.error, error=True)
        return outcome

    async def _drop_asides(self) -> None:
        """The stage is healthy: its replacements stay, and the old containers set aside for them go."""
        asides, self._asides = self._asides, {}
        for name in asides:
            await self.podman.in_thread(self.podman.remove, name + ASIDE)

    async def _put_back_asides(self, outcome: Outcome, staged: list[Entry]) -> str:
        """The stage failed (not healthy, or a container of it could not be made): every container it
        replaced gets its old self back (a bad definition, e.g. an env value the program rejects,
        keeps the service running on the one before), its registry entry with it (`_put_back`).  A
        service of the stage whose containers this call left as they were (only its health check or
        another field outside them changed), and one this call never got to (an image of its stage
        that could not be pulled, or a later stage), gets its previous entry back too: the registry
        says what runs, so `status` judges it by the check it passed, the plan names the change
        again, and the next boot brings that definition up (was: the failing one stayed, so after a
        failed pull the next boot would have asked for the image that could not be pulled).  New
        services keep theirs.  What was put back, for the error."""
        acted = {a.service for a in outcome.actions}
        asides, self._asides = self._asides, {}
        said = []
        for name, old in sorted(asides.items()):
            said.append(await self._put_back(name, old))
            outcome.actions.append(
                ContainerAction(_label(old, "service"), _label(old, "component"), name, "restore",
                                "the stage failed: the previous definition put back")
            )  # fmt: skip
        unmade = [
            before
            for entry in staged
            if (before := self._previous.get(entry.name)) is not None
            and before != entry
            and self.registry.get(entry.name) != before  # not already put back with its container
            and before.desired == entry.desired
            and (_shape(before) == _shape(entry) or entry.name not in acted)
        ]
        if unmade:
            self.registry.upsert(unmade)
        for entry in unmade:
            self.events.add("restore", f"{entry.name}: its previous definition kept", error=True)
            said.append(f"{entry.name} keeps its previous definition")
        return "; ".join(said)

    async def _converge_stage(
        self, staged: list[tuple[Entry, list[ContainerSpec]]], existing: dict[str, Managed], outcome: Outcome
    ) -> list[ContainerSpec]:
        """One stage's containers at once (podman's API serves calls in parallel): each image is
        pulled once first, then every container converges concurrently; their actions are
        recorded in the files' order.  Returns the containers that should now be running."""
        jobs = [(entry, spec) for entry, specs in staged for spec in specs]
        images = sorted({spec.image for entry, spec in jobs if entry.desired == RUNNING})
        await self._all(self.podman.in_thread(self.podman.ensure_image, image) for image in images)
        parts = [Outcome() for _ in jobs]
        running = await self._all(
            self._converge_one(entry, spec, existing.get(spec.name), part)
            for (entry, spec), part in zip(jobs, parts, strict=True)
        )
        for part in parts:
            outcome.actions += part.actions
        return [spec for (_, spec), run in zip(jobs, running, strict=True) if run]

    @staticmethod
    async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
        """Await every call; the first failure is raised once all have ended (none left running)."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return cast(list[T], results)

    async def _converge_one(self, entry: Entry, spec: ContainerSpec, managed: Managed | None, outcome: Outcome) -> bool:
        """Bring one container to its desired shape; True when it should now be running."""
        changed = managed is not None and managed.labels.get(LABEL_HASH) != spec.spec_hash
        if entry.desired != RUNNING:
            if changed:
                await self.podman.in_thread(self.podman.remove, spec.name)
            elif managed is not None and managed.state == "running":
                await self.podman.in_thread(self.podman.stop, spec.name)
                self._act(outcome, spec, "stop", "service is stopped or inactive")
            return False
        if managed is None:
            await self._create(spec, outcome, "create", "missing")
        elif changed:
            await self._replace(spec, managed, outcome, "spec changed")
        elif is_crash_loop(managed.restarts, managed.up_s):
            # started again it fails again: a new container from the image (its own writable layer,
            # where the fault may be, is gone; the service's volumes are kept)
            await self._replace(
                spec, managed, outcome, crash_loop_text(managed.restarts, managed.exit_code), keep_old=False
            )
        elif managed.state != "running":
            await self.podman.in_thread(self.podman.start, spec.name)
            self._act(outcome, spec, "start", f"was {managed.state}")
        elif managed.unforwarded:
            await self._restart_for_forwarder(spec)
            self._act(outcome, spec, "restart", f"{UNFORWARDED}: {', '.join(managed.unforwarded)}")
        else:
            self._act(outcome, spec, "unchanged", "running with the desired spec")
        return True

    async def _replace(
        self, spec: ContainerSpec, old: Managed, outcome: Outcome, reason: str, *, keep_old: bool = True
    ) -> None:
        """A changed definition: the new container is made beside the old one, renamed aside, which
        keeps running until the new one is created and is stopped only for it to start (they publish
        the same ports); it is removed once the stage is healthy.  A create or start that fails (a
        volume that cannot be made, an unknown user), or a stage that does not get healthy, puts the
        old container back under its name, running: the service keeps its previous definition (was:
        removed first, so the service was down until the next good deploy).  A crash-looping container
        of an unchanged definition is replaced the same way with `keep_old=False`: its old self goes
        once the new one has started, as a failed stage putting it back would bring the loop back."""
        podman, aside = self.podman, spec.name + ASIDE
        # no `aside` can exist here: this converge removed any left by an agent that died amid a replace
        await podman.in_thread(podman.rename, spec.name, aside)
        try:
            await podman.in_thread(podman.create, spec)
            # a looping one reads "stopped" between two runs, and podman would start it again
            if old.state == "running" or old.restarts:
                await podman.in_thread(podman.stop, aside)
            await self._start_when_ports_free(spec.name)
        except McfleetError as exc:
            kept = await self._put_back(spec.name, old)
            raise PeerError(f"{exc.message}; {kept}", location=exc.location, hint=exc.hint) from exc
        if keep_old:
            self._asides[spec.name] = old
        else:  # a crash-looping container: what a stage that does not get healthy must not put back
            await podman.in_thread(podman.remove, aside)
        self._act(outcome, spec, "recreate", reason)

    def _reforwarder(self, spec: ContainerSpec, outcome: Outcome) -> Callable[[], Awaitable[None]] | None:
        """For rootless podman: restart a running container whose published port lost its forwarder
        (the port refuses connections), the one thing that brings the forwarder back."""
        if not self.podman.rootless:
            return None

        async def restart() -> None:
            await self._restart_for_forwarder(spec)
            self._act(outcome, spec, "restart", f"{UNFORWARDED} (its port refused connections)")

        return restart

    async def _restart_for_forwarder(self, spec: ContainerSpec) -> None:
        await self.podman.in_thread(self.podman.stop, spec.name)
        await _released(spec)
        await self._start_when_ports_free(spec.name)

    async def _start_when_ports_free(self, name: str) -> None:
        """Start a container whose ports another one held a moment ago.  Rootless podman forwards them
        with a `rootlessport` process per container, which can outlive the container: after a start
        that failed (an unknown user), measured 4 to 18 s on a Debian 12 node (podman 4.3); the old
        container's start meanwhile meets "address already in use"."""
        began = time.monotonic()
        while True:
            try:
                await self.podman.in_thread(self.podman.start, name)
            except McfleetError as exc:
                if "address already in use" not in exc.message:
                    raise
                if time.monotonic() - began >= PORTS_FREE_WITHIN_S:
                    raise _port_taken(None, exc, waited_s=PORTS_FREE_WITHIN_S) or exc from exc
                await asyncio.sleep(0.5)
                continue
            if time.monotonic() - began >= 1:
                self.events.add("start", f"{name}: started once its ports were free ({time.monotonic() - began:.0f} s)")
            return

    async def _put_back(self, name: str, old: Managed) -> str:
        """The old container back under its name and started (its service is meant to run: only those
        are replaced), and its service's registry entry as it was before this call; what became of
        it, for the error."""
        podman = self.podman
        try:
            await podman.in_thread(podman.remove, name)
            await podman.in_thread(podman.rename, name + ASIDE, name)
        except McfleetError as exc:
            return f"the previous {name} could not be put back ({exc.message}): it is down"
        previous = self._previous.get(_label(old, "service"))
        if previous is not None:
            self.registry.upsert([previous])  # the container is the previous definition, started or not
        try:
            await self._start_when_ports_free(name)
        except McfleetError as exc:
            return f"the previous {name} is back but could not be started ({exc.message}): it is down"
        self.events.add("restore", f"{name}: its previous definition kept", error=True)
        return f"{name} keeps running on its previous definition"


PORTS_FREE_WITHIN_S = 60.0


async def _released(spec: ContainerSpec) -> None:
    """Until nothing accepts connections on a stopped container's published tcp ports (at most
    PORTS_FREE_WITHIN_S).  Rootless podman's forwarder can outlive its container, and `podman restart`
    of a container that podman was restarting in a loop once left it running with no forwarder at all
    (seen on a lab node, podman 4.3: its port refused connections until the stage timeout)."""
    deadline = time.monotonic() + PORTS_FREE_WITHIN_S
    for port in spec.ports:
        if port.protocol != "tcp" or spec.network == "host":
            continue
        while await _accepts(*port.reached_at):
            if time.monotonic() >= deadline:
                return  # the start then says who holds it
            await asyncio.sleep(0.2)


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


# why a running container is restarted when its published ports have no listener (see agent.listeners)
UNFORWARDED = "nothing listened on its published port while it ran (podman's port forwarder was gone)"

# rootless podman's port forwarder: "rootlessport listen tcp 127.0.0.1:55826: bind: address already in use"
_IN_USE = re.compile(r"listen (?:tcp|udp)\S* (\S+): bind: address already in use")


def _port_taken(spec: ContainerSpec | None, exc: McfleetError, *, waited_s: float = 0.0) -> PeerError | None:
    """A start that failed because a published port is taken, said as such, with what to do (None:
    another failure).  The agent gives each service ports no other of its services has, so what
    holds one is another program on the node.  The advice is in the message: the deploy's answer
    carries only that."""
    if "address already in use" not in exc.message:
        return None
    found = _IN_USE.search(exc.message)
    where = found.group(1) if found else "one of its ports"
    still = f" (still after {waited_s:.0f} s)" if waited_s else ""
    file = f"{spec.service}.json" if spec else "the service file"
    return PeerError(
        f"{exc.message}: another program on the node listens on {where}{still}; `ss -ltnp` there names it: "
        f"stop it, or give the route another port (`host_port` in {file})",
        location=exc.location,
    )


def _shape(entry: Entry) -> list[str]:
    """What the containers of an entry are made from (their spec hashes, which leave out the health check)."""
    return [spec.spec_hash for spec in container_specs(entry.service, entry.ports)]


def _label(managed: Managed, key: str) -> str:
    return managed.labels.get(f"io.mcfleet.{key}", "")


def _text(exc: BaseException) -> str:
    return exc.message if isinstance(exc, McfleetError) else str(exc)
