"""The fleet as typed data: fleet.json, hosts/<name>/host.json, services/<svc>.json.

All models are frozen and forbid unknown fields, so a typo in a host file is an
error naming the field rather than a silently ignored key.  The JSON Schemas in
`schemas/` are generated from these classes (`mcfleet schema dump`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_RE, description="lower-case name: letters, digits, '-'")]
Hostname = Annotated[
    str,
    Field(
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
        description="a DNS name (lower case)",
    ),
]
# An address is an IPv4/IPv6 literal or a DNS name (e.g. a Tailnet name).
Address = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Id = Annotated[int, Field(ge=0, le=4294967294)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class OS(StrEnum):
    nixos = "nixos"
    debian = "debian"


class Arch(StrEnum):
    amd64 = "amd64"
    arm64 = "arm64"


class Role(StrEnum):
    master = "master"
    worker = "worker"
    edge = "edge"


class Stage(StrEnum):
    """Boot stages, in the order the agent brings them up (incident lesson 3)."""

    foundation = "foundation"
    core = "core"
    management = "management"
    services = "services"

    @property
    def order(self) -> int:
        return list(Stage).index(self)


# --------------------------------------------------------------------------- fleet.json


class UserPin(Model):
    """A fleet-wide pinned system account, e.g. `mcp` at 850/850."""

    uid: Id
    gid: Id
    reason: str | None = Field(
        default=None,
        description="why this id is safe; required when it lies in an OS's dynamic system range",
    )


class PortRange(Model):
    min: Port = 10000
    max: Port = 60000

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Rfc2136Provider(Model):
    """Standard DNS backend: RFC 2136 dynamic update signed with TSIG (Knot, BIND)."""

    kind: Literal["rfc2136"]
    server: Address
    port: Port = 53
    key_name: str
    key_file: str = Field(description="path of a file holding the TSIG secret (base64); never the secret")
    algorithm: Literal["hmac-sha256", "hmac-sha512"] = "hmac-sha256"
    ttl: int = Field(default=60, ge=1)


class McnsProvider(Model):
    """Seed-native DNS backend: MCNS REST `/v1/zones/{zone}/records` with an MCIAS token."""

    kind: Literal["mcns"]
    url: str
    token_file: str
    ca_file: str | None = None
    ttl: int = Field(default=300, ge=1)


class AcmeProvider(Model):
    """Standard cert backend: RFC 8555 ACME (Pebble in the lab)."""

    kind: Literal["acme"]
    directory: str
    account_key_file: str
    ca_file: str | None = Field(default=None, description="CA bundle that signs the ACME server's own TLS cert")
    email: str | None = None


class MetacryptProvider(Model):
    """Seed-native cert backend: Metacrypt `POST /v1/engine/request` with an MCIAS token."""

    kind: Literal["metacrypt"]
    url: str
    token_file: str
    ca_file: str | None = None
    mount: str = "pki"


class CaddyProvider(Model):
    """Standard L7 route backend: Caddy's admin API."""

    kind: Literal["caddy"]
    admin_url: str = "http://127.0.0.1:2019"
    server: str = "edge"


class HaproxyProvider(Model):
    """Standard L4 route backend: HAProxy runtime API (SNI passthrough)."""

    kind: Literal["haproxy"]
    admin_socket: str
    map_file: str
    backends: list[str] = Field(default_factory=list, description="pre-declared backend slots")


class McProxyProvider(Model):
    """Seed-native route backend: mc-proxy gRPC admin API on a unix socket."""

    kind: Literal["mc-proxy"]
    socket: str = "/srv/mc-proxy/mc-proxy.sock"


DnsProvider = Annotated[Rfc2136Provider | McnsProvider, Field(discriminator="kind")]
CertProvider = Annotated[AcmeProvider | MetacryptProvider, Field(discriminator="kind")]
RouteProvider = Annotated[CaddyProvider | HaproxyProvider | McProxyProvider, Field(discriminator="kind")]


class Providers(Model):
    dns: DnsProvider | None = None
    cert: CertProvider | None = None
    route: RouteProvider | None = None
    route_l4: RouteProvider | None = Field(
        default=None, description="a separate backend for l4 routes (e.g. haproxy beside caddy)"
    )


class Fleet(Model):
    """fleet.json: fleet-wide settings."""

    schema_: str | None = Field(default=None, alias="$schema")
    name: str = "fleet"
    description: str | None = None
    zone: Hostname = Field(description="internal zone: <svc>.<zone> records")
    ports: PortRange = PortRange()
    public_domains: list[Hostname] = Field(default_factory=list)
    registry: str | None = Field(default=None, description="default image registry prefix")
    pins: dict[Name, UserPin] = Field(
        default_factory=dict, description="pinned system accounts, fleet-wide (e.g. mcp: 850/850)"
    )
    providers: Providers = Providers()


# --------------------------------------------------------------------------- host.json


