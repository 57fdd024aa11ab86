"""Host-level drift: resolvers (and what keeps DHCP clients and NetworkManager off resolv.conf), the
agent's folder and linger, node vs files.

Every value mcfleet writes on a Debian host outside the users shows here, so a hand edit is
a `~` with the old and new values, and a fresh node's plan lists what provisioning will do.
Only Debian hosts are compared.  A NixOS host gets all of these from its system configuration
(networking.nameservers, services.resolved and mcfleet-dns-zone.service, tmpfiles for /srv,
users.users.mcp.linger, the units): a change in the files is one `~ system old → new` (the
toplevel store path, kinds/system.py) and apply's switch activates it.  A hand edit on a NixOS
node is not shown: the switch to an unchanged system does not undo it (tmpfiles and oneshot
units run again only when they change), so a `~` there would promise what apply does not do.
On NixOS the host kind compares the users' ids and subordinate ranges only.

A resolver mechanism that differs from host.json (resolv.conf managed by systemd-resolved, or
the reverse) is a refusal: the file mcfleet would write is never read there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mcfleet.fleet.host_level import HostLevelWant
from mcfleet.fleet.resolvers import DHCLIENT_HOOK, DHCPCD_HOOK, MANAGED_MARK, NM_DROPIN, ZONE_UNIT_PATH, ResolverFile
from mcfleet.observe.facts import Facts
from mcfleet.observe.hostlevel import HostLevelFacts
from mcfleet.phase import Phase
from mcfleet.plan.model import Action

RESOLVED_STUB = "systemd/resolve"


def significant(text: str | None) -> list[str]:
    """The lines of a resolver file that change behaviour (no comments, no blank lines)."""
    if text is None:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", ";"))]


def host_level_diff(name: str, os: str, want: HostLevelWant, f: Facts) -> list[Action]:
    seen = f.host_level
    if seen is None or os != "debian":
        return []
    acts: list[Action] = []
    on_stub = seen.resolv_link is not None and RESOLVED_STUB in seen.resolv_link
    path = want.resolver_file.path
    if want.resolver == "systemd-resolved" and not on_stub:
        acts.append(_refuse_mechanism(name, "systemd-resolved", f"a plain file ({seen.resolv_link or 'not a link'})"))
    elif want.resolver == "resolv.conf" and on_stub:
        acts.append(_refuse_mechanism(name, "resolv.conf", f"systemd-resolved's stub ({seen.resolv_link})"))
    else:
        have = seen.resolved_conf if want.resolver == "systemd-resolved" else seen.resolv_conf
        if have != want.resolver_file.text:
            acts.append(
                Action(
                    host=name,
                    phase=Phase.host,
                    kind="create" if have is None else "update",
                    subject="resolvers",
                    before=significant(have) if have is not None else None,
                    after=significant(want.resolver_file.text),
                    reason=f"{path}: the fleet's nameservers, then a fallback that fails over"
                    if have is None
                    else f"{path} differs from what host.json makes it (changed on the node, or a new host.json)",
                )
            )
        zone = _zone_diff(name, want, seen)
        if zone is not None:
            acts.append(zone)
        guards = (
            _guard_diff(name, DHCLIENT_GUARD, want.dhclient_hook, seen.dhclient, seen.dhclient_hook),
            _guard_diff(name, NM_GUARD, want.networkmanager_dropin, seen.networkmanager, seen.networkmanager_dropin),
        )
        acts += [g for g in guards if g is not None]
        dhcpcd = _dhcpcd_diff(name, want, seen)
        if dhcpcd is not None:
            acts.append(dhcpcd)
    d = want.agent_dir
    if d is not None:
        have_dir = seen.agent_dir
        if have_dir is None:
            acts.append(
                Action(
                    host=name,
                    phase=Phase.host,
                    kind="create",
                    subject=f"dir {d.path}",
                    after=d.show(),
                    reason=f"the agent's folder, owned by the agent user, mode {d.mode}",
                )
            )
        elif (have_dir.uid, have_dir.gid, have_dir.mode) != (d.uid, d.gid, d.mode):
            acts.append(
                Action(
                    host=name,
                    phase=Phase.host,
                    kind="update",
                    subject=f"dir {d.path}",
                    before=f"{have_dir.uid}:{have_dir.gid} {have_dir.mode}",
                    after=d.show(),
                    reason=f"owner or mode of {d.path} changed on the node",
                )
            )
    for user in want.linger:
        if user not in seen.linger:
            acts.append(
                Action(
                    host=name,
                    phase=Phase.host,
                    kind="create",
                    subject=f"linger {user}",
                    before=False,
                    after=True,
                    reason=f"{user}'s user manager (and its podman socket) must run from boot, without a login",
                )
            )
    socket = _podman_socket(want.podman_socket, seen, f)
    if socket is not None:
        kind, before, after, why = socket
        acts.append(Action(host=name, phase=Phase.host, kind=kind, subject=f"podman.socket {want.podman_socket}",
                           before=before, after=after, reason=why))  # fmt: skip
    return acts


def _podman_socket(user: str | None, seen: HostLevelFacts, f: Facts) -> tuple[str, str, str, str] | None:
    """(kind, before, after, reason) when the agent user's podman.socket is not enabled, or enabled and
    stopped (by hand, or its user manager restarted without it) on a systemd node: the agent cannot reach
    podman then.  Provisioning enables and starts it."""
    if user is None:
        return None
    if seen.podman_socket is False:
        why = f"the agent talks to {user}'s rootless podman through this socket "
        why += "(enabled in its user manager, started now)"
        return "create", "absent", "enabled", why
    if seen.podman_listening is False and f.agent is not None and f.agent.systemd:
        why = f"nothing listens on {user}'s podman socket: the agent cannot reach podman; started now"
        return "update", "stopped", "listening", why
    return None


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text is not None else None


def _zone_diff(name: str, want: HostLevelWant, seen: HostLevelFacts) -> Action | None:
    """systemd-resolved: the zone unit's file, its enabled state, and the routing resolved runs with now."""
    unit = want.zone_unit
    if unit is None:
        if seen.zone_unit is None:
            return None
        return Action(
            host=name,
            phase=Phase.host,
            kind="delete",
            subject="dns zone",
            before={"unit_sha256": _sha(seen.zone_unit), "enabled": seen.zone_unit_enabled or "absent"},
            after=None,
            reason=f"{ZONE_UNIT_PATH} is left from an earlier configuration: this host's resolver routes no zone",
        )
    routed = seen.routed(want.zone)
    missing = [s for s in want.zone_servers if s not in routed]
    why = []
    if seen.zone_unit is None:
        why.append(f"{unit.path} is missing")
    elif seen.zone_unit != unit.text:
        why.append(f"{unit.path} changed on the node (or host.json changed)")
    if seen.zone_unit_enabled != "enabled":
        why.append(f"the unit is {seen.zone_unit_enabled or 'not installed'} at boot")
    if missing:
        why.append(
            f"resolved does not send {want.zone} to {' '.join(missing)} now (the link's settings were reset: "
            "resolvectl revert, the link re-created, another manager set its DNS; or the host has no route to it)"
        )
    if not why:
        return None
    return Action(
        host=name,
        phase=Phase.host,
        kind="create" if seen.zone_unit is None else "update",
        subject=f"dns zone {want.zone}",
        before={
            "unit_sha256": _sha(seen.zone_unit),
            "enabled": seen.zone_unit_enabled or "absent",
            "routed": " ".join(routed) or "nothing",
        },
        after={"unit_sha256": _sha(unit.text), "enabled": "enabled", "routed": " ".join(want.zone_servers)},
        reason="; ".join(why) + f" (names under {want.zone} go to the fleet's nameservers per link, the rest to "
        "the public resolvers)",
    )


