"""The exact `podman run` command of each component (for recovery by hand, without mcfleet).

For a component the command is, in this order:

    podman run -d --name <container> [--restart R] [--network N] [--user U]
        -p <publish>...  -p <route binds>...  -v <volume>...  -e <route ports>...  -e <env>...
        <image> <cmd>...

- The container name is `Service.container_name` (`mcns`, `mcr-api`, ...).
- `publish` entries become `-p [host_ip:]host_port:container_port[/protocol]` as written.
- Each route is published on every `bind` address at its host port:
  `-p <bind>:<host port>:<route.port>`; the host port is the route's `host_port`, or the
  deterministic port from the fleet range (`derive.assign_ports`).
- Each route also sets `$PORT` (unnamed route) or `$PORT_<NAME>` to the port the program
  must listen on: the container port `route.port` (the host port maps onto it), or, with
  `--network host` where nothing is mapped, the host port itself.  The component's own `env`
  comes after, so an explicit value wins (podman keeps the last `-e`).
- With `--network host` podman discards port mappings, so none are written.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass

from mcfleet.errors import InputError
from mcfleet.fleet.derive import RouteKey, assign_ports, port_env
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Component, Fleet, Service


@dataclass(frozen=True)
class Rendered:
    host: str
    service: str
    component: str
    container: str
    argv: list[str]

    def command(self, *, multiline: bool = False) -> str:
        """Shell-quoted; multi-line keeps each option and its value on one line, as in the runbook."""
        if not multiline:
            return shlex.join(self.argv)
        lines: list[list[str]] = [self.argv[:5]]  # podman run -d --name X
        rest = self.argv[5:]
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            lines.append(rest[i : i + 2])
            i += 2
        lines.append(rest[i : i + 1])  # the image
        if rest[i + 1 :]:
            lines.append(rest[i + 1 :])
        return " \\\n  ".join(shlex.join(part) for part in lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "service": self.service,
            "component": self.component,
            "container": self.container,
            "argv": self.argv,
            "command": self.command(),
        }


def _hostport(address: str, host_port: int, container_port: int) -> str:
    bind = f"[{address}]" if ":" in address else address
    return f"{bind}:{host_port}:{container_port}"


def component_argv(service: Service, comp: Component, ports: dict[RouteKey, int]) -> list[str]:
    argv = ["podman", "run", "-d", "--name", service.container_name(comp)]
    if comp.restart:
        argv += ["--restart", comp.restart]
    if comp.network:
        argv += ["--network", comp.network]
    if comp.user:
        argv += ["--user", comp.user]
    host_net = comp.network == "host"
    if not host_net:
        for pub in comp.publish:
            spec = f"{pub.host_port}:{pub.container_port}"
            if pub.host_ip:
                spec = _hostport(pub.host_ip, pub.host_port, pub.container_port)
            argv += ["-p", spec + (f"/{pub.protocol}" if pub.protocol else "")]
    route_env = []
    for index, route in enumerate(comp.routes):
        host_port = ports[(service.name, comp.name, index)]
        if not host_net:
            for address in route.bind:
                argv += ["-p", _hostport(address, host_port, route.port)]
        route_env.append(f"{port_env(route)}={host_port if host_net else route.port}")
    for volume in comp.volumes:
        argv += ["-v", volume]
    for item in [*route_env, *comp.env]:
        argv += ["-e", item]
    return [*argv, comp.image, *comp.cmd]


def render_service(entry: HostEntry, service: Service, fleet: Fleet) -> list[Rendered]:
    """One command per component, in the order the service file lists them."""
    ports = assign_ports(entry.host.name, entry.services, fleet)
    return [
        Rendered(
            entry.host.name, service.name, comp.name, service.container_name(comp), component_argv(service, comp, ports)
        )
        for comp in service.components
    ]


def find_host(loaded: LoadedFleet, host: str) -> HostEntry:
    if host not in loaded.hosts:
        close = difflib.get_close_matches(host, sorted(loaded.hosts), n=1)
        raise InputError(
            f"no host named {host!r}",
            location=f"--host {host}",
            hint=f"did you mean {close[0]!r}?" if close else "see `mcfleet hosts`",
        )
    return loaded.hosts[host]


def find_service(loaded: LoadedFleet, name: str, host: str | None = None) -> tuple[HostEntry, Service]:
    """The one placement of a service (on `host` when given); InputError with a suggestion otherwise."""
    if host is not None:
        find_host(loaded, host)
    found = [
        (entry, svc)
        for hname, entry in sorted(loaded.hosts.items())
        if host is None or hname == host
        for svc in entry.services
        if svc.name == name
    ]
    if not found:
        # the services of the host asked about (of the fleet without one): those it could have meant
        known = sorted(
            {s.name for e in loaded.hosts.values() if host is None or e.host.name == host for s in e.services}
        )
        where = f" on {host}" if host else ""
        elsewhere = sorted(e.host.name for e in loaded.hosts.values() for s in e.services if s.name == name)
        if elsewhere:  # the name is right, the host is not: never "did you mean" the name just typed
            hint = f"{name} is placed on {', '.join(elsewhere)}: `mcfleet render {elsewhere[0]} {name}`"
        else:
            close = difflib.get_close_matches(name, known, n=3)
            hint = (
                f"did you mean {' or '.join(map(repr, close))}?" if close else f"services: {', '.join(known) or 'none'}"
            )
        folder = loaded.rel(loaded.root / "hosts" / host / "services") if host else loaded.rel(loaded.root / "hosts")
        raise InputError(f"no service named {name!r}{where}", location=folder, hint=hint)
    if len(found) > 1:
        raise InputError(
            f"service {name!r} is placed on several hosts: {', '.join(e.host.name for e, _ in found)}",
            hint="pick one with --host (and fix the fleet: `mcfleet validate` reports name-claimed-twice)",
        )
    return found[0]


def render_host(entry: HostEntry, fleet: Fleet) -> list[Rendered]:
    """Every component of every service on a host, in boot-stage order (foundation first)."""
    ordered = sorted(entry.services, key=lambda s: (s.stage.order, s.name))
    return [r for svc in ordered for r in render_service(entry, svc, fleet)]
