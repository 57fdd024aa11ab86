"""Carrying out a planned move (kinds.migrate): a service and its data from host A to host B.

Runs after every host's own apply (B then has its agent, podman and `/srv/<svc>`), with the
same SSH connections (both node locks are held), one move at a time:

1. stop the service on A (its agent), snapshot `/srv/<svc>/` there as a zstd tar with numeric
   owners into root's store (`<store>/snapshots/<svc>-<UTC time>.tar.zst`, kept: the operator
   prunes it with `mcfleet snapshots A <svc> --prune --keep 0`); a service with no `/srv/<svc>` on
   A (no volumes, no files there) has nothing to copy, and steps 2-3 are skipped;
2. copy it to B through this machine over the two SSH connections (root's side of each: the
   file is read and written by root through sudo/doas for a non-root login, written 0600 in
   B's 0700 store, its sha256 checked);
3. restore it on B: unpacked in a private folder, file owners mapped from A's ids to B's (A's
   agent account -> B's; uid u in A's subuid range -> the same offset in B's range; the same
   for gids), then put in place of `/srv/<svc>` (a folder already there is kept aside as
   `/srv/.<svc>.before-migrate.<time>`, listed and pruned by `mcfleet snapshots B`); B's copy of
   the archive is removed;
4. write the service's declared files on B (over the restored folder);
5. start it on B (its agent, which waits for its health check);
6. its routes and DNS records: the changes (now pointing at B) first, then the removals on
   A's side (a DNS name B now holds is not deleted at the server, only from A's manifest);
7. only then remove it from A (with A's other planned removals), then its files there and A's
   certs for it;
8. both manifests record the result: of the routes, DNS records and certificates the move carries,
   what its steps did (each host's own apply left them as they were: `kept_for_moves`).

A failure (or Ctrl-C) at any step before 7 stops there: the service is removed from B again if it
was started there, started again on A, and the event says what happened and where the snapshot
is.  Nothing is removed from A before B answered the health check.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from mcfleet.agent.client import AgentClient
from mcfleet.apply.events import ApplyEvents, Phase, Status
from mcfleet.apply.nodeio import store_of, write_manifest
from mcfleet.apply.probe import probe
from mcfleet.apply.snapshot import _tell, snapshot_script
from mcfleet.errors import ApplyError, McfleetError, PeerError
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.kinds.base import ApplyContext, Outcome, ResourceKind
from mcfleet.kinds.files import FilesKind
from mcfleet.kinds.migrate import move_parts, moves_in
from mcfleet.kinds.providers import CertKind, DnsKind, RouteKind
from mcfleet.kinds.service import ServiceKind, agent_socket, agent_unreached
from mcfleet.observe.manifest import Manifest
from mcfleet.plan.gone import note_written
from mcfleet.plan.model import Action, Plan
from mcfleet.transport.base import Node, shell_line

Connect = Callable[[HostEntry], Awaitable[Node]]
T = TypeVar("T")
LONG_TIMEOUT = 900.0
CHUNK = 1 << 16


@dataclass(frozen=True)
class MoveWork:
    move: Action
    parts: tuple[Action, ...]

    @property
    def service(self) -> str:
        return self.move.subject.removeprefix("service ")

    @property
    def source(self) -> str:
        return str(self.move.before["host"])

    @property
    def dest(self) -> str:
        return self.move.host

    @property
    def hosts(self) -> set[str]:
        return {self.source, self.dest, *(a.host for a in self.parts)}


def moves_from_plan(plan: Plan) -> list[MoveWork]:
    return [MoveWork(m, tuple(move_parts(plan.actions, m))) for m in moves_in(plan.actions)]


PARTS_DONE = "move_parts_done"  # ApplyContext.data: the subjects of the move's parts carried out on that host
Pick = Callable[[str, Any], bool]  # (manifest list: routes, dns, certs; one entry) -> selected
_LISTS = ("routes", "dns", "certs")


def _subject(field_name: str, item: Any) -> str:
    """The plan's subject of a manifest entry: `route <listener>/<hostname>`, `dns <name>`, `cert <name>`."""
    if field_name == "routes":
        return f"route {item.listener}/{item.hostname}"
    return f"{'dns' if field_name == 'dns' else 'cert'} {item.name}"