@dataclass(frozen=True)
class Guard:
    """A file of mcfleet's own that keeps a program from rewriting resolv.conf, as the plan words it."""

    subject: str
    rewrites: str  # what the program does without it
    stops: str  # how the file stops it
    leftover: str  # why one found with the systemd-resolved resolver goes


DHCLIENT_GUARD = Guard(
    "dhclient hook",
    rewrites="Debian's DHCP client rewrites /etc/resolv.conf with the lease's nameservers at every bind and "
    "renewal, dropping the fallbacks",
    stops="stops it",
    leftover=f"{DHCLIENT_HOOK} is left from an earlier configuration: with systemd-resolved, the lease's "
    "servers go to resolved",
)
NM_GUARD = Guard(
    "networkmanager dns",
    rewrites="NetworkManager rewrites /etc/resolv.conf from its connections' DNS when it starts, reloads or "
    "a connection changes, dropping the fallbacks",
    stops="(dns=none) stops it",
    leftover=f"{NM_DROPIN} is left from an earlier configuration: with systemd-resolved, NetworkManager "
    "hands its servers to resolved",
)


def _guard_diff(
    name: str, guard: Guard, file: ResolverFile | None, installed: bool | None, have: str | None
) -> Action | None:
    """A file of mcfleet's own that keeps a program from rewriting resolv.conf: wanted with the resolv.conf
    resolver where the program is installed; one left from an earlier resolv.conf host goes."""
    if file is None:
        if have is None:
            return None
        return Action(host=name, phase=Phase.host, kind="delete", subject=guard.subject,
                      before=significant(have), after=None, reason=guard.leftover)  # fmt: skip
    if not installed or have == file.text:
        return None
    why = f"{guard.rewrites}: {file.path} {guard.stops}"
    if have is not None:
        why = f"{file.path} changed on the node (or mcfleet's hook changed): {why}"
    return Action(
        host=name,
        phase=Phase.host,
        kind="create" if have is None else "update",
        subject=guard.subject,
        before=significant(have) if have is not None else None,
        after=significant(file.text),
        reason=why,
    )


