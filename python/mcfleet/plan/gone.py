"""Hosts whose folder left `hosts/` while their node still holds what mcfleet made there.

A plan looks only at the hosts under `hosts/`.  A host folder deleted before its services were
taken away leaves, with nothing to ever remove them, its containers and files on the node, its
DNS records at the server and its routes on its proxy, while the edge's routes to it go (they
come from the hosts that are declared).  So each plan and apply keeps, in the checkout's state
folder, what each host's manifest last listed: `.mcfleet/hosts-seen.json`, names only (services,
records, routes, certificates, file paths), never a file's content.  A plan lists a host found
there that has no folder any more as `gone`, with what it left; `mcfleet forget HOST` stops that
once the operator has dealt with it.

The file is a cache of what the nodes' manifests said (they stay the record): a plan reads it
once and writes it only when what it lists changes.  One that cannot be read is set aside as
`hosts-seen.json.unreadable` and started again, and the plan says so.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcfleet.observe.manifest import Manifest
from mcfleet.plan.model import GoneHost
from mcfleet.util.files import atomic_write_text
from mcfleet.util.statedir import STATE_DIR, state_dir

SEEN_NAME = "hosts-seen.json"
SEEN_FORMAT = 1
LISTS = ("services", "records", "routes", "certs", "files")


def seen_path(root: Path) -> Path:
    return root / STATE_DIR / SEEN_NAME


def left_behind(manifest: Manifest | None, *, when: str | None = None) -> GoneHost | None:
    """What the node holds that the host's removal would leave in place (None: nothing).  The agent and
    the pinned users are not counted: they serve nothing outside the node."""
    if manifest is None:
        return None
    entry = GoneHost(
        applied_at=when or manifest.applied_at,
        applied_by=manifest.applied_by,
        services=sorted(manifest.services),
        records=sorted(f"{r.name} {r.type} {r.value}" for r in manifest.dns),
        routes=sorted(f"{r.hostname}:{r.listener}" for r in manifest.routes),
        certs=sorted(c.name for c in manifest.certs),
        files=sorted(manifest.files),
    )
    return entry if any(getattr(entry, field) for field in LISTS) else None


def read_seen(root: Path) -> tuple[dict[str, GoneHost], str | None]:
    """The hosts the file lists, and why it could not be read (then it is set aside: nothing is lost)."""
    path = seen_path(root)
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("format") != SEEN_FORMAT or not isinstance(data.get("hosts"), dict):
            raise ValueError(f"not a format-{SEEN_FORMAT} file of mcfleet's")
        return {str(h): GoneHost.model_validate(e) for h, e in data["hosts"].items()}, None
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        aside = path.with_name(f"{SEEN_NAME}.unreadable")
        try:
            os.replace(path, aside)
        except OSError:
            return {}, f"{path} cannot be read ({_first_line(exc)}): hosts gone from the fleet cannot be told"
        return {}, (
            f"{path} could not be read ({_first_line(exc)}); it was set aside as {aside.name} and is made again "
            "from the hosts planned from now on: a host whose folder was deleted before cannot be told"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _write(root: Path, hosts: Mapping[str, GoneHost]) -> None:
    data = {"format": SEEN_FORMAT, "hosts": {h: hosts[h].model_dump(mode="json") for h in sorted(hosts)}}
    state_dir(root)  # made with its .gitignore: this is the checkout's own state, never the fleet's history
    atomic_write_text(seen_path(root), json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)


def update_seen(
    root: Path, manifests: Mapping[str, Manifest | None], *, stamp: bool = False
) -> tuple[dict[str, GoneHost], str | None]:
    """Record what each of these hosts' manifests lists (a host whose manifest lists nothing of the kind
    is dropped); written only when that changes.  `stamp`: the manifests were just written (apply), so
    now is when.  Returns every host the file lists, and why it could not be read or written (or None)."""
    seen, problem = read_seen(root)
    when = datetime.now(UTC).isoformat(timespec="seconds") if stamp else None
    updated = dict(seen)
    for host, manifest in manifests.items():
        entry = left_behind(manifest, when=when)
        if entry is None:
            updated.pop(host, None)
        elif not _same(seen.get(host), entry):
            updated[host] = entry
    if updated == seen and problem is None:
        return updated, None
    try:
        _write(root, updated)
    except OSError as exc:
        return (
            updated,
            problem or f"{seen_path(root)} cannot be written ({exc.strerror or exc}): gone hosts not tracked",
        )
    return updated, problem


def note_written(root: Path, host: str, manifest: Manifest) -> None:
    """Apply wrote this manifest: what the host holds now (best effort: the plan reports a file it cannot
    read or write, and a failed write here must not fail an apply that succeeded on the node)."""
    update_seen(root, {host: manifest}, stamp=True)


def note_records_removed(root: Path, host: str, names: Iterable[str]) -> None:
    """Apply removed these DNS names of a gone host at the server: they are no longer left behind (a host
    left with nothing is dropped).  Best effort, as note_written."""
    seen, problem = read_seen(root)
    entry = seen.get(host)
    if problem or entry is None:
        return
    left = _without_names(entry, set(names))
    if left is None:
        seen.pop(host)
    else:
        seen[host] = left
    with contextlib.suppress(OSError):
        _write(root, seen)


def _same(old: GoneHost | None, new: GoneHost) -> bool:
    """The same things left in place (a new stamp alone is no change worth a write)."""
    return old is not None and all(getattr(old, f) == getattr(new, f) for f in LISTS)


def gone_hosts(
    seen: Mapping[str, GoneHost], declared: Iterable[str], names_declared: Iterable[str] = ()
) -> dict[str, GoneHost]:
    """The hosts that left something on their node and have no folder under hosts/ now.  A DNS name that a
    declared host now declares (its service moved there) is not left behind: that host's record step
    writes it.  Routes, certificates, files and services are the node's own and stay listed."""
    hosts, taken = set(declared), set(names_declared)
    out: dict[str, GoneHost] = {}
    for host, entry in sorted(seen.items()):
        if host in hosts:
            continue
        left = _without_names(entry, taken)
        if left is not None:
            out[host] = left
    return out


