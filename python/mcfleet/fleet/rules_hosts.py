"""Rules about hosts and their places in the fleet: addresses, roles (resolvers: rules_dns.py).

Semantics (mirrored by nix/lib, keep them in step):
- address-duplicate: an address (compared case-insensitively) already listed by a host
  earlier in name order -> the later host's /addresses/<i>; listed twice by the same host
  -> its later /addresses/<i>.
- edge-containers: a host whose roles are only `edge` has services -> each service file, /components.
- master-count: not exactly one host with the `master` role: none -> file "hosts", pointer "";
  several -> each master's /roles.
- firewall-unmanaged: a Debian host lists firewall_ports -> its /firewall_ports (only a NixOS host's
  configuration opens them, in networking.firewall).
- jump-loop: following `ssh.jump` from host to fleet host comes back to a host: each host on the loop
  -> its /ssh/jump, the loop written from that host (a -> b -> a; a jump to itself: a -> a).  A host
  whose jumps only lead into a loop is not named (the loop's hosts are what to fix).
- unknown-reference (ssh.jump): a jump without `@` that names no host of the fleet -> its /ssh/jump
  (an outside jump host is written user@host[:port]).
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import OS, Fleet, Role
from mcfleet.fleet.rules_base import host_file


def rule_address_duplicate(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    owner: dict[str, str] = {}
    for name in sorted(loaded.hosts):
        mine: set[str] = set()
        for index, address in enumerate(loaded.hosts[name].host.addresses):
            key = address.lower()
            if key in mine:
                yield Finding(
                    "address-duplicate",
                    host_file(loaded, name),
                    f"/addresses/{index}",
                    f"address {address} is listed twice by {name}",
                    "remove the copy: addresses are tried in order, a second copy only delays the next one",
                    name,
                )
                continue
            mine.add(key)
            first = owner.setdefault(key, name)
            if first != name:
                yield Finding(
                    "address-duplicate",
                    host_file(loaded, name),
                    f"/addresses/{index}",
                    f"address {address} of {name} is already an address of {first}",
                    "each address must reach exactly one host: fix the copy-pasted address",
                    name,
                )


def rule_edge_containers(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        entry = loaded.hosts[name]
        if set(entry.host.roles) != {Role.edge}:
            continue
        for index, svc in enumerate(entry.services):
            yield Finding(
                "edge-containers",
                loaded.rel(entry.service_path(index)),
                "/components",
                f"service {svc.name} is placed on {name}, an edge-only host (edge nodes run no containers)",
                f"move services/{svc.name}.json to a worker or master host; the edge only carries public routes",
                name,
            )


def rule_master_count(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    masters = [n for n in sorted(loaded.hosts) if Role.master in loaded.hosts[n].host.roles]
    if not masters:
        yield Finding(
            "master-count",
            "hosts",
            "",
            "no host has the master role",
            'add "master" to the `roles` of exactly one host (the one running the core services)',
        )
    elif len(masters) > 1:
        for name in masters:
            yield Finding(
                "master-count",
                host_file(loaded, name),
                "/roles",
                f"{len(masters)} hosts have the master role ({', '.join(masters)}); there must be exactly one",
                'keep "master" on one host and remove it from the others',
                name,
            )


def rule_firewall_unmanaged(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    # mcfleet opens ports through NixOS's networking.firewall; on Debian it manages no firewall, so the
    # list would be a promise nothing keeps (a port the operator believes open, or closed)
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        if host.os == OS.debian and host.firewall_ports:
            yield Finding(
                "firewall-unmanaged",
                host_file(loaded, name),
                "/firewall_ports",
                f"{name} is a Debian host, and mcfleet opens firewall_ports only in a NixOS host's firewall",
                "remove firewall_ports from this host.json; if the node runs a firewall (nftables), open the "
                "ports there",
                name,
            )


def rule_ssh_jump(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    jumps: dict[str, str] = {}  # host -> the fleet host it jumps through
    for name in sorted(loaded.hosts):
        jump = loaded.hosts[name].host.ssh.jump
        if not jump:
            continue
        if jump in loaded.hosts:
            jumps[name] = jump
        elif "@" not in jump:
            yield Finding(
                "unknown-reference",
                host_file(loaded, name),
                "/ssh/jump",
                f"ssh.jump of {name} names {jump!r}, which is not a host of this fleet",
                "name a host of the fleet (hosts/<name>/host.json, its key pinned there), or write an outside "
                "jump host as user@host[:port] (checked against your known_hosts)",
                name,
            )
    on_loop: dict[str, list[str]] = {}  # each host on a loop -> the loop from it
    done: set[str] = set()
    for start in sorted(jumps):  # each host has at most one jump: a walk ends, or meets its own path
        path: list[str] = []
        here: str | None = start
        while here is not None and here not in done and here not in path:
            path.append(here)
            here = jumps.get(here)
        if here is not None and here in path:
            loop = path[path.index(here) :]
            for i, name in enumerate(loop):
                on_loop[name] = [*loop[i:], *loop[:i]]
        done.update(path)
    for name in sorted(on_loop):
        loop = on_loop[name]
        if len(loop) == 1:
            message = f"ssh.jump of {name} names {name} itself ({name} → {name})"
            hint = f"remove ssh.jump from {name}, or name another host to reach it through"
        else:
            message = f"ssh.jump of {name} leads back to {name}: the jumps form a loop ({' → '.join([*loop, name])})"
            hint = "make the jump chain end at a host reached directly: remove ssh.jump from one host of the loop"
        yield Finding("jump-loop", host_file(loaded, name), "/ssh/jump", message, hint, name)


RULES = [rule_address_duplicate, rule_edge_containers, rule_master_count, rule_firewall_unmanaged, rule_ssh_jump]