def _carried(moves: Sequence[MoveWork], host: str) -> Pick:
    """Which of `host`'s routes, DNS records and certificates the moves carry: the moved services' route
    keys and DNS names (on any host), and on a move's source its certificates for them and every route
    of the service."""
    subjects: set[str] = set()
    services: set[str] = set()
    for m in moves:
        after = m.move.after if isinstance(m.move.after, dict) else {}
        subjects |= {f"route {k}" for k in after.get("routes", [])} | {f"dns {n}" for n in after.get("dns", [])}
        if m.source == host:
            subjects |= {f"cert {c}" for c in after.get("certs", [])}
            services.add(m.service)

    def pick(field_name: str, item: Any) -> bool:
        return _subject(field_name, item) in subjects or (field_name == "routes" and item.service in services)

    return pick


def _done_here(done: set[str]) -> Pick:
    return lambda field_name, item: _subject(field_name, item) in done


def _swapped(base: Manifest, other: Manifest, pick: Pick) -> Manifest:
    """`base` with the routes, DNS records and certificates `pick` selects as `other` lists them."""
    update: dict[str, Any] = {}
    for name in _LISTS:
        mine, theirs = getattr(base, name), getattr(other, name)
        if any(pick(name, x) for x in [*mine, *theirs]):
            kept = [*(x for x in mine if not pick(name, x)), *(x for x in theirs if pick(name, x))]
            update[name] = sorted(kept, key=partial(_subject, name))
    return base.model_copy(update=update) if update else base


def kept_for_moves(new: Manifest, had: Manifest, host: str, moves: Sequence[MoveWork]) -> Manifest:
    """`new` (a host's own apply's record) with the routes, DNS records and certificates the moves carry as
    `had` (the manifest before) lists them.  The host's own apply leaves them to the move (its desired
    state leaves them out), and until the move succeeded they are on the node as they were: a route still
    served, a certificate and its key still in the proxy's folder, a record still at the server.  The
    move records them once it ran their steps."""
    return _swapped(new, had, _carried(moves, host)) if moves else new


@dataclass(frozen=True)
class Ids:
    """A node's agent account and its subordinate ranges (as /etc/passwd, subuid, subgid say)."""

    uid: int
    gid: int
    subuid: tuple[int, int] | None
    subgid: tuple[int, int] | None


def ids_script(user: str) -> str:
    u = shlex.quote(user)
    return "\n".join(
        [
            "set -eu",
            f"echo uid=$(id -u {u}) gid=$(id -g {u})",
            f"echo subuid=$(grep '^{user}:' /etc/subuid 2>/dev/null | head -n1 | cut -d: -f2,3 || true)",
            f"echo subgid=$(grep '^{user}:' /etc/subgid 2>/dev/null | head -n1 | cut -d: -f2,3 || true)",
        ]
    )


def parse_ids(text: str) -> Ids:
    said = {k: v for k, _, v in (part.partition("=") for part in text.split()) if _}
    if not said.get("uid", "").isdecimal() or not said.get("gid", "").isdecimal():
        raise ApplyError(f"unexpected answer reading the agent account's ids: {text.strip()[:200]!r}")

    def span(value: str) -> tuple[int, int] | None:
        start, _, count = value.strip().partition(":")
        return (int(start), int(count)) if start.isdecimal() and count.isdecimal() else None

    return Ids(int(said["uid"]), int(said["gid"]), span(said.get("subuid", "")), span(said.get("subgid", "")))


