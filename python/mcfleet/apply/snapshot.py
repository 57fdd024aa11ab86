"""Snapshot and restore a service's folder `/srv/<svc>/` on its node.

    report = await snapshot(session, "rift", "mcq", overrides=[])
    report = await restore(session, "rift", "mcq", report.path, overrides=[])

    listing = await snapshots(session, "rift", "mcq", prune=True, keep=1, overrides=[])

Both go through apply's refusal gate first (and so does a prune).  A snapshot stops the
service (through its agent), writes `/srv/<svc>/` as a zstd tar with numeric owners (GNU tar
`--numeric-owner`, so rootless podman's mapped uids come back as they were) into root's store
on the node, `<store>/snapshots/<svc>-<UTC time>.tar.zst` (root 0700: never where the
service's account can write), and starts the service again, also when the archive failed or
Ctrl-C came while it was being stopped (the agent carries out a stop it was sent; the start is
waited for, and a line on stderr says whether it started).  A service stopped before (`mcfleet
agent stop`: the agent holds it stopped) is neither stopped nor started: it stays stopped.
Snapshots are kept until the operator removes them (`snapshots HOST [SERVICE] --prune
[--keep N]` keeps each service's newest N; a move between hosts leaves its snapshot on the
source).  A restore stops the service, unpacks the snapshot beside `/srv/<svc>` in a private
folder, moves the current folder aside to `/srv/.<svc>.before-restore.<time>` (kept, listed
by `snapshots` and pruned with the snapshots, by the same rule; so is the folder a move to
this host set aside, `/srv/.<svc>.before-migrate.<time>`), puts the unpacked one in its
place and starts the service (the same way: a stopped one stays stopped).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcfleet.agent.client import AgentClient
from mcfleet.apply.nodeio import store_of
from mcfleet.errors import ApplyError, InputError, McfleetError, PeerError, RestoreError, SnapshotError
from mcfleet.kinds.service import agent_socket, agent_unreached
from mcfleet.transport.base import Node, RunResult
from mcfleet.util.terminal_text import terminal_safe

if TYPE_CHECKING:  # apply/migrate.py (which the pipeline imports) uses this module's scripts
    from mcfleet.apply.planwork import Override
    from mcfleet.apply.session import ApplySession
    from mcfleet.fleet.models import Agent

LONG_TIMEOUT = 900.0


@dataclass
class SnapshotReport:
    host: str
    operation: str
    service: str
    path: str
    bytes: int = 0
    sha256: str = ""
    seconds: float = 0.0
    set_aside: str = ""  # a restore: where the folder it replaced is kept ("" when there was none)
    left_stopped: bool = False  # the service was stopped before (`mcfleet agent stop`): neither stopped nor started

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        size = f" ({self.bytes} bytes, sha256 {self.sha256[:12]})" if self.bytes else ""
        before = f" (the folder before: {self.set_aside or 'none'})" if self.operation == "restore" else ""
        kept = f"; {self.service} was stopped before and stays stopped" if self.left_stopped else ""
        return f"{self.host}: {self.operation} {self.service}: {self.path}{size}{before} in {self.seconds:.1f} s{kept}"


def snapshot_script(store: str, service: str, stamp: str, *, srv: str = "/srv", absent_ok: bool = False) -> str:
    """Shell (root): `/srv/<service>` archived into root's store; prints `path= bytes= sha256=`.  With
    `absent_ok` a service that has no such folder (nothing there, not a link) prints `none=<folder>` and
    succeeds: a move of a service without data has nothing to copy."""
    q = shlex.quote
    folder, prefix = f"{srv}/{service}", f"{store}/snapshots/{service}-"
    absent = [f"if [ ! -e {q(folder)} ] && [ ! -L {q(folder)} ]; then echo none={q(folder)}; exit 0; fi"]
    return "\n".join(
        [
            "set -eu",
            "umask 077",
            *(absent if absent_ok else []),
            f"mkdir -p -m 0700 {q(store + '/snapshots')}",
            f"if [ ! -d {q(folder)} ] || [ -L {q(folder)} ]; then echo 'no folder {folder}' >&2; exit 3; fi",
            f"out={q(prefix + stamp + '.tar.zst')}",
            # a snapshot in the same second as the last one: wait for a name of its own (the rename
            # below would replace the earlier snapshot)
            'while [ -e "$out" ] || [ -L "$out" ]; do sleep 1; '
            f'out={q(prefix)}"$(date -u +%Y%m%dT%H%M%SZ).tar.zst"; done',
            f'tar --numeric-owner --zstd -C {q(srv)} -cf "$out.tmp" {q(service)} || {{ rm -f "$out.tmp"; exit 1; }}',
            'mv -f "$out.tmp" "$out"',
            'echo "path=$out bytes=$(stat -c %s "$out") sha256=$(sha256sum < "$out" | cut -d" " -f1)"',
        ]
    )


def restore_script(service: str, path: str, stamp: str) -> str:
    q = shlex.quote
    folder, work = f"/srv/{service}", f"/srv/.{service}.restore"
    aside = f"/srv/.{service}.before-restore.{stamp}"
    return "\n".join(
        [
            "set -eu",
            f"if [ ! -f {q(path)} ] || [ -L {q(path)} ]; then echo 'no snapshot {path} on this node' >&2; exit 3; fi",
            f"rm -rf {q(work)}",
            f"mkdir -m 0700 {q(work)}",
            f"tar --numeric-owner --zstd -C {q(work)} -xpf {q(path)}",
            f"if [ ! -d {q(work + '/' + service)} ]; then "
            f"echo 'the snapshot holds no {service} folder' >&2; exit 3; fi",
            f"aside={q(aside)}",
            # a restore in the same second as the last one: wait for a name of its own (mv into an
            # existing folder would put the current one inside the earlier one)
            'while [ -e "$aside" ] || [ -L "$aside" ]; do sleep 1; '
            f'aside={q(f"/srv/.{service}.before-restore.")}"$(date -u +%Y%m%dT%H%M%SZ)"; done',
            f'if [ -e {q(folder)} ] || [ -L {q(folder)} ]; then mv {q(folder)} "$aside"; fi',
            f"mv {q(work + '/' + service)} {q(folder)}",
            f"rmdir {q(work)}",
            'echo "$aside"',
        ]
    )


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _placed(session: ApplySession, host: str, service: str) -> None:
    entry = session.loaded.hosts[host]
    if not any(s.name == service for s in entry.services):
        raise InputError(f"{host} has no service {service}", hint=f"mcfleet hosts --on {host}")


async def _has_folder(node: Node, host: str, service: str) -> None:
    folder = shlex.quote(f"/srv/{service}")
    res = await node.run(f"[ -d {folder} ] && [ ! -L {folder} ]", timeout=60)
    if res.exit_status != 0:
        raise SnapshotError(
            f"{service} has no folder /srv/{service} on {host}: nothing to snapshot",
            location=host,
            hint=f"a service's data is the folder /srv/{service}/ its volumes mount; {service} mounts none there",
        )


STOPPED = "stopped"  # the agent's registry: a service it keeps stopped (`mcfleet agent stop`, or `active: false`)


async def _desired(
    client: AgentClient, node: Node, agent: Agent, host: str, service: str, *, error: type[ApplyError]
) -> str:
    """What the agent keeps `service` at, from its registry: "running", or "stopped" (held stopped)."""
    try:
        facts = await client.facts(events=1)
    except PeerError as exc:  # no agent reached: nothing was stopped; say what is at its socket
        raise await agent_unreached(node, agent.socket, agent.unit, exc) from None
    for entry in facts.get("registry", []):
        if isinstance(entry, dict) and entry.get("name") == service:
            return str(entry.get("desired") or "running")  # an agent that sends none keeps it running
    raise error(
        f"the agent holds no service {service}: nothing was stopped",
        location=host,
        hint=f"`mcfleet apply --on {host}` registers it (`mcfleet status --on {host}` shows what runs)",
    )


async def _start_again(client: AgentClient, service: str) -> tuple[str, bool]:
    """Start `service` again: ("", …) when it started, else why not; and whether this task was cancelled
    meanwhile.  The start is taken to its answer even then (Ctrl-C while it runs must not leave the service
    stopped); the caller raises the cancellation again."""
    call = asyncio.ensure_future(client.start(service))
    cancelled = False
    while not call.done():
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            cancelled = True  # this task, or the call too (asyncio.run ending at a second Ctrl-C): see below
        except Exception:  # the call's own failure: read below
            break
    if call.cancelled():
        return "a second Ctrl-C cut its start short", cancelled
    failed = call.exception()
    if isinstance(failed, McfleetError):
        return failed.message, cancelled
    if failed is not None:
        return f"{type(failed).__name__}: {failed}", cancelled
    started = call.result()
    return ("" if started.ok else started.error or "the agent's start failed"), cancelled


def _tell(line: str) -> None:
    """A line on stderr, as the run ends at Ctrl-C (stdout stays the report's, as with --json)."""
    print(terminal_safe(line), file=sys.stderr, flush=True)


def _ran(res: RunResult, service: str, host: str, error: type[ApplyError], *, after: str, hint: str = "") -> str:
    """The script's output; its failure is `error`, with `after` (the service's state) and `hint` added."""
    if res.exit_status != 0:
        tail = (res.stderr.strip() or res.stdout.strip())[-400:]
        raise error(f"its script exited with status {res.exit_status}: {tail}{after}", location=host,
                    hint=hint or f"run `mcfleet ssh {host}` and look at /srv/{service} and the store")  # fmt: skip
    return res.stdout.strip()


def _again(host: str, service: str, why: str) -> tuple[str, str]:
    """What became of the service after its start again (`why`: why it did not start, "" when it did), and
    what to do about it ("" when nothing)."""
    if not why:
        return f"{service} was started again", ""
    return f"{service} was NOT started again ({why})", f"`mcfleet agent start {host} {service}` starts it"


async def _stopped(  # noqa: PLR0917 (one operation's whole context)
    node: Node, agent: Agent, service: str, script: str, host: str, error: type[ApplyError]
) -> tuple[str, bool]:
    """Run `script` as root with the service stopped, and start it again whatever happened: a failure, or
    Ctrl-C while it was being stopped (the agent carries out a stop it was sent all the same), while the
    script ran or while it was being started.  A service the agent holds stopped (`mcfleet agent stop`) is
    neither stopped nor started: the script runs on it as it is, and it stays stopped.  Returns the script's
    output and whether the service was held stopped.  Failures are `error` (snapshot or restore)."""
    op = "restore" if issubclass(error, RestoreError) else "snapshot"
    target = await agent_socket(node, agent.socket)
    async with AgentClient(target, long_timeout=LONG_TIMEOUT) as client:
        if await _desired(client, node, agent, host, service, error=error) == STOPPED:
            try:
                res = await node.run(script, timeout=LONG_TIMEOUT)
            except asyncio.CancelledError:
                _tell(f"{host}: {op} of {service} interrupted; {service} was stopped before it and stays stopped")
                raise
            return _ran(res, service, host, error, after=f" ({service} was stopped before it and stays stopped)"), True
        doing = f"{service} was being stopped"
        try:  # from the moment the stop is sent: it may be carried out whatever this end hears
            try:
                stopped = await client.stop(service)
            except PeerError as exc:  # the agent answered Facts: the stop may have reached it
                raise error(f"stopping {service}: {exc.message}", location=host) from None
            if not stopped.ok:
                raise error(f"stopping {service}: {stopped.error}", location=host)
            doing = f"/srv/{service} was being archived" if op == "snapshot" else "the snapshot was being unpacked"
            res = await node.run(script, timeout=LONG_TIMEOUT)
        except (Exception, asyncio.CancelledError) as exc:  # Ctrl-C is the task's cancellation (asyncio.run)
            if isinstance(exc, asyncio.CancelledError):  # a start waits for its health checks: say what is waited for
                _tell(f"{host}: {op} of {service} interrupted: starting {service} again (a second Ctrl-C: maybe not)")
            why, _ = await _start_again(client, service)
            again, fix = _again(host, service, why)
            if isinstance(exc, asyncio.CancelledError):
                _tell(f"{host}: {op} of {service} interrupted while {doing}; {again}" + (f": {fix}" if fix else ""))
                raise
            if isinstance(exc, McfleetError):
                raise error(f"{exc.message}; {again}", location=exc.location or host,
                            hint=fix or exc.hint) from exc  # fmt: skip
            _tell(f"{host}: {op} of {service} failed while {doing}; {again}" + (f": {fix}" if fix else ""))
            raise
        why, cancelled = await _start_again(client, service)
        again, fix = _again(host, service, why)
        if cancelled:  # Ctrl-C while it was being started: it was waited for all the same
            _tell(f"{host}: {op} of {service} interrupted while {service} was being started again; {again}"
                  + (f": {fix}" if fix else ""))  # fmt: skip
            raise asyncio.CancelledError
        said = _ran(res, service, host, error, after=f"; {again}", hint=fix)
        if why:
            raise error(f"starting {service} again: {why}", location=host, hint=f"the {op} itself is done; {fix}")
    return said, False


async def snapshot(session: ApplySession, host: str, service: str, *, overrides: list[Override]) -> SnapshotReport:
    began = time.monotonic()
    _placed(session, host, service)
    await session.gate([host], overrides)
    entry = session.loaded.hosts[host]
    node = await session.connect(entry)
    await _has_folder(node, host, service)  # before the service is stopped for nothing
    script = snapshot_script(store_of(node), service, _stamp())
    said, left_stopped = await _stopped(node, entry.host.agent, service, script, host, SnapshotError)
    fields = dict(part.split("=", 1) for part in said.splitlines()[-1].split() if "=" in part)
    return SnapshotReport(host, "snapshot", service, fields.get("path", ""), int(fields.get("bytes", "0") or 0),
                          fields.get("sha256", ""), time.monotonic() - began, left_stopped=left_stopped)  # fmt: skip


async def restore(
    session: ApplySession, host: str, service: str, path: str, *, overrides: list[Override]
) -> SnapshotReport:
    began = time.monotonic()
    _placed(session, host, service)
    entry = session.loaded.hosts[host]
    node = await session.connect(entry)
    path = await _snapshot_path(node, host, service, path)
    await session.gate([host], overrides)
    script = restore_script(service, path, _stamp())
    aside, left_stopped = await _stopped(node, entry.host.agent, service, script, host, RestoreError)
    return SnapshotReport(host, "restore", service, path, seconds=time.monotonic() - began,
                          set_aside=aside.splitlines()[-1] if aside else "", left_stopped=left_stopped)  # fmt: skip


LATEST = "latest"


async def _snapshot_path(node: Node, host: str, service: str, given: str) -> str:
    """The snapshot's path in root's store: `given` as printed by `snapshot`, its file name alone, or
    `latest` (the service's newest snapshot on the node).  Nothing outside the store is accepted."""
    store = store_of(node)
    if given == LATEST:
        found, _aside = await _listing(node, host)
        mine = sorted(n for n in found if n.rsplit("-", 1)[0] == service)
        if not mine:
            raise InputError(f"{host} has no snapshot of {service}", hint=f"mcfleet snapshot {host} {service}")
        return f"{store}/snapshots/{mine[-1]}"
    path = given if "/" in given else f"{store}/snapshots/{given}"
    pattern = rf"^{re.escape(store)}/snapshots/{re.escape(service)}-\d{{8}}T\d{{6}}Z\.tar\.zst$"
    if not re.match(pattern, path):
        raise InputError(
            f"{given} is not a snapshot of {service} on {host}",
            hint=f"`latest`, or a path `mcfleet snapshots {host} {service}` lists",
        )
    return path


SNAPSHOT_NAME = r"[a-z0-9][a-z0-9-]*-[0-9]{8}T[0-9]{6}Z[.]tar[.]zst"


# in /srv: the folder a restore (`before-restore`) or a move to this host (`before-migrate`) replaced
ASIDE_NAME = r"[.]([a-z0-9][a-z0-9-]*)[.]before-(?:restore|migrate)[.]([0-9]{8}T[0-9]{6}Z)"


@dataclass
class SnapshotList:
    host: str
    snapshots: list[dict[str, Any]]  # path, service, taken (UTC), bytes
    removed: list[str]
    set_aside: list[dict[str, Any]]  # the folders restores and moves replaced: path, service, taken (UTC), bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        rows = [f"{s['path']}  {s['bytes']} bytes" for s in self.snapshots] or ["no snapshots"]
        rows += [f"{a['path']}  {a['bytes']} bytes (the folder {_replaced_by(a['path'])} replaced)"
                 for a in self.set_aside]  # fmt: skip
        gone = [f"removed {p}" for p in self.removed]
        return "\n".join([f"{self.host}:", *(f"  {r}" for r in [*rows, *gone])])


def _replaced_by(path: str) -> str:
    return "a move here" if ".before-migrate." in path else "a restore"


def list_script(store: str) -> str:
    """`<bytes> <name>` per snapshot, then `aside <bytes> <name>` per folder a restore or a move set aside
    in /srv."""
    q = shlex.quote
    folder = f"{store}/snapshots"
    return (
        f"if [ -d {q(folder)} ]; then cd {q(folder)} && "
        f'for f in *; do [ -f "$f" ] && [ ! -L "$f" ] && echo "$(stat -c %s "$f") $f"; done; fi; '
        'cd /srv 2>/dev/null && for d in .*.before-restore.* .*.before-migrate.*; do [ -d "$d" ] && [ ! -L "$d" ] && '
        'echo "aside $(du -sb "$d" | cut -f1) $d"; done; true'
    )


async def _listing(node: Node, host: str) -> tuple[dict[str, int], dict[str, tuple[str, str, int]]]:
    """The snapshots in root's store (name -> bytes) and the folders restores and moves set aside in /srv
    (name -> service, taken, bytes); names that match neither pattern are ignored."""
    res = await node.run(list_script(store_of(node)), timeout=60)
    res.check("listing the snapshots", host)
    found: dict[str, int] = {}
    aside: dict[str, tuple[str, str, int]] = {}
    for line in res.stdout.splitlines():
        size, _, name = line.partition(" ")
        if re.fullmatch(SNAPSHOT_NAME, name) and size.isdecimal():
            found[name] = int(size)
        elif size == "aside" and (m := re.fullmatch(rf"([0-9]+) {ASIDE_NAME}", name)):
            aside[name.split(" ", 1)[1]] = (m[2], m[3], int(m[1]))
    return found, aside


def select_pruned(names: list[str], service: str | None, keep: int) -> list[str]:
    """The snapshots a prune removes: per service, all but its newest `keep` (names sort by time)."""
    by_service: dict[str, list[str]] = {}
    for name in sorted(names):
        svc = name.rsplit("-", 1)[0]
        if service is None or svc == service:
            by_service.setdefault(svc, []).append(name)
    return [n for group in by_service.values() for n in (group[:-keep] if keep else group)]


async def snapshots(
    session: ApplySession, host: str, service: str | None, *, prune: bool, keep: int, overrides: list[Override]
) -> SnapshotList:
    """The snapshots in root's store on `host` (one service's, or all); with `prune`, remove the older ones."""
    if keep < 0:
        raise InputError(f"--keep {keep} is negative", hint="--keep N keeps each service's newest N snapshots")
    entry = session.loaded.hosts[host]
    node = await session.connect(entry)
    store = store_of(node)
    found, aside = await _listing(node, host)
    removed: list[str] = []
    if prune:
        await session.gate([host], overrides)
        doomed = select_pruned(list(found), service, keep)
        # the folders restores and moves replaced, by the same rule: per service, all but the newest `keep`
        old_aside = select_pruned([f"{a[0]}-{a[1]}" for a in aside.values()], service, keep)
        doomed_aside = [n for n, a in aside.items() if f"{a[0]}-{a[1]}" in old_aside]
        paths = [f"{store}/snapshots/{n}" for n in doomed] + [f"/srv/{n}" for n in doomed_aside]
        if paths:
            gone = await node.run(["rm", "-rf", "--", *paths], timeout=300)
            gone.check("removing snapshots", host)
            removed = paths
            found = {n: b for n, b in found.items() if n not in doomed}
            aside = {n: a for n, a in aside.items() if n not in doomed_aside}
    rows = [
        {"path": f"{store}/snapshots/{n}", "service": n.rsplit("-", 1)[0], "taken": n.rsplit("-", 1)[1][:16],
         "bytes": b}
        for n, b in sorted(found.items())
        if service is None or n.rsplit("-", 1)[0] == service
    ]  # fmt: skip
    set_aside = [
        {"path": f"/srv/{n}", "service": svc, "taken": taken, "bytes": b}
        for n, (svc, taken, b) in sorted(aside.items())
        if service is None or svc == service
    ]
    return SnapshotList(host, rows, removed, set_aside)
