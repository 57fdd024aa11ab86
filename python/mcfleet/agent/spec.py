"""From a registered service to the exact containers podman must run.

Pure functions, no I/O: a `Service` (fleet model) plus its assigned host ports becomes one
`ContainerSpec` per component.  The spec hash covers everything that shapes the container,
so a changed hash means "recreate", an equal one means "leave it alone".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from mcfleet.fleet.derive import port_env as derive_port_env
from mcfleet.fleet.derive import route_port_key as route_key
from mcfleet.fleet.models import Component, Health, Service, Stage

LABEL_MANAGED = "io.mcfleet.managed"
LABEL_SERVICE = "io.mcfleet.service"
LABEL_COMPONENT = "io.mcfleet.component"
LABEL_STAGE = "io.mcfleet.stage"
LABEL_HASH = "io.mcfleet.spec-hash"
# A changed container's old self is renamed to `<name>.old` while its replacement is made: a name no
# declared container can have (mcfleet's names are letters, digits and '-').
ASIDE = ".old"


@dataclass(frozen=True)
class PortMap:
    """A published port: host address and port to the container's port."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def reached_at(self) -> tuple[str, int]:
        """Where the node itself connects to it: its address, or 127.0.0.1 for a wildcard."""
        return (self.host_ip if self.host_ip not in ("", "0.0.0.0", "::") else "127.0.0.1"), self.host_port


@dataclass(frozen=True)
class VolumeMap:
    """A volume of a container: host path or named volume, mount point, mode."""

    source: str  # absolute host path, or a named podman volume
    target: str
    mode: str = "rw"


@dataclass(frozen=True)
class ContainerSpec:
    """One container the agent runs for a service component."""

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
                return port.reached_at
        return None


def route_keys(service: Service) -> list[tuple[Component, int, str]]:
    return [(c, i, route_key(c, i)) for c in service.components for i in range(len(c.routes))]


def port_env(component: Component, ports: dict[str, int]) -> dict[str, str]:
    """`$PORT` / `$PORT_<NAME>` per route, with the same names and values as `mcfleet render`.

    The value is the port the program must listen on: the route's container port, since
    podman maps `<host port>:<route.port>`; with host networking nothing is mapped, so it is
    the host port itself.  (One rule for the agent and for render, so a manual recovery from
    `mcfleet render` runs exactly what the agent runs.)
    """
    env: dict[str, str] = {}
    host_net = component.network == "host"
    for index, route in enumerate(component.routes):
        port = ports.get(route_key(component, index))
        if port is None:
            continue
        env[derive_port_env(route)] = str(port if host_net else route.port)
    return env


def _volume(item: str) -> VolumeMap:
    parts = item.split(":")
    mode = parts[2] if len(parts) == 3 else "rw"
    return VolumeMap(source=parts[0], target=parts[1], mode=mode)


def container_specs(service: Service, ports: dict[str, int]) -> list[ContainerSpec]:
    """One spec per component, in declaration order (the order they start in)."""
    specs = []
    for component in service.components:
        # route ports first, the component's own env wins (as in `mcfleet render`)
        env = port_env(component, ports)
        env.update(dict(item.split("=", 1) for item in component.env))
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