def restore_script(service: str, archive: str, stamp: str, src: Ids, dst: Ids, *, srv: str = "/srv") -> str:
    """Shell (root, on the destination): unpack `archive`, map the owners, put it at /srv/<service>.

    Every file's new owner is decided from its old one before any is changed (lists first, then
    `chown -h`), so a uid that is both an old and a new id is never mapped twice.
    """
    q = shlex.quote
    folder, work = f"{srv}/{service}", f"{srv}/.{service}.migrate"
    aside = f"{srv}/.{service}.before-migrate.{stamp}"

    def mapper(name: str, own: int, mine: int, src_span: tuple[int, int] | None,
               dst_span: tuple[int, int] | None) -> list[str]:  # fmt: skip
        s0, sn = src_span or (0, 0)
        d0, dn = dst_span or (0, 0)
        return [
            f"{name}() {{",
            f'  if [ "$1" -eq {own} ]; then echo {mine}; return; fi',
            f'  if [ {sn} -gt 0 ] && [ "$1" -ge {s0} ] && [ "$1" -lt {s0 + sn} ]; then',
            f"    off=$(($1 - {s0}))",
            f'    if [ "$off" -ge {dn} ]; then echo "id $1 (offset $off in the source range) has no place in the '
            f'destination range {d0}:{dn}" >&2; exit 4; fi',
            f"    echo $(({d0} + off)); return",
            "  fi",
            '  echo "$1"',
            "}",
        ]

    return "\n".join(
        [
            "set -eu",
            "umask 077",
            f"if [ ! -f {q(archive)} ] || [ -L {q(archive)} ]; then echo 'no archive {archive}' >&2; exit 3; fi",
            f"rm -rf {q(work)}",
            f"mkdir -m 0700 {q(work)}",
            f"tar --numeric-owner --zstd -C {q(work)} -xpf {q(archive)}",
            f"if [ ! -d {q(work + '/' + service)} ]; then echo 'the snapshot holds no {service} folder' >&2; exit 3; fi",  # noqa: E501
            *mapper("map_uid", src.uid, dst.uid, src.subuid, dst.subuid),
            *mapper("map_gid", src.gid, dst.gid, src.subgid, dst.subgid),
            f"lists={q(work + '/.lists')}",
            'mkdir -m 0700 "$lists"',
            f"cd {q(work)}",
            "moved=0",
            f"for id in $(find {q(service)} -printf '%U\\n' | sort -un); do new=$(map_uid \"$id\"); "
            f'if [ "$new" != "$id" ]; then find {q(service)} -uid "$id" -print0 > "$lists/u.$id.$new"; fi; done',
            f"for id in $(find {q(service)} -printf '%G\\n' | sort -un); do new=$(map_gid \"$id\"); "
            f'if [ "$new" != "$id" ]; then find {q(service)} -gid "$id" -print0 > "$lists/g.$id.$new"; fi; done',
            'for list in "$lists"/u.*; do [ -e "$list" ] || continue; new=${list##*.}; '
            'xargs -0 -r chown -h "$new" < "$list"; moved=$((moved + $(tr -cd "\\000" < "$list" | wc -c))); done',
            'for list in "$lists"/g.*; do [ -e "$list" ] || continue; new=${list##*.}; '
            'xargs -0 -r chgrp -h "$new" < "$list"; done',
            'rm -rf "$lists"',
            "cd /",
            f'if [ -d {q(folder)} ] && [ ! -L {q(folder)} ] && [ -z "$(ls -A {q(folder)})" ]; then '
            f"rmdir {q(folder)}; fi",
            f"aside={q(aside)}",
            # a move in the same second as the last one: a name of its own (mv into an existing folder
            # would put the current one inside the earlier one)
            'while [ -e "$aside" ] || [ -L "$aside" ]; do sleep 1; '
            f'aside={q(f"{srv}/.{service}.before-migrate.")}"$(date -u +%Y%m%dT%H%M%SZ)"; done',
            f'if [ -e {q(folder)} ] || [ -L {q(folder)} ]; then mv {q(folder)} "$aside"; echo "aside=$aside"; fi',
            f"mv {q(work + '/' + service)} {q(folder)}",
            f"rmdir {q(work)}",
            f"rm -f {q(archive)}",
            'echo "mapped=$moved"',
        ]
    )


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


async def _process(node: Node, command: str) -> Any:
    """A binary process on the node, escalated like `run` (root's side of a non-root login)."""
    conn = getattr(node, "conn", None)
    if conn is None:
        raise ApplyError("moving a service needs an SSH connection to each node", location=node.name)
    return await conn.create_process(shell_line(command, become=getattr(node, "become", None)), encoding=None)


