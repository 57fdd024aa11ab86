"""Routes that move to a proxy the plan leaves out: held back, with the selection that plans the move whole.

A route moves between proxies when a service is made public (its node's proxy -> the edge's) or
private again.  Apply adds it on the new proxy first; the old proxy removes it, and the name's A
record is pointed at the new proxy, only once the new proxy took it (apply/pipeline.py).  A plan
of some hosts only (`--on`) may leave the new proxy out: then nothing adds the route there, and
removing it from the old proxy, or sending the name there, would leave the name served by
neither.  Unless the left-out proxy's manifest already records the route (an earlier apply of
that host added it), those actions become refusals, and so does the removal of a certificate the
old proxy still needs for a route it keeps.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from mcfleet.fleet.desired import DesiredHost
from mcfleet.observe.manifest import NO_ANSWER, Manifest
from mcfleet.phase import Phase
from mcfleet.plan.model import Action


def named(a: Action) -> str:
    """The hostname a route or DNS action is about: its subject is "route <listener>/<hostname>" or
    "dns <hostname>"."""
    rest = a.subject.partition(" ")[2]
    return rest.partition("/")[2] if a.phase == Phase.route else rest


def keeps_name(d: DesiredHost, hostname: str) -> bool:
    """The host's proxy still routes the name (on some listener): removing one of its routes is no move."""
    return any(r.hostname == hostname for r in d.routes.values())


def moving_to_left_out(
    actions: Sequence[Action], desired: Mapping[str, DesiredHost], planned: Collection[str]
) -> dict[str, tuple[str, str]]:
    """Action id -> (the proxy host outside `planned` that the route moves to, its hostname), for each
    route removal and each A record sent to such a proxy."""
    proxy_of_name = {r.hostname: host for host, d in desired.items() for r in d.routes.values()}
    out: dict[str, tuple[str, str]] = {}
    for a in actions:
        if (a.phase, a.kind == "delete") not in ((Phase.route, True), (Phase.dns, False)) or a.kind == "refuse":
            continue
        hostname = named(a)  # by name, whatever the listener (a move may change it too)
        stays = a.phase == Phase.route and a.host in desired and keeps_name(desired[a.host], hostname)
        dest = None if stays else proxy_of_name.get(hostname)
        if dest is not None and dest != a.host and dest not in planned:
            out[a.id] = (dest, hostname)
    return out


def _has_route(manifest: Manifest | None, hostname: str) -> bool:
    """The proxy host's last apply recorded a route for the name, and its proxy confirmed it."""
    return manifest is not None and any(r.hostname == hostname and r.backend != NO_ANSWER for r in manifest.routes)


def hold_moves(
    actions: Sequence[Action],
    moving: Mapping[str, tuple[str, str]],
    manifests: Mapping[str, Manifest | None],
    unreachable: Collection[str] = (),
) -> list[Action]:
    """`actions` with each move to a left-out proxy that has not taken the route turned into a refusal,
    and with it the old proxy's removal of a certificate for that name.  `unreachable`: proxy hosts
    the plan selected but could not observe."""
    held: dict[str, tuple[str, str]] = {}  # action id -> (dest, hostname)
    for action_id, (dest, hostname) in moving.items():
        if not _has_route(manifests.get(dest), hostname):
            held[action_id] = (dest, hostname)
    kept_names = {(a.host, held[a.id][1]): held[a.id][0] for a in actions if a.id in held and a.phase == Phase.route}
    out = []
    for a in actions:
        if a.id in held:
            dest, hostname = held[a.id]
            out.append(_refusal(a, dest, hostname, dest in unreachable))
        elif a.phase == Phase.cert and a.kind == "delete" and isinstance(a.before, dict):
            names = [n for n in a.before.get("sans", []) if (a.host, n) in kept_names]
            dest = kept_names[(a.host, names[0])] if names else ""
            out.append(_refusal(a, dest, names[0], dest in unreachable) if names else a)
        else:
            out.append(a)
    return out


def _refusal(a: Action, dest: str, hostname: str, unreachable: bool) -> Action:
    # A name's first A record (a new public service) is no move: its route is new on the other proxy.
    new = a.phase == Phase.dns and a.kind == "create"
    whole = "the new route and its name come together" if new else "the move is whole"
    where, hint = (
        ("which did not answer this plan", f"plan again once {dest} answers; its route phase takes the route first")
        if unreachable
        else ("which this plan leaves out", f"plan both hosts so that {whole}: --on {a.host} --on {dest}")
    )
    what = {
        Phase.route: f"removed here, {hostname} would be served by no proxy",
        Phase.dns: f"{hostname} would lead to a proxy that does not route it",
        Phase.cert: f"{a.host}'s proxy keeps routing {hostname} and needs this certificate",
    }[a.phase]
    return a.model_copy(
        update={
            "kind": "refuse",
            "reason": f"{hostname}'s route {'is new on' if new else 'moves to'} {dest}'s proxy, {where} and which "
            f"has not taken it yet: {what}",
            "hint": hint,
        }
    )
