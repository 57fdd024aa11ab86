"""Values derived from the files, shared by the rules, `render` and the deploy step.

- `route_hostname`: a route's name in DNS: its `hostname`, else `<service>.<zone>`.
- `image_problem`: why an image reference is not pinned (None when it is).
- `port_env`: the `$PORT` / `$PORT_<NAME>` variable a route is passed as.
- `assign_ports`: the host port of every route on a host: its pinned `host_port`, else a
  deterministic port from the fleet range (see the function for the exact scheme).  The
  one port allocator: `render`, the plan and the agent all use its answer.
- `route_port_key` / `service_ports`: the same ports keyed the way the agent's registry
  keys them (`<component>/<route name or index>`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from mcfleet.errors import InputError
from mcfleet.fleet.models import Component, Fleet, Route, Service


def route_hostname(service: Service, route: Route, zone: str) -> str:
    return route.hostname or f"{service.name}.{zone}"


def image_problem(image: str) -> str | None:
    """None for a pinned reference (a tag other than `latest`, or an `@sha256:` digest)."""
    if "@sha256:" in image:
        return None
    # Only the last path part can carry the tag: `mcr.example:8443/x` has a registry port, no tag.
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (podman would pull :latest)"
    tag = last.rsplit(":", 1)[1]
    if not tag:
        return "has an empty tag"
    if tag == "latest":
        return "uses :latest"
    return None


def under_domain(hostname: str, domains: Iterable[str]) -> bool:
    return any(hostname == d or hostname.endswith("." + d) for d in domains)


def port_env(route: Route) -> str:
    """`PORT` for an unnamed route, `PORT_<NAME>` (upper case, '-' -> '_') for a named one:
    the variable a program reads its listening port from."""
    return "PORT" if route.name is None else "PORT_" + route.name.upper().replace("-", "_")


RouteKey = tuple[str, str, int]  # (service, component, index of the route in the component)


def _route_keys(services: Iterable[Service]) -> list[tuple[RouteKey, Component, Route]]:
    found = []
    for svc in services:
        for comp in svc.components:
            for index, route in enumerate(comp.routes):
                found.append(((svc.name, comp.name, index), comp, route))
    return found


def assign_ports(host_name: str, services: Iterable[Service], fleet: Fleet) -> dict[RouteKey, int]:
    """Host port per route on one host.

    A route with `host_port` keeps it.  Every other route starts at
    `min + sha256("<host>/<service>/<component>/<route name or port>") mod (max - min + 1)`
    and probes upward (wrapping) past ports already taken on the host: pinned ports and
    fixed `publish` ports first, then assigned ones in key order.  So a route keeps its
    port across runs and file orderings; it can only move if another route is added whose
    hash lands on the same port before it in key order.
    """
    return assign_ports_in(host_name, services, fleet.ports.min, fleet.ports.max)


def assign_ports_in(host_name: str, services: Iterable[Service], low: int, high: int) -> dict[RouteKey, int]:
    """`assign_ports` with the range given directly (`fleet.json#/ports` for a fleet)."""
    span = high - low + 1
    entries = _route_keys(services)
    taken: set[int] = set()
    result: dict[RouteKey, int] = {}
    for key, comp, route in entries:
        taken.update(p.host_port for p in comp.publish)
        if route.host_port is not None:
            taken.add(route.host_port)
            result[key] = route.host_port
    free = span - len({p for p in taken if low <= p <= high})
    for key, _comp, route in sorted(entries, key=lambda e: e[0]):
        if key in result:
            continue
        if free <= 0:
            raise InputError(
                f"the port range {low}-{high} is exhausted on {host_name}",
                location="fleet.json#/ports",
                hint="widen `ports` in fleet.json or pin `host_port` on some routes",
            )
        label = route.name or str(route.port)
        seed = f"{host_name}/{key[0]}/{key[1]}/{label}".encode()
        port = low + int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % span
        while port in taken:
            port = low if port == high else port + 1
        taken.add(port)
        free -= 1
        result[key] = port
    return result


def route_port_key(component: Component, index: int) -> str:
    """The agent's key of a route's host port: `<component>/<route name or index>`."""
    route = component.routes[index]
    return f"{component.name}/{route.name or index}"


def service_ports(service: Service, ports: dict[RouteKey, int]) -> dict[str, int]:
    """One service's ports from `assign_ports`, keyed as the agent keys them."""
    return {
        route_port_key(comp, index): ports[(service.name, comp.name, index)]
        for comp in service.components
        for index in range(len(comp.routes))
        if (service.name, comp.name, index) in ports
    }
