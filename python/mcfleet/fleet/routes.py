"""Every route the fleet declares, with the proxy that serves it and the backend it reaches.

A route is (listener, hostname) on a proxy -> a backend address:port, in one of three
modes: `l4` (TLS passed through by SNI), `l7` (TLS ends at the proxy, with a certificate
mcfleet issues) and `re-encrypt` (TLS ends at the proxy, which opens a new TLS connection
to the backend).  Two kinds of backend:

- a component's route (services/<svc>.json): the backend is the container's published host
  port (`fleet.derive.assign_ports`) on the host that runs it;
- a host-native route (host.json `routes`): a program the host runs outside mcfleet
  (e.g. Gitea under systemd), given as address:port.

The proxy is the first edge host (by name) for a `public` route, unless the backend's own
host is an edge; otherwise the backend's own host.  On its own host a backend is reached on
loopback when it is published there; from another host, on the first published address
that is not loopback (`0.0.0.0` means the host's own IPv4 address).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mcfleet.fleet.derive import RouteKey, assign_ports, route_hostname
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Role, Service

# The mode names whose TLS ends at the proxy: they need a certificate on the proxy host.
TERMINATING = frozenset({"l7", "re-encrypt"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True)
class DeclaredRoute:
    """A route a service or host declares, with the proxy host that serves it."""

    listener: int
    hostname: str
    mode: str
    public: bool
    proxy_host: str  # the host whose proxy serves the route
    backend_host: str  # the host the backend runs on
    backend: str  # address:port the proxy connects to
    service: str | None  # None for a host-native route
    file: str  # the file that declares it
    pointer: str  # JSON pointer of the route in that file

    @property
    def key(self) -> str:
        """`<listener>/<hostname>`: a route's identity on its proxy (and in the manifest)."""
        return f"{self.listener}/{self.hostname}"

    @property
    def terminates_tls(self) -> bool:
        return self.mode in TERMINATING


def is_loopback(address: str) -> bool:
    """`localhost`, `::1` or 127.x (textual, so that nix/lib can apply the same test)."""
    bare = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    return bare in ("localhost", "::1") or bare.startswith("127.")


WILDCARDS = ("0.0.0.0", "::", "[::]")


def canonical_ip(text: str) -> str | None:
    """`text` as an IP address in canonical form ("fd00:0::1/64" and "[fd00::1]" are "fd00::1"; a prefix
    length and an IPv6 zone are dropped); None when it is not an address (a name)."""
    bare = text.strip("[]").split("/", 1)[0].split("%", 1)[0]
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return None


def node_binds(service: Service) -> list[str]:
    """The addresses a service publishes on (routes' `bind`, publishes' `host_ip`) that must be the node's
    own: not loopback, not a wildcard."""
    binds = {b for c in service.components for r in c.routes for b in r.bind}
    binds |= {p.host_ip for c in service.components for p in c.publish if p.host_ip is not None}
    return sorted(b for b in binds if not is_loopback(b) and b not in WILDCARDS)


def first_ipv4(entry: HostEntry) -> str:
    """The host's first IPv4 address (its DNS A record), else its first address."""
    for address in entry.host.addresses:
        try:
            if ipaddress.ip_address(address).version == 4:
                return address
        except ValueError:
            continue
    return entry.host.addresses[0]


def edge_host(loaded: LoadedFleet) -> str | None:
    return next((n for n, e in sorted(loaded.hosts.items()) if Role.edge in e.host.roles), None)


def proxy_for(loaded: LoadedFleet, host: str, public: bool) -> str:
    edge = edge_host(loaded)
    if public and edge and Role.edge not in loaded.hosts[host].host.roles:
        return edge
    return host


def _reach(entry: HostEntry, binds: list[str], same_host: bool) -> str:
    """The address a proxy uses to reach a port published on `binds` of `entry`'s host."""
    if same_host:
        if any(is_loopback(b) or b in WILDCARD_BINDS for b in binds):
            return "127.0.0.1"
        return binds[0] if binds else "127.0.0.1"
    for b in binds:
        if b in WILDCARD_BINDS:
            return first_ipv4(entry)
        if not is_loopback(b):
            return f"[{b}]" if ":" in b else b
    return first_ipv4(entry)  # only loopback: unreachable, and `public-loopback` says so


def declared_routes(loaded: LoadedFleet, ports: dict[str, dict[RouteKey, int]] | None = None) -> list[DeclaredRoute]:
    """Every route of the fleet: hosts in name order, each host's own routes, then its services'.

    `ports`: host -> `assign_ports` answer, when the caller already has it.
    """
    out: list[DeclaredRoute] = []
    fleet = loaded.fleet
    if fleet is None:
        return out
    for name, entry in sorted(loaded.hosts.items()):
        host_file = loaded.rel(entry.dir / "host.json")
        for k, native in enumerate(entry.host.routes):
            out.append(
                DeclaredRoute(
                    listener=native.listener,
                    hostname=native.hostname,
                    mode=native.mode,
                    public=native.public,
                    proxy_host=proxy_for(loaded, name, native.public),
                    backend_host=name,
                    backend=native.backend,
                    service=None,
                    file=host_file,
                    pointer=f"/routes/{k}",
                )
            )
        assigned = ports[name] if ports and name in ports else assign_ports(name, entry.services, fleet)
        for index, svc in enumerate(entry.services):
            if not svc.active:
                continue
            svc_file = loaded.rel(entry.service_path(index))
            for i, comp in enumerate(svc.components):
                for j, route in enumerate(comp.routes):
                    proxy = proxy_for(loaded, name, route.public)
                    port = assigned.get((svc.name, comp.name, j), route.port)
                    out.append(
                        DeclaredRoute(
                            listener=route.listener,
                            hostname=route_hostname(svc, route, fleet.zone),
                            mode=route.mode,
                            public=route.public,
                            proxy_host=proxy,
                            backend_host=name,
                            backend=f"{_reach(entry, route.bind, proxy == name)}:{port}",
                            service=svc.name,
                            file=svc_file,
                            pointer=f"/components/{i}/routes/{j}",
                        )
                    )
    return out
