"""Rules about services, their images, routes, placement and boot order.

Semantics (mirrored by nix/lib, keep them in step):
- image-unpinned: an image with no tag, an empty tag or `:latest` (an `@sha256:` digest is
  pinned; a registry port like `host:8443/x` is not a tag) -> /components/<i>/image.
- route-duplicate: in one component, a route name used twice (two unnamed routes count, since
  both would be `$PORT`) -> /components/<i>/routes/<j>/name, or a container port used twice
  -> /components/<i>/routes/<j>/port; reported on the later route.
- public-no-edge: a public route while no host has the `edge` role -> .../routes/<j>/public.
- public-domain: a public route whose hostname (default `<svc>.<zone>`) is not under one of
  fleet.json `public_domains` -> .../routes/<j>/hostname.
- core-off-master: a `core`-stage service on a host without the `master` role -> /stage.
- route-listener-duplicate: a (listener, hostname) already declared by an earlier route, in
  the order: hosts by name, each host's host.json `routes` then its services' routes (file,
  component, route order; a service defined a second time claims nothing) -> the later route's /routes/<k>/listener or
  /components/<i>/routes/<j>/listener.
- route-name-split: while some host has the edge role, one owner (a service, or a host's
  host.json `routes`) on a host without it routes a hostname inside the zone both as public
  and not: the public route is on the edge's proxy, the other on its host's, and the name's A
  record leads to one host -> every route of that hostname whose `public` differs from the
  owner's first route of it (route order): .../routes/<j>/public or /routes/<k>/public.
- public-loopback: a public route whose backend host has no edge role (so the edge's proxy
  must connect to it over the network) while some host has the edge role, and whose backend
  is only on loopback: a component route whose every `bind` address is loopback (127.0.0.0/8,
  ::1, localhost) -> .../routes/<j>/bind; a host route whose backend address is loopback ->
  /routes/<k>/backend.
- bind-other-host: an address a service publishes on (a route's `bind`, a publish's `host_ip`)
  that is another host's address (compared case-insensitively; the first host by name that
  lists it) and not one of its own host's: podman could not bind it on this node.  Loopback
  and wildcard addresses (0.0.0.0, ::) are every node's, even when a host lists one
  -> /components/<i>/routes/<j>/bind/<k> or /components/<i>/publish/<k>/host_ip.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.derive import image_problem, route_hostname, under_domain
from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet, Role, Service, Stage
from mcfleet.fleet.routes import WILDCARDS, is_loopback
from mcfleet.fleet.rules_base import host_file, placed_services


def rule_image_unpinned(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for p in placed_services(loaded):
        for i, comp in enumerate(p.service.components):
            problem = image_problem(comp.image)
            if problem:
                yield Finding(
                    "image-unpinned",
                    p.file,
                    f"/components/{i}/image",
                    f"image {comp.image} of {p.service.name}/{comp.name} {problem}",
                    "pin an explicit version tag, e.g. `…/name:v1.2.0` (or a @sha256: digest)",
                    p.host.name,
                )


def rule_route_duplicate(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for p in placed_services(loaded):
        for i, comp in enumerate(p.service.components):
            names: set[str | None] = set()
            ports: set[int] = set()
            for j, route in enumerate(comp.routes):
                where = f"/components/{i}/routes/{j}"
                if route.name in names:
                    label = repr(route.name) if route.name else "unnamed (both would be $PORT)"
                    yield Finding(
                        "route-duplicate",
                        p.file,
                        f"{where}/name",
                        f"{p.service.name}/{comp.name} has two routes named {label}",
                        "give each route of a component its own `name` (it becomes $PORT_<NAME>)",
                        p.host.name,
                    )
                if route.port in ports:
                    yield Finding(
                        "route-duplicate",
                        p.file,
                        f"{where}/port",
                        f"{p.service.name}/{comp.name} has two routes on container port {route.port}",
                        "each route of a component needs its own port: remove the copy or fix the port",
                        p.host.name,
                    )
                names.add(route.name)
                ports.add(route.port)


def rule_public_routes(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    has_edge = any(Role.edge in e.host.roles for e in loaded.hosts.values())
    for p in placed_services(loaded):
        for i, comp in enumerate(p.service.components):
            for j, route in enumerate(comp.routes):
                if not route.public:
                    continue
                where = f"/components/{i}/routes/{j}"
                name = route_hostname(p.service, route, fleet.zone)
                if not has_edge:
                    yield Finding(
                        "public-no-edge",
                        p.file,
                        f"{where}/public",
                        f"{name} is public but no host has the edge role to carry it",
                        'add "edge" to the roles of the host that takes public traffic, or set "public": false',
                        p.host.name,
                    )
                if not under_domain(name, fleet.public_domains):
                    allowed = ", ".join(fleet.public_domains) or "none declared"
                    yield Finding(
                        "public-domain",
                        p.file,
                        f"{where}/hostname",
                        f"public hostname {name} is not under the fleet's public domains ({allowed})",
                        "set `hostname` to a name under public_domains, or add its domain to fleet.json",
                        p.host.name,
                    )


def rule_core_off_master(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for p in placed_services(loaded):
        if p.service.stage == Stage.core and Role.master not in p.host.roles:
            yield Finding(
                "core-off-master",
                p.file,
                "/stage",
                f"core-stage service {p.service.name} is placed on {p.host.name}, which is not the master",
                "move the service file under the master's hosts/<name>/services/, or give it a later stage",
                p.host.name,
            )


# A route as the listener and name rules see it, a plain tuple (a dataclass took the listener rule
# twice as long on 1,000 hosts): (file, JSON pointer of the route, host, listener, hostname,
# what: "<svc>/<component>" or "<host> host route", public, owner: the service or "<host> host routes").
RouteClaim = tuple[str, str, str, int, str, str, bool, str]


def _listener_claims(loaded: LoadedFleet, fleet: Fleet) -> Iterator[RouteClaim]:
    """Every route, in the rules' order."""
    defined: set[str] = set()
    for name in sorted(loaded.hosts):
        entry = loaded.hosts[name]
        file = host_file(loaded, name)
        for k, native in enumerate(entry.host.routes):
            yield (file, f"/routes/{k}", name, native.listener, native.hostname, f"{name} host route", native.public,
                   f"{name} host routes")  # fmt: skip
        for index, svc in enumerate(entry.services):
            if svc.name in defined:
                continue  # a second definition claims nothing (name-claimed-twice reports it)
            defined.add(svc.name)
            file = loaded.rel(entry.service_path(index))
            for i, comp in enumerate(svc.components):
                for j, route in enumerate(comp.routes):
                    hostname = route_hostname(svc, route, fleet.zone)
                    yield (file, f"/components/{i}/routes/{j}", name, route.listener, hostname,
                           f"{svc.name}/{comp.name}", route.public, svc.name)  # fmt: skip


