"""A service's host ports that another program on the node already listens on.

podman cannot publish a port that a program outside mcfleet holds ("address already in use"):
without this check the plan showed `+ service extra` and apply failed in the middle of its stage,
after the stages before it had changed.  The facts script lists the node's listening sockets on
the ports the host's services publish (`/proc/net/tcp*`, `/proc/net/udp*`); the agent's facts say
which ports its registered services hold (rootless podman's port forwarder, or conmon, listens on
them for the container).  Any other listener on a wanted port is foreign, and the service is
refused before anything runs, as an address the node lacks is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcfleet.fleet.desired import DesiredHost, DesiredService
from mcfleet.fleet.routes import canonical_ip
from mcfleet.phase import Phase
from mcfleet.plan.model import Action

Endpoint = tuple[str, str, int]  # (protocol, address, port); address "" is every address


def wanted_endpoints(svc: DesiredService) -> list[Endpoint]:
    """Where the service's containers publish: what the agent hands podman (`agent.spec`), so the
    check and the start agree.  A bind that is a DNS name (not `localhost`) cannot be compared: left out."""
    if svc.spec is None:
        return []
    from mcfleet.agent.spec import container_specs

    out: set[Endpoint] = set()
    for spec in container_specs(svc.spec, svc.ports):
        for port in spec.ports:
            address = _address(port.host_ip)
            if address is not None:
                out.add((port.protocol, address, port.host_port))
    return sorted(out)


def wanted_ports(services: Iterable[DesiredService]) -> tuple[str, ...]:
    """The ports whose listeners the facts script reports, as the kernel prints them (4 hex digits).  Not
    those of an inactive service: its containers stay stopped, so nothing of it is refused for a port."""
    return tuple(sorted({f"{port:04X}" for svc in services if svc.active for _, _, port in wanted_endpoints(svc)}))


def _address(text: str) -> str | None:
    """A bind as the kernel's table prints it; "" (podman: every address) stays ""; None: a name."""
    if text in ("", "localhost"):
        return text and "127.0.0.1"
    return canonical_ip(text)


def held_by_services(agent_facts: dict[str, Any]) -> list[tuple[str, int]]:
    """(protocol, port) of every port a service registered with the agent publishes, whatever its containers'
    state: podman's forwarder of a container that podman restarts (a crash loop), or that is stopping, holds
    the port between its runs, and the agent's start waits for its own ports to be free.  And every port a
    running container of mcfleet's publishes (newer agents say which), so that containers the registry
    lost (a registry removed or reset beside running containers) are not taken for another program."""
    held: set[tuple[str, int]] = set()
    for container in agent_facts.get("containers", []):
        if isinstance(container, dict) and container.get("state") == "running":
            for item in container.get("published") or []:
                proto, _, port = str(item).partition("/")
                if port.isdecimal():
                    held.add((proto, int(port)))
    for entry in agent_facts.get("registry", []):
        if not isinstance(entry, dict):
            continue
        ports = entry.get("ports")
        held |= {("tcp", p) for p in (ports.values() if isinstance(ports, dict) else ()) if isinstance(p, int)}
        spec = entry.get("spec")
        components = spec.get("components") if isinstance(spec, dict) else None
        for component in components if isinstance(components, list) else ():
            publish = component.get("publish") if isinstance(component, dict) else None
            for pub in publish if isinstance(publish, list) else ():
                if isinstance(pub, dict) and isinstance(pub.get("host_port"), int):
                    held.add((str(pub.get("protocol") or "tcp"), pub["host_port"]))
    return sorted(held)


def overlaps(wanted: str, listening: str) -> bool:
    """Whether binding `wanted` fails while a socket is bound to `listening` on the same port: the same
    address, or a wildcard covering the other.  "::" covers IPv4 too (Linux's default dual-stack socket,
    as a Go or Java server opens); "0.0.0.0" only IPv4."""
    if wanted in ("", listening, "::") or listening == "::":
        return True
    v4 = ":" not in wanted and ":" not in listening
    return v4 and "0.0.0.0" in (wanted, listening)


def port_refusal(
    d: DesiredHost,
    name: str,
    svc: DesiredService,
    listening: list[Endpoint] | None,
    held: list[tuple[str, int]] | None,
) -> Action | None:
    """The service refused when another program listens where it publishes; None when nothing is in the
    way or the node's sockets or the agent's ports are unknown (nothing is refused on a guess)."""
    if not listening or held is None:
        return None
    ours, wanted = set(held), wanted_endpoints(svc)
    taken = sorted(
        {
            (proto, address, port)
            for proto, want, port in wanted
            if (proto, port) not in ours
            for lproto, address, lport in listening
            if lproto == proto and lport == port and overlaps(want, address)
        }
    )
    if not taken:
        return None
    where = ", ".join(f"{_endpoint(a, p)}{'/udp' if proto == 'udp' else ''}" for proto, a, p in taken)
    ports = sorted({p for _, _, p in taken})
    filters = " or ".join(f"sport = :{p}" for p in ports)
    return Action(
        host=d.name, phase=Phase.deploy, kind="refuse", subject=f"service {name}",
        before={"listening": [f"{proto} {_endpoint(a, p)}" for proto, a, p in taken]},
        after={"ports": sorted({p for _, _, p in wanted})},
        reason=f"service {name} publishes on a port another program on {d.name} listens on ({where}): "
               "podman could not start its container",
        hint=f"`ss -tulpn '( {filters} )'` on {d.name} names the program: stop it, or give the route or "
             f"publish another host port in {name}.json",
    )  # fmt: skip


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