async def copy_file(src: Node, path: str, dst: Node, dest: str) -> tuple[int, str]:
    """Stream root-readable `path` on `src` to `dest` on `dst` (0600 root, in root's store); (bytes, sha256)."""
    q = shlex.quote
    part = f"{dest}.part"
    reader = await _process(src, f"cat -- {q(path)}")
    writer = await _process(dst, f"set -eu; umask 077; mkdir -p -m 0700 {q(dest.rpartition('/')[0])}; cat > {q(part)}")
    digest, size = hashlib.sha256(), 0
    try:
        while chunk := await reader.stdout.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            writer.stdin.write(chunk)
            await writer.stdin.drain()
        writer.stdin.write_eof()
        await asyncio.wait_for(writer.wait_closed(), LONG_TIMEOUT)
        await asyncio.wait_for(reader.wait_closed(), LONG_TIMEOUT)
    finally:
        reader.close()
        writer.close()
    if reader.exit_status != 0 or writer.exit_status != 0:
        raise ApplyError(f"copying {src.name}:{path} to {dst.name}:{dest} failed (exit {reader.exit_status}/"
                         f"{writer.exit_status})", location=dst.name)  # fmt: skip
    sha = digest.hexdigest()
    check = f"set -eu; [ \"$(sha256sum < {q(part)} | cut -d' ' -f1)\" = {sha} ]; mv -f {q(part)} {q(dest)}"
    res = await dst.run(check, timeout=LONG_TIMEOUT)
    res.check(f"checking the copy of {path} (sha256 {sha[:12]})", dst.name)
    return size, sha


def _fields(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for line in text.splitlines() for part in line.split() if "=" in part)


async def _manifest(node: Node, entry: HostEntry) -> Manifest:
    return (await probe(node, entry.host)).manifest or Manifest()


async def _write_manifest(node: Node, before: Manifest, new: Manifest) -> None:
    if new.content() != before.content():
        await write_manifest(node, new)


@dataclass
class _State:
    """How far one move got (what a failure must undo) and what it found."""

    src: Node
    dst: Node
    on_a: AgentClient
    on_b: AgentClient
    stopped: bool = False
    stop_sent: bool = False  # the agent carries out a stop it was sent, whatever this end hears of it
    started_on_b: bool = False
    snapshot: str = ""
    empty: bool = False  # A had no /srv/<svc>: nothing was copied
    size: int = 0
    sha: str = ""
    seconds: float = 0.0
    restored: dict[str, str] = field(default_factory=dict)


class MoveFailed(Exception):
    """Internal: a step of the move failed; `args[0]` says which and why."""


