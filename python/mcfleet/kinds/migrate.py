"""Moving a service to another host, planned as one `move` (pure; apply/migrate.py carries it out).

A service whose file moved from `hosts/A/services/` to `hosts/B/services/` shows in the
per-host diffs as `- service S` on A (A's manifest records it, A's files no longer declare
it) and `+ service S` on B (B's files declare it, B's manifest does not).  `detect_moves`
replaces that pair with ONE action on B: kind `move`, phase `migrate`, subject `service S`,
`before.host` A and `after.host` B, so that the data in `/srv/S/` goes with the service
instead of B starting empty and A's copy being orphaned.

The service's other actions stay in the plan where they are (B's files for S, the route and
DNS changes for its hostnames on any host, A's cert removals for its hostnames, A's other
service removals), each with a reason that says it moves with S; apply runs them as part of
the move, in this order: stop S on A, snapshot `/srv/S/`, copy it to B, restore it there
(file owners mapped between the two nodes' subuid ranges), write S's files on B, start S on
B and wait for its health check, then the routes and DNS records (now pointing at B), and
only then remove S from A.  `move_parts` finds those actions again in a saved plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcfleet.fleet.desired import DesiredHost
from mcfleet.kinds.providers import NOT_RECORDED_HERE
from mcfleet.observe.manifest import Manifest
from mcfleet.phase import Phase
from mcfleet.plan.model import Action


def _service(a: Action) -> str:
    return a.subject.removeprefix("service ")


def move_reason(service: str, source: str, dest: str, *, folder: bool = True) -> str:
    """What the move does; `folder`: the service declares its folder /srv/<service>/ (volumes or files there)."""
    data = (
        f"snapshot /srv/{service}/ there (kept), copy it to {dest}, restore it (owners mapped to {dest}'s subuid range)"
        if folder
        else f"nothing to copy ({service} declares no /srv/{service}/: no volumes or files there; a folder "
        f"{source} still has is snapshotted there (kept) and restored on {dest})"
    )
    return (
        f"moved {source} → {dest}: stop on {source}, {data}, write its files, start it on {dest} and wait "
        f"for its health check, then point its routes and DNS records at {dest}, and only then remove it "
        f"from {source}"
    )


def declares_folder(service: str, d: DesiredHost | None) -> bool:
    """Whether the host's desired state has the service's folder /srv/<service> (or a folder in it)."""
    folder = f"/srv/{service}"
    return d is not None and any(x.path == folder or x.path.startswith(folder + "/") for x in d.dirs)


def _names(service: str, dest: str, desired: Mapping[str, DesiredHost], zone: str | None) -> dict[str, list[str]]:
    """The DNS names, route keys and cert stems that belong to `service` once it runs on `dest`."""
    routes = sorted(
        key for d in desired.values() for key, r in d.routes.items() if r.service == service and r.service_host == dest
    )
    hostnames = {key.partition("/")[2] for key in routes}
    default = f"{service}.{zone}" if zone else None
    records = desired[dest].records if dest in desired else {}
    dns = sorted(n for n in records if n == default or n in hostnames)
    certs = sorted({service, *hostnames})
    return {"dns": dns, "routes": routes, "certs": certs}


def detect_moves(actions: Sequence[Action], desired: Mapping[str, DesiredHost], zone: str | None) -> list[Action]:
    """The actions with each `- service S` on one host + `+ service S` on another made one `move`."""
    deletes = [a for a in actions if a.phase == Phase.deploy and a.kind == "delete"]
    creates = [a for a in actions if a.phase == Phase.deploy and a.kind == "create"]
    moves: list[Action] = []
    for gone in deletes:
        name = _service(gone)
        targets = [c for c in creates if _service(c) == name and c.host != gone.host]
        if len(targets) != 1:  # not declared elsewhere (a removal), or ambiguous: leave it as it is
            continue
        made = targets[0]
        after: dict[str, Any] = dict(made.after) if isinstance(made.after, dict) else {}
        after.update({"host": made.host, **_names(name, made.host, desired, zone)})
        before: dict[str, Any] = dict(gone.before) if isinstance(gone.before, dict) else {}
        before["host"] = gone.host
        moves.append(
            Action(
                host=made.host,
                phase=Phase.migrate,
                kind="move",
                subject=gone.subject,
                before=before,
                after=after,
                reason=move_reason(name, gone.host, made.host, folder=declares_folder(name, desired.get(made.host))),
            )
        )
    if not moves:
        return list(actions)
    replaced = {(m.before["host"], m.subject) for m in moves} | {(m.host, m.subject) for m in moves}
    out = [a for a in actions if not (a.phase == Phase.deploy and (a.host, a.subject) in replaced)]
    out = [_annotated(a, moves) for a in out]
    return [*out, *moves]


def _annotated(a: Action, moves: Sequence[Action]) -> Action:
    """A part of a move says so (its reason), so the plan shows when it runs."""
    for move in moves:
        if belongs(a, move):
            name, source, dest = _service(move), move.before["host"], move.host
            if a.phase == Phase.deploy:
                why = f"{a.reason} (after {name} moved from {source} to {dest})"
            elif a.kind == "delete":
                why = f"{name} moved to {dest}: removed from {source} once {dest} answers its health check"
            else:
                # the name is the source's record, which this host's manifest cannot know about
                base = a.reason.replace(NOT_RECORDED_HERE, f"{source}'s record, which moves with {name}")
                why = f"{base}; part of moving {name} to {dest}: applied after its health check there"
                if a.phase == Phase.files:
                    why = f"{a.reason}; part of moving {name} to {dest}: written over the restored folder"
            return a.model_copy(update={"reason": why})
    return a


def belongs(a: Action, move: Action) -> bool:
    """Whether `a` is carried out by `move` (not by the host's own apply)."""
    if a.kind in ("refuse", "move") or not isinstance(move.after, dict) or not isinstance(move.before, dict):
        return False
    name, source, dest = _service(move), move.before.get("host"), move.host
    if a.phase == Phase.files:
        value = a.after if isinstance(a.after, dict) else a.before if isinstance(a.before, dict) else {}
        if a.kind == "delete":  # the source's copies of its files: removed once B answers
            return a.host == source and value.get("service") == name
        return a.host == dest and value.get("service") == name
    if a.phase == Phase.route:
        return a.subject.removeprefix("route ") in move.after.get("routes", [])
    if a.phase == Phase.dns:
        return a.subject.removeprefix("dns ") in move.after.get("dns", [])
    if a.phase == Phase.cert:
        return (
            a.kind == "delete" and a.host == source and a.subject.removeprefix("cert ") in move.after.get("certs", [])
        )
    if a.phase == Phase.deploy:
        return a.host == source and a.kind == "delete"  # the source's other removals: after the move
    return False


def move_parts(actions: Sequence[Action], move: Action) -> list[Action]:
    return [a for a in actions if belongs(a, move)]


def moves_in(actions: Sequence[Action]) -> list[Action]:
    return [a for a in actions if a.kind == "move"]


def without_moved(d: DesiredHost, moves: Sequence[Action]) -> DesiredHost:
    """A host's desired state without what the moves carry out (its own apply must not start a moved
    service early, nor point its routes or DNS names at the destination before the health check)."""
    from dataclasses import replace

    if not moves:
        return d
    names = {_service(m) for m in moves if m.host == d.name}
    dns = {n for m in moves for n in (m.after or {}).get("dns", [])}
    keys = {k for m in moves for k in (m.after or {}).get("routes", [])}
    return replace(
        d,
        services={n: s for n, s in d.services.items() if n not in names},
        files={p: f for p, f in d.files.items() if f.service not in names},
        records={n: r for n, r in d.records.items() if n not in dns},
        routes={k: r for k, r in d.routes.items() if k not in keys},
    )


def moves_left_out(
    actions: Sequence[Action], recorded_elsewhere: Mapping[str, Manifest | None], desired: Mapping[str, DesiredHost]
) -> list[Action]:
    """A refusal for each service this plan creates that a host left out of it still records.

    Planned for some hosts only, a move's source may be outside the selection: B's `+ service S`
    would start S empty on B while A keeps running it with its data.  `recorded_elsewhere` is
    the manifest of each host outside the selection that answered; a service A records and its
    files no longer declare is refused on B with the selection that plans it as one move.
    """
    refusals: list[Action] = []
    for made in actions:
        if made.phase != Phase.deploy or made.kind != "create":
            continue
        name = _service(made)
        for source, manifest in sorted(recorded_elsewhere.items()):
            still_there = source in desired and name in desired[source].services
            if manifest is None or name not in manifest.services or still_there:
                continue
            refusals.append(
                Action(
                    host=made.host,
                    phase=Phase.migrate,
                    kind="refuse",
                    subject=made.subject,
                    before={"host": source},
                    reason=(
                        f"{name} is recorded on {source}, which this plan leaves out: on its own {made.host} would "
                        f"start {name} without the data in /srv/{name}/ while {source} keeps running it"
                    ),
                    hint=f"plan both hosts so that it is one move: --on {source} --on {made.host}",
                )
            )
    return refusals
