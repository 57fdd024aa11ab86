"""The fleet as typed data: fleet.json, hosts/<name>/host.json, services/<svc>.json.

All models are frozen and forbid unknown fields, so a typo in a host file is an
error naming the field rather than a silently ignored key.  The JSON Schemas in
`schemas/` are generated from these classes (`mcfleet schema dump`).
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

import re
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from mcfleet.fleet.models_base import NAME_RE, OS, Address, Arch, Hostname, Id, Model, Name, Port, Role, Stage
from mcfleet.fleet.models_providers import (
    AcmeProvider,
    CaddyProvider,
    CertProvider,
    DnsProvider,
    HaproxyProvider,
    McnsProvider,
    McProxyProvider,
    MetacryptProvider,
    Providers,
    Rfc2136Provider,
    RouteProvider,
)
from mcfleet.util.empty import empty_list

# Re-exported: callers import every model from here.
__all__ = [
    "NAME_RE",
    "OS",
    "AcmeProvider",
    "Address",
    "Agent",
    "Arch",
    "CaddyProvider",
    "CertProvider",
    "Component",
    "Dns",
    "DnsProvider",
    "Fleet",
    "HaproxyProvider",
    "Health",
    "Host",
    "HostRoute",
    "HostUser",
    "Hostname",
    "Id",
    "IdRange",
    "McProxyProvider",
    "McnsProvider",
    "MetacryptProvider",
    "Model",
    "Name",
    "NixDeploy",
    "Port",
    "PortRange",
    "Providers",
    "Publish",
    "Rfc2136Provider",
    "Role",
    "Route",
    "RouteMode",
    "RouteProvider",
    "Service",
    "ServiceFile",
    "Ssh",
    "Stage",
    "SystemAccount",
    "UserPin",
]

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
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Fleet(Model):
    """fleet.json: fleet-wide settings."""

    schema_: str | None = Field(default=None, alias="$schema")
    name: str = "fleet"
    description: str | None = None
    zone: Hostname = Field(description="internal zone: <svc>.<zone> records")
    ports: PortRange = PortRange()
    public_domains: list[Hostname] = Field(default_factory=empty_list)
    registry: str | None = Field(default=None, description="default image registry prefix")
    pins: dict[Name, UserPin] = Field(
        default_factory=dict, description="pinned system accounts, fleet-wide (e.g. mcp: 850/850)"
    )
    providers: Providers = Providers()
    secret_recipients: list[str] = Field(
        default_factory=empty_list,
        description="the operators' public keys (age 'age1…' or 'ssh-ed25519 …'): every secret is encrypted to "
        "them and to the host keys of the hosts that use it",
    )


# --------------------------------------------------------------------------- host.json


# Everything below reaches a root shell, a unit file or a root file operation on the node,
# so each is a strict pattern, not free text (a newline in a user name would add unit lines).
ACCOUNT_RE = r"^[a-z_][a-z0-9_-]{0,31}$"
UNIT_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}\.service$"
SAFE_PATH_RE = r"^(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)+$"
# Where the agent's own folder may be: never a system folder root would then give to the agent.
AGENT_ROOTS = ("/srv/", "/opt/", "/var/lib/", "/home/")
SOCKET_ROOTS = (*AGENT_ROOTS, "/run/")


def _node_path(value: str, roots: tuple[str, ...], what: str) -> str:
    """`value` as an absolute, normalised path in a folder of its own under one of `roots`."""
    import posixpath

    if not re.match(SAFE_PATH_RE, value) or posixpath.normpath(value) != value or "/." in value:
        raise ValueError(
            f"{what} must be an absolute, normalised path of letters, digits and . _ + - "
            f"(no '..', '//' or trailing '/'), got {value!r}"
        )
    if not any(value.startswith(r) for r in roots) or value.count("/") < 3:
        raise ValueError(
            f"{what} must be in a folder of its own under {', '.join(roots)} (e.g. /srv/mcp/mcp-agent), got {value!r}"
        )
    if value.startswith("/var/lib/mcfleet/") or value == "/var/lib/mcfleet":
        raise ValueError(f"{what} must not be in /var/lib/mcfleet (root's own store on the node)")
    return value


class Ssh(Model):
    user: Annotated[str, Field(pattern=ACCOUNT_RE, description="the login; not root: escalates with sudo/doas")] = (
        "root"
    )
    port: Port = 22
    host_key: str | None = Field(
        default=None,
        description="the node's public host key ('ssh-ed25519 AAAA...'); pinned, checked strictly",
    )
    known_hosts: str | None = Field(
        default=None,
        description="use this known_hosts file instead of a pinned key (still strict); relative to the fleet "
        "folder, absolute, or ~/…",
    )
    trust_on_first_use: bool = Field(default=False, description="explicit opt-in only")
    jump: str | None = None
    sudo: bool = Field(default=False, description="prefix remote commands with `sudo -n`")
    become: Literal["sudo", "doas"] = Field(
        default="sudo", description="the program that escalates when `sudo` applies (e.g. doas on hosts without sudo)"
    )
    identity_file: str | None = Field(
        default=None, description="the SSH private key to log in with; relative to the fleet folder, absolute, or ~/…"
    )

    @field_validator("host_key")
    @classmethod
    def _key_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+$", value):
            raise ValueError("must be '<type> <base64>', e.g. 'ssh-ed25519 AAAAC3Nz...' (no comment)")
        return value

    @model_validator(mode="after")
    def _some_trust(self) -> Self:
        if self.host_key is None and self.known_hosts is None and not self.trust_on_first_use:
            raise ValueError("set ssh.host_key (pinned) or ssh.known_hosts; trust_on_first_use must be explicit")
        return self


class IdRange(Model):
    start: Id
    count: Annotated[int, Field(ge=1, le=4294967295)]

    @model_validator(mode="after")
    def _ends_at_a_valid_id(self) -> Self:
        # ids are 32-bit and 4294967295 is (uid_t)-1, "no id": the range must end below it
        if self.start + self.count - 1 > 4294967294:
            raise ValueError(f"start + count - 1 is {self.start + self.count - 1}, past the largest id 4294967294")
        return self


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
    """How the node resolves names, and through which servers.

    `resolver` is the mechanism that reads the servers, because failover differs: glibc reads
    at most 3 `nameserver` lines of /etc/resolv.conf and asks them in order, each for
    `options timeout:` seconds; systemd-resolved (252) waits ~5 s on each silent `DNS=` server
    before the next, and asks `FallbackDNS=` only while no `DNS=` server is configured at all,
    so its global `DNS=` gets the public fallbacks and the fleet's zone goes to `nameservers`
    per link (mcfleet-dns-zone.service).
    """

    resolver: Literal["resolv.conf", "systemd-resolved"] = Field(
        default="resolv.conf",
        description="resolv.conf: glibc reads /etc/resolv.conf written by mcfleet (Debian) or by NixOS "
        "networking.nameservers; systemd-resolved: the fallbacks go to resolved's global DNS= (Debian drop-in, "
        "or NixOS networking.nameservers) and the fleet's zone to the nameservers per link "
        "(mcfleet-dns-zone.service)",
    )
    nameservers: list[Address] = Field(min_length=1, description="the fleet's own resolvers (MCNS), asked first")
    fallback: list[Address] = Field(
        default_factory=empty_list,
        description="public resolvers outside the fleet: written right after the nameservers (resolv.conf, "
        "asked when they do not answer) or as resolved's global DNS= (every name outside the fleet's zone)",
    )
    fallback_dns: list[Address] = Field(
        default_factory=empty_list,
        description="systemd-resolved FallbackDNS= only: used while no DNS= server is known, so never as a "
        "failover; a public resolver listed only here does not count as a fallback",
    )


class Agent(Model):
    path: str = Field(
        default="/srv/mcp/mcp-agent",
        description="the binary the unit runs; its folder is the agent's own (under /srv, /opt, /var/lib or /home)",
    )
    unit: str = Field(default="mcp-agent.service", pattern=UNIT_RE, description="a unit name, no folder")
    socket: str = "/srv/mcp/mcp-agent.sock"
    user: str = Field(
        default="mcp", pattern=ACCOUNT_RE, description="the agent's own unprivileged account (never root)"
    )
    listen: str | None = Field(
        default=None, description="address:port of the agent's network API, if it has one (e.g. 100.106.232.4:9555)"
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _node_path(value, AGENT_ROOTS, "agent.path")

    @field_validator("socket")
    @classmethod
    def _socket(cls, value: str) -> str:
        return _node_path(value, SOCKET_ROOTS, "agent.socket")

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "root":
            raise ValueError("the agent must not run as root: give it its own account (e.g. mcp) pinned in fleet.json")
        return value


class NixDeploy(Model):
    """How `mcfleet apply` pushes a NixOS system closure to this node (`nix copy`)."""

    trust: Literal["root", "trusted-user", "signed"] | None = Field(
        default=None,
        description="why the node's store accepts the push: root (ssh.user is root, or ssh.sudo runs the "
        "store as root), trusted-user (ssh.user is in the node's nix trusted-users), signed (paths are "
        "signed with signing_key_file and the node trusts public_keys); default: root when that applies",
    )
    public_keys: list[str] = Field(
        default_factory=empty_list,
        description="nix signing public keys the node trusts ('name:base64'), for trust=signed",
    )
    signing_key_file: str | None = Field(
        default=None,
        description="the local nix secret key file that signs pushes (trust=signed), never committed; relative "
        "to the fleet folder, absolute, or ~/…",
    )
    store_scheme: Literal["ssh-ng", "ssh"] = Field(
        default="ssh-ng", description="ssh-ng (nix daemon protocol) or ssh (nix-store --serve, older remote nix)"
    )

    @field_validator("public_keys")
    @classmethod
    def _key_shape(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^[A-Za-z0-9._-]+:[A-Za-z0-9+/=]+$", value):
                raise ValueError(
                    f"{value!r} is not a nix public key 'name:base64' (from `nix key convert-secret-to-public`)"
                )
        return values


RouteMode = Literal["l4", "l7", "re-encrypt"]
ROUTE_MODE_HELP = (
    "l4: the proxy passes TLS through by SNI; l7: TLS ends at the proxy (certificate issued by mcfleet); "
    "re-encrypt: TLS ends at the proxy, which opens a new TLS connection to the backend"
)
LISTENER_HELP = "the proxy's port this route is served on (e.g. 443 web, 8443 API, 9443 gRPC)"
# address:port, an IPv6 literal in brackets: `127.0.0.1:3000`, `[::1]:3000`, `gitea.lan:3000`.
BACKEND_RE = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$"


class HostRoute(Model):
    """A route to a program that runs on the host outside mcfleet (a systemd service such as Gitea)."""

    hostname: Hostname
    listener: Port = Field(default=443, description=LISTENER_HELP)
    mode: RouteMode = Field(description=ROUTE_MODE_HELP)
    backend: str = Field(pattern=BACKEND_RE, description="address:port the program listens on, e.g. 127.0.0.1:3000")
    public: bool = Field(default=False, description="served by the edge node's proxy")
    description: str | None = None


class Host(Model):
    """hosts/<name>/host.json"""

    schema_: str | None = Field(default=None, alias="$schema")
    name: Name
    description: str | None = None
    os: OS
    arch: Arch
    roles: list[Role] = Field(min_length=1)
    tags: list[Name] = Field(default_factory=empty_list)
    ssh: Ssh
    addresses: list[Address] = Field(min_length=1, description="tried in order")
    users: dict[Name, HostUser] = Field(default_factory=dict)
    system_accounts: dict[str, SystemAccount] = Field(default_factory=dict)
    dns: Dns
    agent: Agent = Agent()
    nix: NixDeploy = NixDeploy()
    firewall_ports: list[Port] = Field(
        default_factory=empty_list,
        description="NixOS: TCP ports opened in networking.firewall besides those the services publish "
        "(not allowed on Debian: mcfleet manages no firewall there)",
    )
    routes: list[HostRoute] = Field(
        default_factory=empty_list,
        description="routes to programs this host runs outside mcfleet (host-native backends)",
    )


# --------------------------------------------------------------------------- services/<svc>.json


class ServiceModel(Model):
    """A model of services/<svc>.json only."""


class Publish(ServiceModel):
    """A fixed port publish that is not a route (e.g. DNS on :53)."""

    host_ip: Address | None = None
    host_port: Port
    container_port: Port
    protocol: Literal["tcp", "udp"] | None = Field(
        default=None, description="omitted: tcp, podman's default, and rendered without a suffix"
    )


class Route(ServiceModel):
    """A route of a component: (listener, hostname) on the proxy -> the component's host port.

    A hostname may have several routes on different listeners (mcr: web on 443, API on 8443,
    gRPC on 9443); (listener, hostname) is unique fleet-wide."""

    name: Name | None = None
    port: Port = Field(description="the port the component listens on inside the container")
    mode: RouteMode = Field(description=ROUTE_MODE_HELP)
    listener: Port = Field(default=443, description=LISTENER_HELP)
    hostname: Hostname | None = Field(default=None, description="default <service>.<zone>")
    public: bool = False
    host_port: Port | None = Field(default=None, description="pinned host port; default assigned from the range")
    bind: list[Address] = Field(default_factory=lambda: ["127.0.0.1"], description="host addresses to publish on")


class Health(ServiceModel):
    kind: Literal["tcp", "http", "command"]
    port: Port | None = Field(
        default=None,
        description="tcp/http: the port the program listens on in its container (a route's or publish's "
        "container port: probed where the host reaches it, its published host port); with --network host, or a "
        "port nothing publishes, probed on 127.0.0.1 of the host",
    )
    path: str = "/"
    command: list[str] = Field(
        default_factory=empty_list, description="command: argv run inside the container (podman exec), exit 0 = healthy"
    )
    timeout_s: float = Field(default=5.0, gt=0, le=600)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind in ("tcp", "http") and self.port is None:
            raise ValueError(f"a {self.kind} health check needs `port`")
        if self.kind == "command" and not self.command:
            raise ValueError("a command health check needs `command`")
        return self


class Component(ServiceModel):
    name: Name
    image: str = Field(min_length=1, description="full image reference with a pinned tag (never :latest)")
    volumes: list[str] = Field(default_factory=empty_list, description="host:container[:opts]")
    cmd: list[str] = Field(default_factory=empty_list)
    env: list[str] = Field(default_factory=empty_list, description="KEY=VALUE")
    network: str | None = None
    user: str | None = None
    restart: Literal["no", "always", "on-failure", "unless-stopped"] | None = "unless-stopped"
    publish: list[Publish] = Field(default_factory=empty_list)
    health: Health | None = None
    routes: list[Route] = Field(default_factory=empty_list)

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


FILE_NAME_RE = r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}/){0,3}[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"


class ServiceFile(ServiceModel):
    """A file the service needs in its own folder `/srv/<svc>/` on its node (a config file, a CA cert)."""

    path: str = Field(
        pattern=FILE_NAME_RE,
        description="path inside /srv/<svc>/, at most 3 sub-folders deep, no part starting with a dot, e.g. "
        "'mcq.toml' or 'certs/ca.pem' (a sub-folder is made with the owner of its first file, mode 0750)",
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        description="the content: a file in the fleet repository, relative to the fleet folder (e.g. "
        "'files/mcq/mcq.toml')",
    )
    secret: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="instead of source: the secret of that name (secrets/<name>.age, age-encrypted; "
        "`mcfleet secret set`); its mode must not grant group or others anything",
    )
    template: bool = Field(
        default=False,
        description="fill {{ name }} placeholders with values mcfleet knows: host, address, zone, service, "
        "hostname (the service's first route hostname), port.<component>/<route> (assigned host ports)",
    )
    owner: Literal["mcp"] | Annotated[int, Field(ge=0, le=65535)] = Field(
        default="mcp",
        description="'mcp' (the agent's user) or a uid inside the service's containers (rootless podman maps "
        "container uid N>0 to the agent user's subuid start + N - 1; 0 is the agent user)",
    )
    mode: str = Field(default="0640", pattern=r"^0?[0-7]{3}$", description="octal permission bits")

    @field_validator("source")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError(f"{value!r} must be a path inside the fleet folder (relative, no '..')")
        return value

    @model_validator(mode="after")
    def _one_content(self) -> Self:
        if (self.source is None) == (self.secret is None):
            raise ValueError("a file needs exactly one of `source` and `secret`")
        if self.secret is not None and int(self.mode, 8) & 0o077:
            raise ValueError(
                f"secret file {self.path}: mode {self.mode} lets group or others read it; use 0600 or 0400"
            )
        if self.secret is not None and self.template:
            raise ValueError(f"secret file {self.path}: a secret is written as it is, never a template")
        return self


class Service(ServiceModel):
    """hosts/<host>/services/<svc>.json"""

    schema_: str | None = Field(default=None, alias="$schema")
    name: Name
    description: str | None = None
    stage: Stage = Stage.services
    active: bool = Field(
        default=True,
        description="false: kept registered with its node's agent, its containers stopped, not removed (volumes "
        "kept), its routes, DNS records and files removed; true again starts the same containers",
    )
    depends_on: list[Name] = Field(default_factory=empty_list)
    components: list[Component] = Field(min_length=1)
    files: list[ServiceFile] = Field(default_factory=empty_list, description="files written to /srv/<svc>/ on its node")

    def container_name(self, component: Component) -> str:
        """`mcns` for a component named like its service, else `<service>-<component>`."""
        return self.name if component.name == self.name else f"{self.name}-{component.name}"
