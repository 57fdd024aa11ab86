"""What the files say each host should have, computed once from the loaded fleet.

It depends only on `fleet/` (and the unit text the NixOS module also declares),
so observation (which DNS names to ask, which agent files to hash) and the plan
both read it without importing each other.

Placement decisions (shared with apply):
- DNS: an A record `<svc>.<zone>` -> the first IPv4 address of the host that runs the
  service; each route hostname inside the zone -> that of the host whose proxy serves it
  (the edge, for a `public` route: the name must lead to a proxy that routes it); all owned
  by the host that runs the service (a host-native route's: by its host).
- Routes and certs live on the proxy host (`fleet.routes`: the first edge host for
  `public` routes, the backend's own host otherwise), keyed `<listener>/<hostname>`.
  Every hostname of an l7 or re-encrypt route gets its own cert (no wildcard) at
  `/srv/mc-proxy/certs/<svc>.pem` (the service's first such hostname) or
  `<hostname>.pem` (any other, and host-native routes).
- Ports: every route's host port comes from `fleet.derive.assign_ports` (the one
  allocator); the agent is sent exactly these ports.
- The agent binary's hash to install is passed in by the caller (the bundle or
  closure built for the host); without it the plan compares the node with the
  hash its manifest records.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from mcfleet.fleet.derive import RouteKey, assign_ports, service_ports
from mcfleet.fleet.files import DesiredFile, service_dir, service_files
from mcfleet.fleet.host_level import HostLevelWant, host_level_want
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import IdRange, Service
from mcfleet.fleet.routes import DeclaredRoute, declared_routes
from mcfleet.nix.host_values import agent_unit_text, srv_dirs

CERT_DIR = "/srv/mc-proxy/certs"  # where the proxy host keeps one PEM per TLS-terminating hostname


@dataclass(frozen=True)
class DesiredUser:
    """A user account the host should have, with its ids and subordinate ranges."""

    name: str
    uid: int
    gid: int
    pin_uid: int | None = None
    exception: str | None = None
    subuid: IdRange | None = None
    subgid: IdRange | None = None


@dataclass(frozen=True)
class DesiredService:
    """A service the host should have: its stage, spec hash, containers, images and ports.

    `active` False (`"active": false` in its file): registered with the agent and kept stopped, its
    containers and volumes kept; it has no routes, DNS records or files, and publishes nothing."""

    name: str
    stage: str
    hash: str
    containers: tuple[str, ...]
    images: dict[str, str] = field(default_factory=dict)  # container -> image
    ports: dict[str, int] = field(default_factory=dict)  # "<component>/<route>" -> host port (sent to the agent)
    spec: Service | None = field(default=None, compare=False)
    active: bool = True


@dataclass(frozen=True)
class DesiredDir:
    """A folder the host should have, with its owner, group and mode."""

    path: str
    owner: str
    group: str
    mode: str  # octal, e.g. "0750"


@dataclass(frozen=True)
class DesiredAgent:
    """The agent the host should run: binary, unit, user, socket and build."""

    path: str
    unit: str
    user: str
    socket: str
    unit_sha256: str  # sha256 of the unit file text apply installs
    sha256: str | None  # the agent build to install; None when not built yet


@dataclass(frozen=True)
class DesiredRecord:
    """A DNS record the fleet's zone should hold."""

    name: str
    value: str
    type: str = "A"
    ttl: int | None = None  # the DNS provider's `ttl`: a record the server holds with another is changed
    v6: tuple[str, ...] = ()  # the IPv6 addresses in host.json of the host it leads to: AAAA values kept


@dataclass(frozen=True)
class DesiredRoute:
    """A route the proxy should serve: hostname, mode and backend."""

    hostname: str
    mode: str
    service: str | None  # None for a host-native route (host.json `routes`)
    service_host: str
    backend: str  # address:port (ports from fleet.derive.assign_ports, stable across runs)
    listener: int = 443

    @property
    def key(self) -> str:
        return f"{self.listener}/{self.hostname}"


@dataclass(frozen=True)
class DesiredCert:
    """A certificate the proxy host should hold: its path and names."""

    name: str
    path: str
    sans: tuple[str, ...]
    owner: str = "root"  # who owns its key (the proxy's `user`, the only one that may read it)
    issuer: str | None = None  # the cert provider that issues it (cert_issuer): another recorded one re-issues