def _without_names(entry: GoneHost, names: set[str]) -> GoneHost | None:
    """The entry without the DNS records of these names (`name type value`), or None when nothing is left."""
    left = entry.model_copy(update={"records": [r for r in entry.records if r.split(" ", 1)[0] not in names]})
    return left if any(getattr(left, field) for field in LISTS) else None


def forget(root: Path, hosts: Iterable[str]) -> dict[str, GoneHost]:
    """Drop these hosts from the file (the caller checked they are gone); returns what was dropped."""
    seen, problem = read_seen(root)
    if problem:
        raise OSError(problem)
    dropped = {h: seen.pop(h) for h in hosts if h in seen}
    if dropped:
        _write(root, seen)
    return dropped


LABELS = (("services", "service", "services"), ("records", "DNS record", "DNS records"), ("routes", "route", "routes"),
          ("certs", "certificate", "certificates"), ("files", "file", "files"))  # fmt: skip
SHOWN = 4  # items named per line; the count says how many more


def listed(entry: GoneHost) -> list[tuple[str, str]]:
    """(label, `a, b, c, … (7 in all)`) for each kind of thing a gone host left, in a fixed order."""
    out: list[tuple[str, str]] = []
    for field, _one, many in LABELS:
        items: list[Any] = getattr(entry, field)
        if items:
            more = f", … ({len(items)} in all)" if len(items) > SHOWN else ""
            out.append((many, ", ".join(str(i) for i in items[:SHOWN]) + more))
    return out


def summary(entry: GoneHost) -> str:
    """`2 services, 3 DNS records, 1 route` — what a gone host left, counted on one line."""
    counts = [(len(getattr(entry, field)), one, many) for field, one, many in LABELS]
    return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)
