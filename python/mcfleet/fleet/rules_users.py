"""Rules about pinned system users (incident 2026-04-03: never change a rootless podman user's UID).

Semantics (mirrored by nix/lib, keep them in step):
- pin-mismatch: a host user named in fleet.json `pins` whose uid (gid) differs from the pin,
  without `pin_exception` text -> /users/<name>/uid (gid).
- pin-missing: a pinned user absent from a host's `users` -> /users.
- id-duplicate: two users on one host share a uid (gid) -> the later one's /users/<name>/uid (gid).
- id-dynamic-range: an id inside a range the OS hands out by itself: its dynamic system range
  (nixos 400-999, debian 100-999) or its normal-user range (nixos 1000-29999, debian 1000-60000).
  A fleet pin without `reason` whose id lies in the range of an OS some host runs ->
  fleet.json /pins/<name>/uid (gid).  A host user whose id lies in its OS's range, differs
  from the pin (or is not pinned), and has no `pin_exception` -> /users/<name>/uid (gid).
  (A host user equal to the pin is covered by the pin's own finding, so it is not repeated.)
- id-system-collision: a host user's uid equals the uid of a different account in that host's
  `system_accounts` (the orion sshd/995 case) -> /users/<name>/uid.
- subid-overlap: two accounts on one host whose subuid (subgid) ranges overlap.  The ranges
  are the declared users' (by name) and, on NixOS, the one NixOS gives the SSH login user
  when it is a normal user not declared in `users` (autoSubUidGidRange: the first normal
  user gets 100000:65536), which comes first.  A declared user whose range overlaps one
  before it -> /users/<name>/subuid (subgid), against the first such range.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import OS, Fleet, Host, HostUser, UserPin
from mcfleet.fleet.rules_base import host_file

# Ranges the OS hands out by itself: `useradd --system` / NixOS auto-assigned system users,
# and normal users (Debian login.defs UID_MIN..UID_MAX; NixOS isNormalUser allocation), where
# the next `adduser` may take a pinned id.
DYNAMIC_RANGES: dict[OS, tuple[tuple[str, int, int], ...]] = {
    OS.nixos: (("system", 400, 999), ("user", 1000, 29999)),
    OS.debian: (("system", 100, 999), ("user", 1000, 60000)),
}

_KINDS = ("uid", "gid")


def _range_of(value: int, os: OS) -> str | None:
    """`system range 100-999` (or `user range …`) when the OS hands out `value` by itself."""
    for kind, low, high in DYNAMIC_RANGES[os]:
        if low <= value <= high:
            return f"{kind} range {low}-{high}"
    return None


def rule_pins(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        rel = host_file(loaded, name)
        for user, pin in sorted(fleet.pins.items()):
            have = host.users.get(user)
            if have is None:
                yield Finding(
                    "pin-missing",
                    rel,
                    "/users",
                    f"host {name} does not declare the pinned user {user!r} ({pin.uid}/{pin.gid})",
                    f'add "users": {{"{user}": {{"uid": {pin.uid}, "gid": {pin.gid}}}}}, or, if the node already '
                    "has the account with other ids, declare those ids with a `pin_exception`",
                    name,
                )
                continue
            if have.pin_exception:
                continue
            for kind in _KINDS:
                want, got = getattr(pin, kind), getattr(have, kind)
                if want != got:
                    yield Finding(
                        "pin-mismatch",
                        rel,
                        f"/users/{user}/{kind}",
                        f"{user} has {kind} {got} on {name} but the fleet pins {want}",
                        f"if the node really has {kind} {got} (account older than the pin), keep it and add "
                        f'"pin_exception": "<why>"; never change a live rootless podman user\'s ids; '
                        f"otherwise set {kind} to {want}",
                        name,
                    )


def rule_id_duplicate(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        for kind in _KINDS:
            seen: dict[int, str] = {}
            for user, spec in host.users.items():
                value = getattr(spec, kind)
                if value in seen:
                    yield Finding(
                        "id-duplicate",
                        host_file(loaded, name),
                        f"/users/{user}/{kind}",
                        f"{user} and {seen[value]} share {kind} {value} on {name}",
                        f"give {user} a {kind} of its own (check `getent passwd` on the node first)",
                        name,
                    )
                else:
                    seen[value] = user


def _fleet_oses(loaded: LoadedFleet) -> list[OS]:
    return sorted({e.host.os for e in loaded.hosts.values()})


def rule_dynamic_range(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    oses = _fleet_oses(loaded)
    for user, pin in sorted(fleet.pins.items()):
        if pin.reason:
            continue
        for kind in _KINDS:
            value = getattr(pin, kind)
            hit = [(os, where) for os in oses if (where := _range_of(value, os)) is not None]
            if hit:
                os, where = hit[0]
                yield Finding(
                    "id-dynamic-range",
                    "fleet.json",
                    f"/pins/{user}/{kind}",
                    f"pinned {kind} {value} of {user} lies in {os}'s dynamic {where}",
                    'state why it is safe with "reason": "…" (e.g. checked free on every node), or pick an id '
                    "outside the range",
                )
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        for user, spec in sorted(host.users.items()):
            yield from _host_user_range(loaded, name, host, user, spec, pin=fleet.pins.get(user))


def _host_user_range(
    loaded: LoadedFleet, name: str, host: Host, user: str, spec: HostUser, *, pin: UserPin | None
) -> Iterator[Finding]:
    if spec.pin_exception:
        return
    for kind in _KINDS:
        value = getattr(spec, kind)
        if pin is not None and (pin.reason or getattr(pin, kind) == value):
            continue
        where = _range_of(value, host.os)
        if where is not None:
            yield Finding(
                "id-dynamic-range",
                host_file(loaded, name),
                f"/users/{user}/{kind}",
                f"{kind} {value} of {user} on {name} lies in {host.os}'s dynamic {where}",
                "pin it fleet-wide in fleet.json with a reason, or document the node's existing account with "
                '"pin_exception": "…"',
                name,
            )


def rule_system_collision(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        holders: dict[int, str] = {}
        for account, spec in host.system_accounts.items():
            holders.setdefault(spec.uid, account)
        for user, have in sorted(host.users.items()):
            other = holders.get(have.uid)
            if other is not None and other != user:
                yield Finding(
                    "id-system-collision",
                    host_file(loaded, name),
                    f"/users/{user}/uid",
                    f"uid {have.uid} of {user} is already held by the system account {other!r} on {name}",
                    f"resolve it on the node ({other} keeps its uid); give {user} a free pinned uid, "
                    "before rootless podman ever runs as it",
                    name,
                )


# NixOS autoSubUidGidRange: the first normal user gets 100000:65536 (the next one 165536...).
NIXOS_AUTO_SUBID = (100000, 65536)
SUBID_HINT_START = 2000000000  # above NixOS' and Debian's automatic ranges, below 2^31


def _subid_ranges(host: Host, kind: str) -> list[tuple[str, int, int, bool]]:
    """(account, start, count, automatic) in the order the rule compares them."""
    out: list[tuple[str, int, int, bool]] = []
    login = host.ssh.user
    if host.os == OS.nixos and login != "root" and login not in host.users:
        out.append((login, *NIXOS_AUTO_SUBID, True))
    for user, spec in sorted(host.users.items()):
        rng = getattr(spec, kind)
        if rng is not None:
            out.append((user, rng.start, rng.count, False))
    return out


def rule_subid_overlap(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        for kind in ("subuid", "subgid"):
            ranges = _subid_ranges(host, kind)
            for i, (user, start, count, auto) in enumerate(ranges):
                if auto:
                    continue
                end = start + count - 1
                for other, ostart, ocount, oauto in ranges[:i]:
                    oend = ostart + ocount - 1
                    if start <= oend and ostart <= end:
                        how = ", which NixOS gives the first normal user automatically" if oauto else ""
                        yield Finding(
                            "subid-overlap",
                            host_file(loaded, name),
                            f"/users/{user}/{kind}",
                            f"{kind} range {start}-{end} of {user} on {name} overlaps {other}'s {ostart}-{oend}{how}",
                            f"give {user} a {kind} range no other account on {name} uses, e.g. start "
                            f"{SUBID_HINT_START} count {count}; never move a range rootless podman already uses "
                            "without migrating its storage",
                            name,
                        )
                        break


RULES = [rule_pins, rule_id_duplicate, rule_dynamic_range, rule_system_collision, rule_subid_overlap]