@dataclass
class DesiredHost:
    """Everything the host files say one host should have, for the kinds to diff against its facts."""

    name: str
    os: str
    arch: str
    agent: DesiredAgent
    users: list[DesiredUser] = field(default_factory=list)
    dirs: list[DesiredDir] = field(default_factory=list)  # the services' volume folders under /srv/
    services: dict[str, DesiredService] = field(default_factory=dict)
    records: dict[str, DesiredRecord] = field(default_factory=dict)
    routes: dict[str, DesiredRoute] = field(default_factory=dict)  # key: "<listener>/<hostname>"
    certs: dict[str, DesiredCert] = field(default_factory=dict)  # key: file stem; one hostname each, no wildcard
    host_level: HostLevelWant | None = None  # resolver file, agent folder (fleet/host_level.py)
    system: str | None = None  # NixOS: the toplevel store path built (or evaluated) for it; None: not known
    files: dict[str, DesiredFile] = field(default_factory=dict)  # key: absolute path under /srv/<svc>/

    @property
    def inactive(self) -> frozenset[str]:
        """The services whose file says `"active": false`: registered with the agent, kept stopped."""
        return frozenset(n for n, s in self.services.items() if not s.active)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def spec_hash(service: Service) -> str:
    data = service.model_dump(mode="json", exclude={"schema_", "files"})  # files: the files kind
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ipv6_addresses(entry: HostEntry) -> tuple[str, ...]:
    """The host's IPv6 addresses in host.json: an AAAA record at one of its names may lead there."""
    out = []
    for address in entry.host.addresses:
        try:
            if ipaddress.ip_address(address).version == 6:
                out.append(str(ipaddress.ip_address(address)))
        except ValueError:
            continue
    return tuple(out)


def ipv4_address(entry: HostEntry) -> str:
    for address in entry.host.addresses:
        try:
            if ipaddress.ip_address(address).version == 4:
                return address
        except ValueError:
            continue
    return entry.host.addresses[0]


def _users(loaded: LoadedFleet, entry: HostEntry) -> list[DesiredUser]:
    pins = loaded.fleet.pins if loaded.fleet else {}
    out = []
    for name in sorted(set(pins) | set(entry.host.users)):
        pin, own = pins.get(name), entry.host.users.get(name)
        uid = own.uid if own else pin.uid if pin else 0
        gid = own.gid if own else pin.gid if pin else 0
        out.append(
            DesiredUser(
                name=name,
                uid=uid,
                gid=gid,
                pin_uid=pin.uid if pin else None,
                exception=own.pin_exception if own else None,
                subuid=own.subuid if own else None,
                subgid=own.subgid if own else None,
            )
        )
    return out


def proxy_user(loaded: LoadedFleet) -> str:
    """The account the route provider's proxy runs as: it owns the certificates' keys."""
    provider = loaded.fleet.providers.route if loaded.fleet else None
    return getattr(provider, "user", "root") if provider is not None else "root"


def cert_issuer(loaded: LoadedFleet) -> str | None:
    """Which CA the fleet's cert provider is, in words (`acme <directory>`, `metacrypt <url> mount <m>`):
    a certificate another one issued (ACME staging before production, the lab's before Metacrypt) is
    issued again, not kept until it nears expiry.  None: no cert provider."""
    cert = loaded.fleet.providers.cert if loaded.fleet else None
    if cert is None:
        return None
    where = getattr(cert, "directory", None) or f"{getattr(cert, 'url', '')} mount {getattr(cert, 'mount', '')}"
    return f"{cert.kind} {where}"


def record_ttl(loaded: LoadedFleet) -> int | None:
    """The TTL the DNS provider writes records with (None: no provider)."""
    dns = loaded.fleet.providers.dns if loaded.fleet else None
    return dns.ttl if dns is not None else None