def _dhcpcd_diff(name: str, want: HostLevelWant, seen: HostLevelFacts) -> Action | None:
    """resolv.conf on a node with dhcpcd: its enter hook skips dhcpcd's resolv.conf hook.  The enter hook
    is one file the operator may use too: mcfleet writes it when absent or its own (its first line), and
    leaves an operator's alone: fine when it or /etc/dhcpcd.conf already turns that hook off, refused
    otherwise (a lease would drop the fallbacks)."""
    hook, have = want.dhcpcd_hook, seen.dhcpcd_hook
    ours = have is not None and have.startswith(MANAGED_MARK)
    if hook is None:
        if not ours:
            return None
        return Action(host=name, phase=Phase.host, kind="delete", subject="dhcpcd hook",
                      before=significant(have or ""), after=None,
                      reason=f"{DHCPCD_HOOK} is left from an earlier configuration: with systemd-resolved, "
                      "mcfleet writes no resolv.conf")  # fmt: skip
    if not seen.dhcpcd or have == hook.text or seen.dhcpcd_nohook:
        return None
    why = (
        "dhcpcd rewrites /etc/resolv.conf with the lease's nameservers at every bind and renewal, dropping the "
        f"fallbacks: {hook.path} makes it skip its resolv.conf hook"
    )
    if have is not None and not ours:
        if _skips_resolv_conf(have):
            return None
        return Action(
            host=name,
            phase=Phase.host,
            kind="refuse",
            subject="dhcpcd hook",
            before=significant(have),
            after=significant(hook.text),
            reason=f"{why}; {hook.path} is not mcfleet's (no '{MANAGED_MARK}' first line): it is left as it is",
            hint=f'add the line skip_hooks="$skip_hooks resolv.conf" to {hook.path}, or `nohook resolv.conf` to '
            "/etc/dhcpcd.conf; or remove the file and let mcfleet write its own",
        )
    if have is not None:
        why = f"{hook.path} changed on the node (or mcfleet's hook changed): {why}"
    return Action(
        host=name,
        phase=Phase.host,
        kind="create" if have is None else "update",
        subject="dhcpcd hook",
        before=significant(have) if have is not None else None,
        after=significant(hook.text),
        reason=why,
    )


def _skips_resolv_conf(enter_hook: str) -> bool:
    """An operator's enter hook that already puts resolv.conf in $skip_hooks."""
    return any(line.strip().startswith("skip_hooks=") and "resolv.conf" in line for line in enter_hook.splitlines())


def _refuse_mechanism(name: str, want: str, have: str) -> Action:
    hint = (
        'set dns.resolver in host.json to what the node runs ("resolv.conf" or "systemd-resolved"), '
        "or switch the node first"
    )
    return Action(
        host=name,
        phase=Phase.host,
        kind="refuse",
        subject="resolvers",
        before=have,
        after=want,
        reason=f"host.json says {want} but /etc/resolv.conf on {name} is {have}: the file mcfleet would write "
        "is never read there",
        hint=hint,
    )
