"""Fleet-wide rules (SPEC §3): pure functions from a loaded fleet to findings.

Each rule has a stable code listed in `findings.RULES`; the pure-Nix validator
in nix/lib implements the same codes and a test compares the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet

Rule = Callable[[LoadedFleet], Iterator[Finding]]


def _host_file(fleet: LoadedFleet, name: str) -> str:
    return fleet.rel(fleet.hosts[name].dir / "host.json")


def rule_dns_fallback(fleet: LoadedFleet) -> Iterator[Finding]:
    internal = {a for e in fleet.hosts.values() for a in e.host.addresses}
    internal |= {ns for e in fleet.hosts.values() for ns in e.host.dns.nameservers}
    for name, entry in sorted(fleet.hosts.items()):
        outside = [a for a in entry.host.dns.fallback if a not in internal]
        if not outside:
            yield Finding(
                "dns-no-fallback",
                _host_file(fleet, name),
                "/dns/fallback",
                f"host {name} has no fallback resolver outside the fleet",
                'add public resolvers, e.g. "fallback": ["1.1.1.1", "8.8.8.8"] (incident lesson 2)',
                name,
            )


RULE_FUNCS: list[Rule] = [rule_dns_fallback]


def check(fleet: LoadedFleet) -> list[Finding]:
    """All findings for a fleet: load findings first, then every rule's."""
    found = list(fleet.findings)
    if fleet.fleet is not None:
        for rule in RULE_FUNCS:
            found.extend(rule(fleet))
    return found
