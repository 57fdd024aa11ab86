"""Host port assignment: stable across applies, unique on the node, free when first given.

Precedence per route: the port the request names > the route's pinned `host_port` > the
port the registry already holds for it > a new free port from the range.  A new port is
checked free by binding it once on 127.0.0.1 (TCP), so a port some other program holds
is skipped rather than handed to a container that would then fail to start.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from mcfleet.agent.spec import route_keys
from mcfleet.errors import McfleetError
from mcfleet.fleet.models import Service


def _is_free(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def assign_ports(
    services: Iterable[tuple[Service, dict[str, int]]],
    previous: dict[str, dict[str, int]],
    *,
    low: int = 10000,
    high: int = 60000,
    in_use: set[int] | None = None,
) -> dict[str, dict[str, int]]:
    """Return `{service: {"<component>/<route>": host_port}}` for every route of every service.

    `services` pairs each service with the ports its request named; `previous` is what the
    registry holds (keeps ports stable); `in_use` are ports already published on the node by
    containers that keep running.
    """
    items = list(services)
    taken: set[int] = set(in_use or ())
    result: dict[str, dict[str, int]] = {}
    pending: list[tuple[str, str]] = []
    # First pass: every port that is already decided (requested, pinned, remembered).
    for service, requested in items:
        mine: dict[str, int] = {}
        old = previous.get(service.name, {})
        for component, index, key in route_keys(service):
            pinned = component.routes[index].host_port
            port = requested.get(key) or pinned or old.get(key)
            if port is None:
                pending.append((service.name, key))
                continue
            mine[key] = port
        result[service.name] = mine
    seen: dict[int, str] = {}
    for name, mine in result.items():
        for key, port in mine.items():
            if port in seen:
                raise McfleetError(
                    f"host port {port} is given to both {seen[port]} and {name}/{key}",
                    location=f"service {name}",
                    hint="give each route its own host_port, or leave it out to have one assigned",
                )
            seen[port] = f"{name}/{key}"
            taken.add(port)
    # Second pass: new ports, lowest free first, so repeated runs give the same answer.
    candidate = low
    for name, key in pending:
        while candidate <= high and (candidate in taken or not _is_free(candidate)):
            candidate += 1
        if candidate > high:
            raise McfleetError(
                f"no free host port left in {low}-{high} for {name}/{key}",
                hint="widen the fleet's port range or remove unused routes",
            )
        result[name][key] = candidate
        taken.add(candidate)
    return result
