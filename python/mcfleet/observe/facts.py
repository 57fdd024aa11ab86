"""Observed facts about one host, as typed data (JSON round-trips; the plan digests it).

A host is either `Facts` (it answered) or `Unreachable` (it did not, or its host
key did not match): an unreachable host is a value, never an exception.
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from mcfleet.fleet.models_base import FROZEN
from mcfleet.observe.files import FileFacts
from mcfleet.observe.hostlevel import HostLevelFacts
from mcfleet.observe.manifest import Manifest
from mcfleet.util.empty import empty_list

ARCH_FROM_UNAME = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class _Fact(BaseModel):
    model_config = FROZEN


class Account(_Fact):
    name: str
    uid: int
    gid: int
    home: str = ""
    shell: str = ""


class Group(_Fact):
    name: str
    gid: int


class IdRangeFact(_Fact):
    start: int
    count: int


class AgentFacts(_Fact):
    path: str
    present: bool = False
    sha256: str | None = None
    version: str | None = None
    unit_active: str | None = Field(default=None, description="`systemctl is-active`; None without systemd")
    unit_enabled: str | None = None
    unit_sha256: str | None = Field(default=None, description="sha256 of the unit file; None when absent")
    unit_dropins: list[str] | None = Field(
        default=None, description="the drop-in files systemd applies to the unit (DropInPaths); None: not read"
    )
    systemd: bool | None = Field(default=None, description="PID 1 is systemd; None when not observed")


class DirFacts(_Fact):
    path: str
    present: bool = True
    owner: str = ""
    group: str = ""
    mode: str = ""  # octal as `stat -c %a` prints it, e.g. "750"


class CertFacts(_Fact):
    path: str
    subject: str | None = None
    sans: list[str] = Field(default_factory=empty_list)
    not_after: str | None = Field(default=None, description="ISO 8601, UTC")
    error: str | None = None
    # its private key beside it (`<stem>.key`): owner and mode, never its content; unknown when not asked
    key_uid: int | None = None
    key_user: str | None = None
    key_mode: str | None = Field(default=None, description="octal, e.g. '600'")
    key_missing: bool = Field(default=False, description="asked, and no plain key file beside the certificate")
    sha256: str | None = Field(default=None, description="the certificate's fingerprint: sha256 of its DER")
    pub_sha256: str | None = Field(
        default=None, description="sha256 of the certificate's public key (DER SubjectPublicKeyInfo)"
    )
    key_pub_sha256: str | None = Field(
        default=None,
        description="sha256 of the public key openssl derives on the node from the key beside it (DER), '' when "
        "openssl cannot load it as a private key; None: unknown (not asked, or no openssl on the node)",
    )


class RouteMapFacts(_Fact):
    """HAProxy's map file on the node: what a restarted HAProxy would serve (the running one is asked apart)."""

    path: str
    missing: bool = Field(default=False, description="no plain file at the path (a link is not followed)")
    entries: dict[str, str] = Field(default_factory=dict, description="'<listener>/<hostname>' -> backend")


class ContainerFacts(_Fact):
    name: str
    image: str = ""
    state: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    restarts: int = 0  # by podman since the agent last started it (counted for a recent start only)
    exit_code: int = 0
    up_s: float | None = None  # since its last start, by the node's clock
    # published ports ("address:port") nothing listens on while it runs: its port forwarder is gone
    unforwarded: list[str] = Field(default_factory=empty_list)
    published: list[str] | None = None  # "tcp/8080": the host ports it publishes; None: an older agent's facts

    @property
    def crash_loop(self) -> str | None:
        """Why podman's restarts of it are a crash loop, or None."""
        from mcfleet.agent.crash_loop import crash_loop_text, is_crash_loop

        return crash_loop_text(self.restarts, self.exit_code) if is_crash_loop(self.restarts, self.up_s) else None


