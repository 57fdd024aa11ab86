"""Rules about resolvers: every host must really fail over to a resolver outside the fleet.

Semantics (mirrored by nix/lib/rules-dns.nix, keep them in step).  "Internal" means an
address of any fleet host or any host's nameserver (compared case-insensitively); a
"public" fallback is a `dns.fallback` entry that is not internal.
- dns-no-fallback: no public entry in `fallback` nor in `fallback_dns` -> /dns/fallback.
- dns-fallback-unused: no public entry in `fallback`, but one in `fallback_dns`
  (systemd-resolved FallbackDNS=, never asked while DNS= servers exist) -> /dns/fallback_dns.
- dns-fallback-internal: a host with a public fallback also lists an internal resolver
  under `fallback` -> /dns/fallback/<i> of each such entry.
- dns-fallback-unreached: `resolver` is resolv.conf and the first public fallback comes
  after the 3rd server of `nameservers` then `fallback` (each once), so glibc never asks it
  -> /dns/fallback/<i> of that entry.
- dns-unreachable: on a host tagged with at least one network (tailnet, lan, public), a
  nameserver or fallback that is an IPv4 address of a network the host is not tagged with:
  Tailscale's 100.64.0.0/10 needs `tailnet`, 10/8, 172.16/12 and 192.168/16 need `lan`
  -> /dns/nameservers/<i> or /dns/fallback/<i>.  Other addresses are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet
from mcfleet.fleet.resolvers import GLIBC_MAXNS, ordered_servers
from mcfleet.fleet.rules_base import host_file


def _internal(loaded: LoadedFleet) -> set[str]:
    found = {a.lower() for e in loaded.hosts.values() for a in e.host.addresses}
    return found | {ns.lower() for e in loaded.hosts.values() for ns in e.host.dns.nameservers}


def rule_dns(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    internal = _internal(loaded)
    for name in sorted(loaded.hosts):
        dns = loaded.hosts[name].host.dns
        rel = host_file(loaded, name)
        public = [a for a in dns.fallback if a.lower() not in internal]
        if not public:
            if any(a.lower() not in internal for a in dns.fallback_dns):
                yield Finding(
                    "dns-fallback-unused",
                    rel,
                    "/dns/fallback_dns",
                    f"host {name} lists public resolvers only in fallback_dns (systemd-resolved FallbackDNS=), "
                    "which is never asked while the fleet nameservers are configured",
                    'move them to "fallback": mcfleet writes those into DNS=, which resolved switches through '
                    "when a server does not answer",
                    name,
                )
            else:
                yield Finding(
                    "dns-no-fallback",
                    rel,
                    "/dns/fallback",
                    f"host {name} has no fallback resolver outside the fleet",
                    'add public resolvers, e.g. "fallback": ["1.1.1.1", "8.8.8.8"]',
                    name,
                )
            continue
        for index, address in enumerate(dns.fallback):
            if address.lower() in internal:
                yield Finding(
                    "dns-fallback-internal",
                    rel,
                    f"/dns/fallback/{index}",
                    f"fallback {address} of {name} is a fleet-internal resolver: "
                    "it fails together with the fleet's DNS",
                    "list it under `nameservers` and keep only resolvers outside the fleet "
                    "(e.g. 1.1.1.1) in `fallback`",
                    name,
                )
        servers = [s.lower() for s in ordered_servers(dns)]
        first = public[0]
        position = servers.index(first.lower())
        if dns.resolver == "resolv.conf" and position >= GLIBC_MAXNS:
            yield Finding(
                "dns-fallback-unreached",
                rel,
                f"/dns/fallback/{dns.fallback.index(first)}",
                f"host {name} resolves through /etc/resolv.conf, where glibc asks only the first "
                f"{GLIBC_MAXNS} nameservers: its first public fallback {first} would be number {position + 1}, "
                "so it is never asked",
                f"keep at most {GLIBC_MAXNS - 1} fleet nameservers ahead of the fallback, or set "
                '"resolver": "systemd-resolved" if the node runs it',
                name,
            )


NETWORK_TAGS = ("tailnet", "lan", "public")


def network_of(address: str) -> tuple[str, str] | None:
    """(tag a host needs to reach `address`, the range) for a Tailnet or private IPv4 address."""
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdecimal() for p in parts):
        return None
    a, b = int(parts[0]), int(parts[1])
    if a == 100 and 64 <= b <= 127:
        return "tailnet", "100.64.0.0/10"
    if a == 10:
        return "lan", "10.0.0.0/8"
    if a == 172 and 16 <= b <= 31:
        return "lan", "172.16.0.0/12"
    if a == 192 and b == 168:
        return "lan", "192.168.0.0/16"
    return None


def rule_dns_reachable(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        host = loaded.hosts[name].host
        if not any(t in NETWORK_TAGS for t in host.tags):
            continue
        for field in ("nameservers", "fallback"):
            for index, address in enumerate(getattr(host.dns, field)):
                net = network_of(address)
                if net is None or net[0] in host.tags:
                    continue
                yield Finding(
                    "dns-unreachable",
                    host_file(loaded, name),
                    f"/dns/{field}/{index}",
                    f"resolver {address} of {name} is in {net[1]} ({net[0]}), but {name} is not tagged "
                    f"{net[0]}: it cannot reach it",
                    f'remove it from {field}, or add the tag "{net[0]}" if {name} really is on that network',
                    name,
                )


RULES = [rule_dns, rule_dns_reachable]