def desired_state(loaded: LoadedFleet, agent_hashes: Mapping[str, str] | None = None) -> dict[str, DesiredHost]:
    """What each host should have.  `agent_hashes`: host -> sha256 of the agent to install (from the build);
    for a NixOS host, the store path of its system toplevel (the agent is part of that closure)."""
    agent_hashes = agent_hashes or {}
    zone = loaded.fleet.zone if loaded.fleet else None
    hosts = {
        name: DesiredHost(
            name=name,
            os=e.host.os.value,
            arch=e.host.arch.value,
            agent=DesiredAgent(
                path=e.host.agent.path,
                unit=e.host.agent.unit,
                user=e.host.agent.user,
                socket=e.host.agent.socket,
                unit_sha256=sha256_text(agent_unit_text(e)),
                sha256=None if e.host.os.value == "nixos" else agent_hashes.get(name),
            ),
            users=_users(loaded, e),
            host_level=host_level_want(e, loaded.fleet),
            system=agent_hashes.get(name) if e.host.os.value == "nixos" else None,
            dirs=[
                DesiredDir(d["path"], d["owner"], d["group"], d["mode"])
                for d in srv_dirs(e)
                if d["path"] != e.host.agent.path.rpartition("/")[0]  # the agent's own: host_level
            ],
        )
        for name, e in sorted(loaded.hosts.items())
    }
    fleet = loaded.fleet
    ports = {n: assign_ports(n, e.services, fleet) for n, e in loaded.hosts.items()} if fleet else {}
    for name, entry in sorted(loaded.hosts.items()):
        address = ipv4_address(entry)
        for index, svc in enumerate(entry.services):
            containers = tuple(svc.container_name(c) for c in svc.components)
            # an inactive service keeps the ports assigned to it (assign_ports counts every service), so
            # its stopped containers, made with them, are started again as they are
            svc_ports = service_ports(svc, ports.get(name, {}))
            hosts[name].services[svc.name] = DesiredService(
                svc.name,
                svc.stage.value,
                spec_hash(svc),
                containers,
                images={svc.container_name(c): c.image for c in svc.components},
                ports=svc_ports,
                spec=svc,
                active=svc.active,
            )
            if not svc.active:
                # Stopped: nothing may lead to it (fleet.routes leaves its routes out too).  Its files are
                # left out as well: the files kind restarts a recorded service whose files change, and
                # a restart would start it.
                continue
            if svc.files:
                _add_files(loaded, hosts[name], entry, index, ports=svc_ports, address=address)
            if zone:
                default_name = f"{svc.name}.{zone}"
                hosts[name].records[default_name] = DesiredRecord(
                    default_name, address, ttl=record_ttl(loaded), v6=ipv6_addresses(entry)
                )
    add_routes(loaded, hosts, ports)
    return hosts


def _add_files(
    loaded: LoadedFleet, host: DesiredHost, entry: HostEntry, index: int, *, ports: dict[str, int], address: str
) -> None:
    """The service's declared files, and its folder (the host kind creates it before the files phase)."""
    agent = next((u for u in host.users if u.name == host.agent.user), None)
    ids = (agent.uid, agent.gid) if agent else (0, 0)
    for f in service_files(loaded, entry, index=index, ports=ports, address=address, mcp_ids=ids):
        host.files[f.path] = f
    folder = service_dir(entry.services[index].name)
    if not any(d.path == folder for d in host.dirs):
        user = host.agent.user
        host.dirs.append(DesiredDir(folder, user, user, "0750"))


def cert_stem(route: DeclaredRoute, first_hostname: dict[str, str]) -> str:
    """`<svc>` for a service's first TLS-terminating hostname (`<svc>.pem`, where mc-proxy looks), else the hostname."""
    if route.service is not None and first_hostname.setdefault(route.service, route.hostname) == route.hostname:
        return route.service
    return route.hostname


def add_routes(loaded: LoadedFleet, hosts: dict[str, DesiredHost], ports: dict[str, dict[RouteKey, int]]) -> None:
    """Routes on their proxy host, keyed `<listener>/<hostname>`; certs for TLS-terminating ones."""
    first_hostname: dict[str, str] = {}
    zone = loaded.fleet.zone if loaded.fleet else None
    for route in declared_routes(loaded, ports):
        proxy = hosts[route.proxy_host]
        if zone and route.hostname.endswith("." + zone):
            # the name leads to the proxy that routes it: a public route's to the edge, whose proxy
            # alone carries it (rule route-name-split keeps one hostname on one proxy)
            proxy_entry = loaded.hosts[route.proxy_host]
            hosts[route.backend_host].records[route.hostname] = DesiredRecord(
                route.hostname, ipv4_address(proxy_entry), ttl=record_ttl(loaded), v6=ipv6_addresses(proxy_entry)
            )
        proxy.routes[route.key] = DesiredRoute(
            route.hostname, route.mode, route.service, route.backend_host, route.backend, route.listener
        )
        if route.terminates_tls and not any(route.hostname in c.sans for c in proxy.certs.values()):
            stem = cert_stem(route, first_hostname)
            proxy.certs[stem] = DesiredCert(
                stem, f"{CERT_DIR}/{stem}.pem", (route.hostname,), proxy_user(loaded), cert_issuer(loaded)
            )


def dns_names(desired: DesiredHost) -> list[str]:
    return sorted(desired.records)
