"""Host ports: the agent takes the ports it is given.

mcfleet assigns every route's host port once (`fleet.derive.assign_ports`, the one
allocator; `mcfleet render` shows the same numbers) and sends them with each service.
The agent keeps them in its registry, so boot and Recover use the same ports.  Per
route: the port the request names > the route's pinned `host_port` > the port the
registry already holds.  A route with none of these is an error: the agent never
invents a port, so the node cannot disagree with `render` or the plan.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcfleet.agent.spec import route_keys
from mcfleet.errors import McfleetError
from mcfleet.fleet.models import Service


def take_ports(
    services: Iterable[tuple[Service, dict[str, int]]], previous: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Return `{service: {"<component>/<route>": host_port}}` for every route of every service."""
    result: dict[str, dict[str, int]] = {}
    seen: dict[int, str] = {}
    for service, requested in services:
        mine: dict[str, int] = {}
        old = previous.get(service.name, {})
        for component, index, key in route_keys(service):
            port = requested.get(key) or component.routes[index].host_port or old.get(key)
            if port is None:
                raise McfleetError(
                    f"no host port given for route {key} of service {service.name}",
                    location=f"service {service.name}",
                    hint="mcfleet apply sends every route's port (fleet.derive.assign_ports); pass `ports`",
                )
            if port in seen:
                raise McfleetError(
                    f"host port {port} is given to both {seen[port]} and {service.name}/{key}",
                    location=f"service {service.name}",
                    hint="give each route its own host_port, or leave it out to have one assigned",
                )
            seen[port] = f"{service.name}/{key}"
            mine[key] = port
        result[service.name] = mine
    return result