@dataclass
class Mover:
    """One move; `run` emits the migrate events for the source and the destination."""

    work: MoveWork
    loaded: LoadedFleet
    desired: Mapping[str, DesiredHost]
    connect: Connect
    log: ApplyEvents
    contexts: dict[str, ApplyContext] = field(default_factory=dict)  # host -> its context (record at the end)

    def _ctx(self, host: str, node: Any, manifest: Manifest) -> ApplyContext:
        return ApplyContext(self.loaded, self.loaded.hosts[host], node, self.desired[host], manifest, {})

    def _agent(self, host: str, node: Node) -> Awaitable[str]:
        return agent_socket(node, self.loaded.hosts[host].host.agent.socket)

    async def _first_call(self, host: str, node: Node, call: Awaitable[T]) -> T:
        """The first call to `host`'s agent; one that reached no agent says what is at its socket."""
        try:
            return await call
        except PeerError as exc:
            agent = self.loaded.hosts[host].host.agent
            said = await agent_unreached(node, agent.socket, agent.unit, exc)
            if said is exc:
                raise
            raise MoveFailed(f"{said.message} on {host}: {said.hint}") from None

    async def run(self) -> bool:
        w = self.work
        name, a, b = w.service, w.source, w.dest
        began = time.monotonic()
        for host in (b, a):
            self.log.emit(host, Phase.migrate, Status.start, f"moving {name} {a} → {b}")
        try:
            src = await self.connect(self.loaded.hosts[a])
            dst = await self.connect(self.loaded.hosts[b])
        except McfleetError as exc:
            self._failed(f"{name} not moved: {exc.message}; it keeps running on {a}")
            return False
        async with (
            AgentClient(await self._agent(a, src), long_timeout=LONG_TIMEOUT) as on_a,
            AgentClient(await self._agent(b, dst), long_timeout=LONG_TIMEOUT) as on_b,
        ):
            return await self._steps(src, dst, on_a, on_b, began)

    async def _steps(self, src: Node, dst: Node, on_a: AgentClient, on_b: AgentClient, began: float) -> bool:
        w = self.work
        name, a, b = w.service, w.source, w.dest
        st = _State(src, dst, on_a, on_b)
        try:
            st.stop_sent = True
            answer = await self._first_call(a, src, on_a.stop(name))
            if not answer.ok:
                raise MoveFailed(f"stopping {name} on {a}: {answer.error}")
            st.stopped = True
            # a service without a folder /srv/<svc> on A (no volumes, no files) has nothing to copy
            script = snapshot_script(store_of(src), name, _stamp(), absent_ok=True)
            res = await src.run(script, timeout=LONG_TIMEOUT)
            if not res.ok:
                raise MoveFailed(f"snapshot of /srv/{name} on {a}: {(res.stderr or res.stdout).strip()[-300:]}")
            said = _fields(res.stdout)
            st.empty = "none" in said
            if not st.empty:
                st.snapshot = said["path"]
                await self._carry(st)
            ctx_b = self._ctx(b, dst, await _manifest(dst, self.loaded.hosts[b]))
            self.contexts[b] = ctx_b
            files = [p for p in w.parts if p.phase == Phase.files and p.host == b]
            if files:
                await self._step(FilesKind().apply(ctx_b, files), f"writing {name}'s files on {b}")
            svc = self.desired[b].services[name]
            if svc.spec is None:
                raise MoveFailed(f"{name} has no service definition on {b}")
            st.started_on_b = True
            done = await self._first_call(b, dst, on_b.reconcile([(svc.spec, svc.ports)], prune=False))
            if not done.ok:
                raise MoveFailed(f"{name} did not start healthy on {b}: {done.error}")
            ctx_b.data["deployed"] = [name]
        except (MoveFailed, McfleetError, OSError, TimeoutError) as exc:
            await self._back_to_source(st, exc.message if isinstance(exc, McfleetError) else str(exc))
            return False
        except asyncio.CancelledError:  # Ctrl-C: back to the source, to the end, as after a failure
            st.stopped = st.stopped or st.stop_sent  # a stop cut short may have been carried out: start it again
            if st.stopped:
                _tell(f"{a}: moving {name} to {b} interrupted: starting {name} on {a} again (a second Ctrl-C: "
                      f"{name} stays stopped on {a} and is not started on {b}: run apply again)")  # fmt: skip
            told = await _to_the_end(self._back_to_source(st, "interrupted at Ctrl-C"))
            _tell(f"{a}: {told}")
            raise
        st.seconds = time.monotonic() - began
        return await self._switch_and_clean(st)

    async def _carry(self, st: _State) -> None:
        """A's snapshot copied to B and restored there, file owners mapped to B's ids."""
        w = self.work
        name, a, b = w.service, w.source, w.dest
        ids = []
        for node, host in ((st.src, a), (st.dst, b)):
            said = await node.run(ids_script(self.loaded.hosts[host].host.agent.user), timeout=60)
            said.check(f"reading the agent account's ids on {host}", host)
            ids.append(parse_ids(said.stdout))
        incoming = f"{store_of(st.dst)}/snapshots/incoming-{name}-{_stamp()}.tar.zst"
        st.size, st.sha = await copy_file(st.src, st.snapshot, st.dst, incoming)
        res = await st.dst.run(restore_script(name, incoming, _stamp(), ids[0], ids[1]), timeout=LONG_TIMEOUT)
        if not res.ok:
            raise MoveFailed(f"restoring /srv/{name} on {b}: {(res.stderr or res.stdout).strip()[-300:]}")
        st.restored = _fields(res.stdout)

    async def _step(self, work: Awaitable[Outcome], what: str) -> None:
        outcome = await work
        if outcome.status in ("failed", "blocked"):
            raise MoveFailed(f"{what}: {outcome.message}")

    async def _back_to_source(self, st: _State, why: str) -> str:
        """The service removed from B again if it was started there, started on A again; says so (returned
        too), and what to do when it is left stopped on A."""
        w = self.work
        name, a, b = w.service, w.source, w.dest
        notes = []
        if st.started_on_b:  # the agent on B registered it: remove it there again (its folder stays)
            keep = [(s.spec, s.ports) for n, s in self.desired[b].services.items() if n != name and s.spec]
            try:
                removed = await st.on_b.reconcile(keep, prune=True)
                notes.append(f"removed from {b} again" if removed.ok else f"removing it from {b}: {removed.error}")
            except McfleetError as exc:
                notes.append(f"removing it from {b}: {exc.message}")
        left = f"{name} is stopped on {a} and not started on {b}: run apply again (or `mcfleet agent start {a} {name}`)"
        if st.stopped:
            try:
                again = await st.on_a.start(name)
                failed = f"starting it on {a} again FAILED: {again.error}; {left}"
                notes.append(f"running on {a} again" if again.ok else failed)
            except McfleetError as exc:
                notes.append(f"starting it on {a} again FAILED: {exc.message}; {left}")
        else:
            notes.append(f"still running on {a}")
        kept = f"; snapshot kept at {a}:{st.snapshot}" if st.snapshot else ""
        held = [p.subject for p in w.parts if p.host == a and p.kind == "delete" and p.phase == Phase.deploy]
        later = f" (its planned removals there wait for the move too: {', '.join(held)})" if held else ""
        said = f"{name} not moved: {why}; {', '.join(notes)}{kept}; nothing was removed from {a}{later}"
        self._failed(said)
        return said

    async def _switch_and_clean(self, st: _State) -> bool:
        """B answers its health check: routes and DNS to B, then the removals on A's side."""
        w = self.work
        name, a, b = w.service, w.source, w.dest
        contexts = self.contexts
        try:
            for host in sorted(({p.host for p in w.parts} | {a}) - {b}):
                node = st.src if host == a else await self.connect(self.loaded.hosts[host])
                contexts[host] = self._ctx(host, node, await _manifest(node, self.loaded.hosts[host]))
            kinds: list[tuple[Phase, ResourceKind]] = [(Phase.route, RouteKind()), (Phase.dns, DnsKind())]
            for phase, kind in kinds:  # the changes: now pointing at B
                await self._per_host(phase, kind, lambda p: p.kind != "delete")
            # then the removals on A's side (a DNS name B now declares is none: plan.planner drops it)
            for phase, kind in reversed(kinds):
                await self._per_host(phase, kind, lambda p: p.kind == "delete")
            removals = [p for p in w.parts if p.phase == Phase.deploy and p.host == a] or [self._gone(a)]
            await self._step(ServiceKind().apply(contexts[a], removals), f"removing {name} from {a}")
            stale = [p for p in w.parts if p.phase == Phase.files and p.host == a and p.kind == "delete"]
            if stale:
                await self._step(FilesKind().apply(contexts[a], stale), f"removing {name}'s files on {a}")
            await self._per_host(Phase.cert, CertKind(), lambda p: p.kind == "delete")
        except (MoveFailed, McfleetError, OSError, TimeoutError) as exc:
            why = exc.message if isinstance(exc, McfleetError) else str(exc)
            self._failed(
                f"{name} runs on {b} (healthy) but the switch-over did not finish: {why}; "
                "run `mcfleet plan` to see what is left, then apply again"
            )
            await self._record(contexts, moved=False)
            return False
        except asyncio.CancelledError:  # Ctrl-C: what was done is recorded, to the end
            said = (f"{name} runs on {b} (healthy) but the switch-over was interrupted at Ctrl-C: run apply again "
                    f"to finish it (it is not removed from {a} yet)")  # fmt: skip
            self._failed(said)
            _tell(f"{b}: {said}")
            await _to_the_end(self._record(contexts, moved=False))
            raise
        await self._record(contexts, moved=True)
        mapped = st.restored.get("mapped", "0")
        aside = (f"; the folder {b} had is kept at {st.restored['aside']} (`mcfleet snapshots {b} {name} --prune` "
                 "lists and prunes it)" if st.restored.get("aside") else "")  # fmt: skip
        carried = (
            f"nothing to copy ({a} had no /srv/{name})" if st.empty
            else f"{st.size} bytes (sha256 {st.sha[:12]}), {mapped} owners mapped to {b}'s ids"
        )  # fmt: skip
        self.log.emit(
            b, Phase.migrate, Status.changed,
            f"{name} moved from {a}: {carried}, healthy in {st.seconds:.1f} s; routes and DNS now point here{aside}",
            bytes_sent=st.size, seconds=round(st.seconds, 2),
        )  # fmt: skip
        kept = (
            f"it had no /srv/{name}: no snapshot" if st.empty
            else f"snapshot kept at {st.snapshot} (`mcfleet snapshots {a} {name} --prune --keep 0` removes it)"
        )  # fmt: skip
        self.log.emit(a, Phase.migrate, Status.changed, f"{name} moved to {b} and removed here; {kept}",
                      snapshot=st.snapshot)  # fmt: skip
        return True

    def _gone(self, host: str) -> Action:
        return Action(host=host, phase=Phase.deploy, kind="delete", subject=self.work.move.subject,
                      reason="moved to " + self.work.dest)  # fmt: skip

    async def _per_host(self, phase: Phase, kind: ResourceKind, which: Callable[[Action], bool]) -> None:
        for host, ctx in self.contexts.items():
            acts = [p for p in self.work.parts if p.host == host and p.phase == phase and which(p)]
            if acts:
                await self._step(kind.apply(ctx, acts), f"{phase} on {host}")
                ctx.data.setdefault(PARTS_DONE, set()).update(p.subject for p in acts)

    async def _record(self, contexts: dict[str, ApplyContext], *, moved: bool) -> None:
        """Each host's manifest: the files and services as the move left them; of the routes, DNS records and
        certificates it carries, those whose step ran on the host (all of them once it `moved`: a DNS name
        the destination holds now leaves the source's record without a step) as the host's desired state
        has them, the others as the manifest had them (their change or removal did not run)."""
        for host, ctx in contexts.items():
            had = ctx.manifest
            for made in (FilesKind(), ServiceKind()):
                had = made.record(had, ctx, [])
            done: set[str] = ctx.data.get(PARTS_DONE, set())
            full = had
            for kind in (RouteKind(), DnsKind(), CertKind()):
                acts = [p for p in self.work.parts if p.host == host and p.phase == kind.phase and p.subject in done]
                full = kind.record(full, ctx, acts)
            new = _swapped(had, full, _carried([self.work], host) if moved else _done_here(done))
            try:
                await _write_manifest(ctx.node, ctx.manifest, new)
                note_written(self.loaded.root, host, new)
            except McfleetError as exc:
                self.log.emit(host, Phase.migrate, Status.failed, f"writing the manifest: {exc.message}")

    def _failed(self, message: str) -> None:
        for host in (self.work.dest, self.work.source):
            self.log.emit(host, Phase.migrate, Status.failed, message)


async def _to_the_end(work: Awaitable[T]) -> T:
    """`work` awaited to its end even when this task is cancelled meanwhile (a Ctrl-C while a move puts the
    service back on its source or records what it did); the caller raises the cancellation again."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # `work` itself was cancelled (the event loop shutting down)
                raise


async def carry_out(
    moves: Sequence[MoveWork],
    *,
    loaded: LoadedFleet,
    desired: Mapping[str, DesiredHost],
    connect: Connect,
    log: ApplyEvents,
    ready: Callable[[MoveWork], str | None],
) -> None:
    """Each move in turn; `ready(move)` says why it cannot run now (a host's own apply failed), or None."""
    for work in moves:
        why = ready(work)
        if why:
            for host in (work.dest, work.source):
                log.emit(host, Phase.migrate, Status.skipped,
                         f"{work.service} not moved: {why}; it keeps running on {work.source}")  # fmt: skip
            continue
        await Mover(work, loaded, desired, connect, log).run()