class Facts(_Fact):
    kind: Literal["facts"] = "facts"
    host: str
    address: str | None = Field(default=None, description="the address that answered")
    os_id: str | None = None
    os_version: str | None = None
    os_pretty: str | None = None
    arch_raw: str | None = None
    hostname: str | None = None
    euid: int | None = None
    accounts: list[Account] = Field(
        default_factory=empty_list, description="pinned names and whoever holds pinned UIDs"
    )
    groups: list[Group] = Field(default_factory=empty_list)
    passwd_file: list[Account] = Field(
        default_factory=empty_list, description="/etc/passwd lines of pinned names and UIDs, all of them (not getent)"
    )
    group_file: list[Group] = Field(
        default_factory=empty_list, description="/etc/group lines of pinned names and GIDs, all of them (not getent)"
    )
    subuid: dict[str, list[IdRangeFact]] = Field(default_factory=dict)
    subgid: dict[str, list[IdRangeFact]] = Field(default_factory=dict)
    resolvers: list[str] = Field(default_factory=empty_list)
    agent: AgentFacts | None = None
    nixos_system: str | None = None
    dirs: list[DirFacts] | None = Field(default=None, description="the managed folders; None: not asked")
    files: list[FileFacts] | None = Field(default=None, description="the declared files; None: not asked")
    manifest: Manifest | None = None
    manifest_error: str | None = None
    certs: list[CertFacts] = Field(default_factory=empty_list)
    addresses: list[str] | None = Field(default=None, description="the node's IP addresses; None: not asked or unknown")
    listening: list[tuple[str, str, int]] | None = Field(
        default=None, description="(protocol, address, port) listening on the services' host ports; None: not asked"
    )
    containers: list[ContainerFacts] | None = Field(default=None, description="None: podman absent or not asked")
    services_registered: list[str] | None = Field(
        default=None, description="the services the agent's registry lists (what it starts at boot); None: not asked"
    )
    services_held_stopped: list[str] = Field(
        default_factory=empty_list, description="services the agent keeps stopped (`mcfleet agent stop`)"
    )
    service_specs: dict[str, dict[str, Any]] | None = Field(
        default=None, description="service -> its definition as the agent last received it; None: not asked"
    )
    ports_held: list[tuple[str, int]] | None = Field(
        default=None, description="(protocol, port) the services registered with the agent publish; None: not asked"
    )
    services_error: str | None = Field(
        default=None, description="why the containers are unknown: the agent or its podman did not answer"
    )
    agent_busy: str | None = Field(
        default=None,
        description="the change of the containers the agent is still making (e.g. of an interrupted apply)",
    )
    dns: dict[str, list[str]] = Field(default_factory=dict, description="name -> A answers at the authoritative server")
    dns_ttl: dict[str, int] = Field(
        default_factory=dict, description="name -> the TTL of its A answers at the authoritative server"
    )
    dns_alias: dict[str, str] = Field(
        default_factory=dict, description="name -> the target of the CNAME the authoritative server holds at it"
    )
    dns_v6: dict[str, list[str]] = Field(
        default_factory=dict, description="name -> the AAAA values the authoritative server holds at it (if any)"
    )
    dns_error: str | None = None
    routes: list[str] | None = Field(
        default=None, description="this host's route hostnames the route provider serves; None: not asked"
    )
    routes_error: str | None = None
    host_level: HostLevelFacts | None = Field(
        default=None, description="resolver file, agent folder (observe/hostlevel.py); None: not read"
    )
    live_routes: dict[str, str] | None = Field(
        default=None, description="'<listener>/<hostname>' -> backend the proxy on this host serves; None: not asked"
    )
    live_modes: dict[str, str] | None = Field(
        default=None,
        description="'<listener>/<hostname>' -> the mode of the route that takes its connections (an l4 route in "
        "HAProxy's map comes before Caddy's l7 one); None: not asked",
    )
    live_shadowed: dict[str, str] | None = Field(
        default=None,
        description="'<listener>/<hostname>' -> what on the proxy takes that route's requests before it (Caddy: "
        "an earlier route of the operator's that matches every request for the name); None: not asked",
    )
    listeners_missing: dict[str, list[str]] = Field(
        default_factory=dict,
        description="listener -> [why, what to do]: a listener of this host's TLS routes no server of its proxy "
        "takes (Caddy), where adding a route fails",
    )
    live_certs: dict[str, str] | None = Field(
        default=None,
        description="'<listener>/<hostname>' -> the certificate file the proxy holds for its TLS-ending route ('' "
        "none); None: not asked",
    )
    route_map: RouteMapFacts | None = Field(default=None, description="HAProxy's map file; None: not asked")
    served_certs: dict[str, str] | None = Field(
        default=None,
        description="'<listener>/<hostname>' -> fingerprint (sha256) of the certificate a TLS handshake for the name "
        "at the node's address gets, '' when it gets none; None: not asked, or no openssl on the node",
    )

    @property
    def arch(self) -> str | None:
        return ARCH_FROM_UNAME.get(self.arch_raw or "", self.arch_raw)

    def account(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def account_by_uid(self, uid: int) -> Account | None:
        return next((a for a in self.accounts if a.uid == uid), None)

    def accounts_with_uid(self, uid: int) -> list[Account]:
        """Every account holding `uid`, from getent and from /etc/passwd (one per name)."""
        found = {a.name: a for a in [*self.passwd_file, *self.accounts] if a.uid == uid}
        return sorted(found.values(), key=lambda a: a.name)

    def groups_with_gid(self, gid: int) -> list[Group]:
        """Every group holding `gid`, from getent and from /etc/group (one per name)."""
        found = {g.name: g for g in [*self.group_file, *self.groups] if g.gid == gid}
        return sorted(found.values(), key=lambda g: g.name)

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)

    def group_by_gid(self, gid: int) -> Group | None:
        return next((g for g in self.groups if g.gid == gid), None)

    def cert(self, path: str) -> CertFacts | None:
        return next((c for c in self.certs if c.path == path), None)


class Unreachable(_Fact):
    kind: Literal["unreachable"] = "unreachable"
    host: str
    reason: str
    cause: Literal["unreachable", "host-key", "escalation", "error"] = "unreachable"  # escalation: sudo/doas rule
    hint: str | None = None


HostFacts = Annotated[Facts | Unreachable, Field(discriminator="kind")]