def rule_route_listener(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    first: dict[tuple[int, str], tuple[str, str]] = {}
    for file, where, host, listener, hostname, what, _public, _owner in _listener_claims(loaded, fleet):
        owner = first.get((listener, hostname))
        if owner is None:
            first[(listener, hostname)] = (file, what)
        else:
            yield Finding(
                "route-listener-duplicate",
                file,
                f"{where}/listener",
                f"{hostname} on listener {listener} is routed twice: by {what} and by {owner[1]} ({owner[0]})",
                "a listener carries a hostname once: give one route another `listener` "
                "(e.g. 443 web, 8443 API, 9443 gRPC) or another hostname",
                host,
            )


def _public_in_zone(loaded: LoadedFleet, fleet: Fleet, edges: list[str]) -> bool:
    """Some public route on a host without the edge role has a name inside the zone."""
    suffix = "." + fleet.zone
    for name, entry in loaded.hosts.items():
        if name in edges:
            continue
        if any(r.public and r.hostname.endswith(suffix) for r in entry.host.routes):
            return True
        for svc in entry.services:
            for comp in svc.components:
                if any(r.public and route_hostname(svc, r, fleet.zone).endswith(suffix) for r in comp.routes):
                    return True
    return False


def rule_route_name_split(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    edges = sorted(n for n, e in loaded.hosts.items() if Role.edge in e.host.roles)
    if not edges or not _public_in_zone(loaded, fleet, edges):
        return  # every route on its own host's proxy; or no name that could lead to two (the common case)
    first: dict[tuple[str, str], RouteClaim] = {}  # (owner, hostname) -> its first route
    for claim in _listener_claims(loaded, fleet):
        file, where, host, listener, hostname, _what, public, owner = claim
        if host in edges or not hostname.endswith("." + fleet.zone):
            continue  # one proxy for all its routes; a name outside the zone gets no record from mcfleet
        was = first.setdefault((owner, hostname), claim)
        if was[6] == public:
            continue
        public_listener, internal_listener = (listener, was[3]) if public else (was[3], listener)
        yield Finding(
            "route-name-split",
            file,
            f"{where}/public",
            f"{hostname} is routed by {edges[0]}'s proxy (public, listener {public_listener}) and by "
            f"{host}'s (listener {internal_listener}), but its A record can lead to one host only",
            "give the public route a hostname of its own (e.g. under public_domains), or set the same "
            '"public" on every route of this hostname',
            host,
        )


def rule_public_loopback(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    if not any(Role.edge in e.host.roles for e in loaded.hosts.values()):
        return  # public-no-edge already says it
    for name in sorted(loaded.hosts):
        entry = loaded.hosts[name]
        if Role.edge in entry.host.roles:
            continue
        for k, native in enumerate(entry.host.routes):
            address = native.backend.rsplit(":", 1)[0]
            if native.public and is_loopback(address):
                yield Finding(
                    "public-loopback",
                    host_file(loaded, name),
                    f"/routes/{k}/backend",
                    f"public route {native.hostname} points at {native.backend} on {name}: loopback, "
                    "which the edge's proxy cannot reach",
                    f"make the program on {name} listen on an address the edge reaches (e.g. its Tailnet "
                    "address) and use it in `backend`, or set `public` to false",
                    name,
                )
        for index, svc in enumerate(entry.services):
            file = loaded.rel(entry.service_path(index))
            for i, comp in enumerate(svc.components):
                for j, route in enumerate(comp.routes):
                    if route.public and all(is_loopback(b) for b in route.bind):
                        hostname = route_hostname(svc, route, fleet.zone)
                        yield Finding(
                            "public-loopback",
                            file,
                            f"/components/{i}/routes/{j}/bind",
                            f"public route {hostname} of {svc.name}/{comp.name} is published only on loopback "
                            f"of {name} ({', '.join(route.bind)}), which the edge's proxy cannot reach",
                            f'add an address of {name} that the edge reaches to "bind" (e.g. its Tailnet '
                            'address), or set "public": false',
                            name,
                        )


def _published_addresses(svc: Service) -> Iterator[tuple[int, str, str]]:
    """(component index, JSON pointer below it, address) of every address the service publishes on."""
    for i, comp in enumerate(svc.components):
        for j, route in enumerate(comp.routes):
            for k, address in enumerate(route.bind):
                yield i, f"routes/{j}/bind/{k}", address
        for k, publish in enumerate(comp.publish):
            if publish.host_ip is not None:
                yield i, f"publish/{k}/host_ip", publish.host_ip


def rule_bind_other_host(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    owner: dict[str, str] = {}
    for name in sorted(loaded.hosts):
        for address in loaded.hosts[name].host.addresses:
            key = address.lower()
            if not is_loopback(key) and key not in WILDCARDS:
                owner.setdefault(key, name)
    for p in placed_services(loaded):
        own = {a.lower() for a in p.host.addresses}
        for i, where, address in _published_addresses(p.service):
            other = owner.get(address.lower())
            if other is None or address.lower() in own:
                continue
            comp = p.service.components[i].name
            yours = f"use one of {p.host.name}'s addresses ({', '.join(p.host.addresses)})"
            roles = set(loaded.hosts[other].host.roles)
            elsewhere = (
                f"; {other} is edge-only and runs no containers"
                if roles == {Role.edge}
                else f", or move {p.service.name}.json to hosts/{other}/services/"
            )
            yield Finding(
                "bind-other-host",
                p.file,
                f"/components/{i}/{where}",
                f"{p.service.name}/{comp} publishes on {address}, an address of {other}, not of {p.host.name} "
                "(podman could not bind it there)",
                yours + elsewhere,
                p.host.name,
            )


RULES = [
    rule_image_unpinned,
    rule_route_duplicate,
    rule_public_routes,
    rule_core_off_master,
    rule_route_listener,
    rule_route_name_split,
    rule_public_loopback,
    rule_bind_other_host,
]
