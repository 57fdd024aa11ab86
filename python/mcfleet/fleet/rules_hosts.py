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


RULES = [rule_address_duplicate, rule_edge_containers, rule_master_count, rule_firewall_unmanaged]
