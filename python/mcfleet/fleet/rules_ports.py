"""Rules about host ports: the ports routes and publishes take on their host.

Semantics (mirrored by nix/lib/rules.nix, keep them in step):
- host-port-duplicate: on one host, a host port pinned twice for the same protocol on an
  overlapping address: a route's `host_port` (tcp, on each `bind` address) or a publish's
  `host_port` (its protocol, tcp by default; on `host_ip`, or every address when it has none),
  in the order services by file, components, then each component's publishes before its
  routes -> the later one's /components/<i>/publish/<k>/host_port or
  /components/<i>/routes/<j>/host_port.
- port-range-exhausted: on one host, more routes without a pinned `host_port` than ports of
  fleet.json `ports` left free by the pinned and published ports -> fleet.json /ports, once
  per host (the allocator would fail at render/apply time).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet

ANY = "*"  # a publish without host_ip listens on every address


@dataclass(frozen=True)
class Pinned:
    """A host port something asks for, and where it is asked."""

    port: int
    protocol: str
    addresses: tuple[str, ...]
    file: str
    pointer: str
    label: str


def _pinned(loaded: LoadedFleet, name: str) -> Iterator[Pinned]:
    """Every pinned host port of a host, in rule order."""
    entry = loaded.hosts[name]
    for index, svc in enumerate(entry.services):
        file = loaded.rel(entry.service_path(index))
        for i, comp in enumerate(svc.components):
            for k, pub in enumerate(comp.publish):
                where = (pub.host_ip or ANY,)
                label = f"{svc.name}/{comp.name} publish {k}"
                yield Pinned(
                    pub.host_port, pub.protocol or "tcp", where, file, f"/components/{i}/publish/{k}/host_port", label
                )
            for j, route in enumerate(comp.routes):
                if route.host_port is not None:
                    label = f"{svc.name}/{comp.name} route {route.name or j}"
                    pointer = f"/components/{i}/routes/{j}/host_port"
                    yield Pinned(route.host_port, "tcp", tuple(route.bind), file, pointer, label)


def rule_host_port_duplicate(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name in sorted(loaded.hosts):
        owners: dict[tuple[str, int], dict[str, str]] = {}  # (protocol, port) -> address -> first label
        for p in _pinned(loaded, name):
            held = owners.setdefault((p.protocol, p.port), {})
            clash = next(
                (held[a] for a in held if a == ANY or ANY in p.addresses or a in p.addresses),
                None,
            )
            if clash is not None:
                yield Finding(
                    "host-port-duplicate",
                    p.file,
                    p.pointer,
                    f"{p.protocol} host port {p.port} on {name} is pinned by {p.label} and already by {clash}",
                    "give each pinned host port on a host (protocol and address) to one route or publish",
                    name,
                )
            else:
                held.update((a, p.label) for a in p.addresses)


def rule_port_range_exhausted(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    low, high = fleet.ports.min, fleet.ports.max
    for name in sorted(loaded.hosts):
        taken = {p.port for p in _pinned(loaded, name) if low <= p.port <= high}
        wanted = sum(
            1 for svc in loaded.hosts[name].services for c in svc.components for r in c.routes if r.host_port is None
        )
        free = high - low + 1 - len(taken)
        if wanted > free:
            yield Finding(
                "port-range-exhausted",
                "fleet.json",
                "/ports",
                f"the port range {low}-{high} has {free} free port(s) on {name} but {wanted} route(s) need one",
                "widen `ports` in fleet.json or pin `host_port` on some routes",
                name,
            )


RULES = [rule_host_port_duplicate, rule_port_range_exhausted]
