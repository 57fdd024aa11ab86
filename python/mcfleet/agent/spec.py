"""From a registered service to the exact containers podman must run.

Pure functions, no I/O: a `Service` (fleet model) plus its assigned host ports becomes one
`ContainerSpec` per component.  The spec hash covers everything that shapes the container,
so a changed hash means "recreate", an equal one means "leave it alone".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from mcfleet.fleet.models import Component, Health, Service, Stage

LABEL_MANAGED = "io.mcfleet.managed"
LABEL_SERVICE = "io.mcfleet.service"
LABEL_COMPONENT = "io.mcfleet.component"
LABEL_STAGE = "io.mcfleet.stage"
LABEL_HASH = "io.mcfleet.spec-hash"


@dataclass(frozen=True)
class PortMap:
    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class VolumeMap:
    source: str  # absolute host path, or a named podman volume
    target: str
    mode: str = "rw"


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    service: str
    component: str
    stage: Stage
    image: str
    command: list[str]
    env: dict[str, str]
    ports: list[PortMap]
    volumes: list[VolumeMap]
    user: str | None
    restart: str | None
    network: str | None
    health: Health | None = field(default=None, compare=False)

    @property
    def spec_hash(self) -> str:
        shape = asdict(self)
        shape.pop("health")
        shape["stage"] = self.stage.value
        blob = json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_SERVICE: self.service,
            LABEL_COMPONENT: self.component,
            LABEL_STAGE: self.stage.value,
            LABEL_HASH: self.spec_hash,
        }

    def host_port_for(self, container_port: int) -> tuple[str, int] | None:
        """Where the host reaches `container_port` (for tcp/http health checks)."""
        for port in self.ports:
            if port.container_port == container_port and port.protocol == "tcp":
                ip = port.host_ip if port.host_ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
                return ip, port.host_port
        return None


def route_key(component: Component, index: int) -> str:
    """The registry key of a route's host port: `<component>/<route name or index>`."""
    route = component.routes[index]
    return f"{component.name}/{route.name or index}"


def route_keys(service: Service) -> list[tuple[Component, int, str]]:
    return [(c, i, route_key(c, i)) for c in service.components for i in range(len(c.routes))]


def port_env(component: Component, ports: dict[str, int]) -> dict[str, str]:
    """$PORT for a single unnamed route, $PORT_<NAME> for named routes (the seed's convention)."""
    env: dict[str, str] = {}
    for index, route in enumerate(component.routes):
        port = ports.get(route_key(component, index))
        if port is None:
            continue
        if route.name:
            env["PORT_" + re.sub(r"[^A-Z0-9]", "_", route.name.upper())] = str(port)
        elif len(component.routes) == 1:
            env["PORT"] = str(port)
    return env


def _volume(item: str) -> VolumeMap:
    parts = item.split(":")
    mode = parts[2] if len(parts) == 3 else "rw"
    return VolumeMap(source=parts[0], target=parts[1], mode=mode)


def container_specs(service: Service, ports: dict[str, int]) -> list[ContainerSpec]:
    """One spec per component, in declaration order (the order they start in)."""
    specs = []
    for component in service.components:
        env = dict(item.split("=", 1) for item in component.env)
        env.update(port_env(component, ports))
        maps: list[PortMap] = []
        for index, route in enumerate(component.routes):
            host_port = ports.get(route_key(component, index))
            if host_port is None:
                continue
            maps.extend(PortMap(ip, host_port, route.port) for ip in route.bind)
        for pub in component.publish:
            maps.append(PortMap(pub.host_ip or "", pub.host_port, pub.container_port, pub.protocol or "tcp"))
        specs.append(
            ContainerSpec(
                name=service.container_name(component),
                service=service.name,
                component=component.name,
                stage=service.stage,
                image=component.image,
                command=list(component.cmd),
                env=env,
                ports=maps,
                volumes=[_volume(v) for v in component.volumes],
                user=component.user,
                restart=component.restart,
                network=component.network,
                health=component.health,
            )
        )
    return specs


def render_podman_run(spec: ContainerSpec) -> list[str]:
    """The `podman run` argv equivalent to what the agent creates (incident lesson 5)."""
    argv = ["podman", "run", "-d", "--init", "--name", spec.name]
    if spec.restart:
        argv += ["--restart", spec.restart]
    for port in spec.ports:
        host = f"{port.host_ip}:" if port.host_ip else ""
        argv += ["-p", f"{host}{port.host_port}:{port.container_port}/{port.protocol}"]
    for vol in spec.volumes:
        argv += ["-v", f"{vol.source}:{vol.target}:{vol.mode}"]
    for key, value in sorted(spec.env.items()):
        argv += ["-e", f"{key}={value}"]
    if spec.user:
        argv += ["--user", spec.user]
    if spec.network:
        argv += ["--network", spec.network]
    for key, value in spec.labels.items():
        argv += ["--label", f"{key}={value}"]
    return [*argv, spec.image, *spec.command]