class Ssh(Model):
    user: str = "root"
    port: Port = 22
    host_key: str | None = Field(
        default=None,
        description="the node's public host key ('ssh-ed25519 AAAA...'); pinned, checked strictly",
    )
    known_hosts: str | None = Field(
        default=None, description="use this known_hosts file instead of a pinned key (still strict)"
    )
    trust_on_first_use: bool = Field(default=False, description="explicit opt-in only")
    jump: str | None = None
    sudo: bool = Field(default=False, description="prefix remote commands with `sudo -n`")
    identity_file: str | None = None

    @field_validator("host_key")
    @classmethod
    def _key_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+$", value):
            raise ValueError("must be '<type> <base64>', e.g. 'ssh-ed25519 AAAAC3Nz...' (no comment)")
        return value

    @model_validator(mode="after")
    def _some_trust(self) -> Ssh:
        if self.host_key is None and self.known_hosts is None and not self.trust_on_first_use:
            raise ValueError("set ssh.host_key (pinned) or ssh.known_hosts; trust_on_first_use must be explicit")
        return self


class IdRange(Model):
    start: Id
    count: Annotated[int, Field(ge=1)]


class HostUser(Model):
    """A pinned account as it is (or must be) on this node."""

    uid: Id
    gid: Id
    subuid: IdRange | None = None
    subgid: IdRange | None = None
    pin_exception: str | None = Field(
        default=None,
        description="documented reason this node keeps ids that differ from the fleet pin",
    )


class SystemAccount(Model):
    """An account the node already has that mcfleet does not manage (e.g. sshd)."""

    uid: Id
    gid: Id | None = None


class Dns(Model):
    nameservers: list[Address] = Field(min_length=1)
    fallback: list[Address] = Field(default_factory=list, description="public resolvers (incident lesson 2)")


class Agent(Model):
    path: str = "/srv/mcp/mcp-agent"
    unit: str = "mcp-agent.service"
    socket: str = "/srv/mcp/mcp-agent.sock"
    user: str = "mcp"
    listen: str | None = Field(
        default=None, description="address:port of the agent's network API, if it has one (seed: 100.106.232.4:9555)"
    )


class Host(Model):
    """hosts/<name>/host.json"""

    schema_: str | None = Field(default=None, alias="$schema")
    name: Name
    description: str | None = None
    os: OS
    arch: Arch
    roles: list[Role] = Field(min_length=1)
    tags: list[Name] = Field(default_factory=list)
    ssh: Ssh
    addresses: list[Address] = Field(min_length=1, description="tried in order")
    users: dict[Name, HostUser] = Field(default_factory=dict)
    system_accounts: dict[str, SystemAccount] = Field(default_factory=dict)
    dns: Dns
    agent: Agent = Agent()
    firewall_ports: list[Port] = Field(default_factory=list)


# --------------------------------------------------------------------------- services/<svc>.json


class Publish(Model):
    """A fixed port publish that is not a route (e.g. DNS on :53)."""

    host_ip: Address | None = None
    host_port: Port
    container_port: Port
    protocol: Literal["tcp", "udp"] | None = Field(
        default=None, description="omitted: tcp, podman's default, and rendered without a suffix"
    )


class Route(Model):
    name: Name | None = None
    port: Port = Field(description="the port the component listens on inside the container")
    mode: Literal["l4", "l7"]
    hostname: Hostname | None = Field(default=None, description="default <service>.<zone>")
    public: bool = False
    host_port: Port | None = Field(default=None, description="pinned host port; default assigned from the range")
    bind: list[Address] = Field(default_factory=lambda: ["127.0.0.1"], description="host addresses to publish on")


class Health(Model):
    kind: Literal["tcp", "http", "command"]
    port: Port | None = Field(
        default=None,
        description="tcp/http: probed on 127.0.0.1 at this host port (the published port; with --network host "
        "the port the program binds)",
    )
    path: str = "/"
    command: list[str] = Field(default_factory=list, description="command: argv run on the host, exit 0 = healthy")
    timeout_s: float = Field(default=5.0, gt=0, le=600)

    @model_validator(mode="after")
    def _complete(self) -> Health:
        if self.kind in ("tcp", "http") and self.port is None:
            raise ValueError(f"a {self.kind} health check needs `port`")
        if self.kind == "command" and not self.command:
            raise ValueError("a command health check needs `command`")
        return self


class Component(Model):
    name: Name
    image: str = Field(min_length=1, description="full image reference with a pinned tag (never :latest)")
    volumes: list[str] = Field(default_factory=list, description="host:container[:opts]")
    cmd: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list, description="KEY=VALUE")
    network: str | None = None
    user: str | None = None
    restart: Literal["no", "always", "on-failure", "unless-stopped"] | None = "unless-stopped"
    publish: list[Publish] = Field(default_factory=list)
    health: Health | None = None
    routes: list[Route] = Field(default_factory=list)

    @field_validator("env")
    @classmethod
    def _env_shape(cls, values: list[str]) -> list[str]:
        for item in values:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", item):
                raise ValueError(f"{item!r} is not KEY=VALUE")
        return values

    @field_validator("volumes")
    @classmethod
    def _volume_shape(cls, values: list[str]) -> list[str]:
        for item in values:
            parts = item.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f"{item!r} is not host:/container[:opts]")
        return values


class Service(Model):
    """hosts/<host>/services/<svc>.json"""

    schema_: str | None = Field(default=None, alias="$schema")
    name: Name
    description: str | None = None
    stage: Stage = Stage.services
    active: bool = True
    depends_on: list[Name] = Field(default_factory=list)
    components: list[Component] = Field(min_length=1)

    def container_name(self, component: Component) -> str:
        """`mcns` for a component named like its service, else `<service>-<component>` (seed convention)."""
        return self.name if component.name == self.name else f"{self.name}-{component.name}"
