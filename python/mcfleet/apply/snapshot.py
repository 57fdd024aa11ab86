"""Snapshot and restore a service's folder `/srv/<svc>/` on its node.

    report = await snapshot(session, "rift", "mcq", overrides=[])
    report = await restore(session, "rift", "mcq", report.path, overrides=[])

    listing = await snapshots(session, "rift", "mcq", prune=True, keep=1, overrides=[])

Both go through apply's refusal gate first (and so does a prune).  A snapshot stops the
service (through its agent), writes `/srv/<svc>/` as a zstd tar with numeric owners (GNU tar
`--numeric-owner`, so rootless podman's mapped uids come back as they were) into root's store
on the node, `<store>/snapshots/<svc>-<UTC time>.tar.zst` (root 0700: never where the
service's account can write), and starts the service again, also when the archive failed.
Snapshots are kept until the operator removes them (`snapshots HOST [SERVICE] --prune
[--keep N]` keeps each service's newest N; a move between hosts leaves its snapshot on the
source).  A restore stops the service, unpacks the snapshot beside `/srv/<svc>` in a private
folder, moves the current folder aside to `/srv/.<svc>.before-restore.<time>` (kept, listed
by `snapshots` and pruned with the snapshots, by the same rule), puts the unpacked one in its
place and starts the service.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcfleet.agent.client import AgentClient
from mcfleet.apply.nodeio import store_of
from mcfleet.errors import ApplyError, InputError, PeerError, RestoreError, SnapshotError
from mcfleet.kinds.service import agent_socket, agent_unreached
from mcfleet.transport.base import Node

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        size = f" ({self.bytes} bytes, sha256 {self.sha256[:12]})" if self.bytes else ""
        before = f" (the folder before: {self.set_aside or 'none'})" if self.operation == "restore" else ""
        return f"{self.host}: {self.operation} {self.service}: {self.path}{size}{before} in {self.seconds:.1f} s"


def snapshot_script(store: str, service: str, stamp: str, *, srv: str = "/srv") -> str:
    q = shlex.quote
    folder, prefix = f"{srv}/{service}", f"{store}/snapshots/{service}-"
    return "\n".join(
        [
            "set -eu",
            "umask 077",
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


async def _stopped(  # noqa: PLR0917 (one operation's whole context)
    node: Node, agent: Agent, service: str, script: str, host: str, error: type[ApplyError]
) -> str:
    """Run `script` as root with the service stopped; start it again whatever happened.  Failures are
    `error`, which names the operation (snapshot or restore)."""
    target = await agent_socket(node, agent.socket)
    async with AgentClient(target, long_timeout=LONG_TIMEOUT) as client:
        try:
            stopped = await client.stop(service)
        except PeerError as exc:  # no agent reached: nothing was stopped; say what is at its socket
            raise await agent_unreached(node, agent.socket, agent.unit, exc) from None
        if not stopped.ok:
            raise error(f"stopping {service}: {stopped.error}", location=host)
        try:
            res = await node.run(script, timeout=LONG_TIMEOUT)
        finally:
            started = await client.start(service)
        if res.exit_status != 0:
            tail = (res.stderr.strip() or res.stdout.strip())[-400:]
            raise error(f"its script exited with status {res.exit_status}: {tail}", location=host,
                        hint="run `mcfleet ssh HOST` and look at the folder and the store")  # fmt: skip
        if not started.ok:
            raise error(f"starting {service} again: {started.error}", location=host)
    return res.stdout.strip()


async def snapshot(session: ApplySession, host: str, service: str, *, overrides: list[Override]) -> SnapshotReport:
    began = time.monotonic()
    _placed(session, host, service)
    await session.gate([host], overrides)
    entry = session.loaded.hosts[host]
    node = await session.connect(entry)
    await _has_folder(node, host, service)  # before the service is stopped for nothing
    script = snapshot_script(store_of(node), service, _stamp())
    said = await _stopped(node, entry.host.agent, service, script, host, SnapshotError)
    fields = dict(part.split("=", 1) for part in said.splitlines()[-1].split() if "=" in part)
    return SnapshotReport(host, "snapshot", service, fields.get("path", ""), int(fields.get("bytes", "0") or 0),
                          fields.get("sha256", ""), time.monotonic() - began)  # fmt: skip


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
    aside = await _stopped(node, entry.host.agent, service, script, host, RestoreError)
    return SnapshotReport(host, "restore", service, path, seconds=time.monotonic() - began,
                          set_aside=aside.splitlines()[-1] if aside else "")  # fmt: skip


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


ASIDE_NAME = r"[.]([a-z0-9][a-z0-9-]*)[.]before-restore[.]([0-9]{8}T[0-9]{6}Z)"  # in /srv: what a restore replaced


@dataclass
class SnapshotList:
    host: str
    snapshots: list[dict[str, Any]]  # path, service, taken (UTC), bytes
    removed: list[str]
    set_aside: list[dict[str, Any]]  # the folders restores replaced: path, service, taken (UTC), bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        rows = [f"{s['path']}  {s['bytes']} bytes" for s in self.snapshots] or ["no snapshots"]
        rows += [f"{a['path']}  {a['bytes']} bytes (the folder a restore replaced)" for a in self.set_aside]
        gone = [f"removed {p}" for p in self.removed]
        return "\n".join([f"{self.host}:", *(f"  {r}" for r in [*rows, *gone])])


def list_script(store: str) -> str:
    """`<bytes> <name>` per snapshot, then `aside <bytes> <name>` per folder a restore set aside in /srv."""
    q = shlex.quote
    folder = f"{store}/snapshots"
    return (
        f"if [ -d {q(folder)} ]; then cd {q(folder)} && "
        f'for f in *; do [ -f "$f" ] && [ ! -L "$f" ] && echo "$(stat -c %s "$f") $f"; done; fi; '
        'cd /srv 2>/dev/null && for d in .*.before-restore.*; do [ -d "$d" ] && [ ! -L "$d" ] && '
        'echo "aside $(du -sb "$d" | cut -f1) $d"; done; true'
    )


async def _listing(node: Node, host: str) -> tuple[dict[str, int], dict[str, tuple[str, str, int]]]:
    """The snapshots in root's store (name -> bytes) and the folders restores set aside in /srv
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
        # the folders restores replaced, by the same rule: per service, all but the newest `keep`
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
