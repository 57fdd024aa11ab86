"""What a host should have beyond its pinned ids: the resolver files and the agent's folder.

Pure values from the files (the plan's host kind compares them with the node's facts; the
Debian provisioning script writes exactly these): the file for the host's resolver
mechanism (`fleet.resolvers.resolver_file`) and, with systemd-resolved, the unit that routes
the fleet's zone to its nameservers per link (`zone_unit_text`), with resolv.conf the hooks and
drop-in that keep Debian's DHCP clients and NetworkManager from rewriting it (`dhclient_hook`,
`dhcpcd_hook`, `networkmanager_dropin`); the agent's folder owned by the agent user's pinned ids,
mode 0750; linger for the agent user (its user manager runs the rootless podman socket from boot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from mcfleet.fleet.load import HostEntry
from mcfleet.fleet.models import Fleet
from mcfleet.fleet.resolvers import (
    ZONE_UNIT_PATH,
    ResolverFile,
    dhclient_hook,
    dhcpcd_hook,
    networkmanager_dropin,
    resolver_file,
    zone_servers,
    zone_unit_text,
)

AGENT_DIR_MODE = "750"


@dataclass(frozen=True)
class WantedDir:
    """A folder as the host should have it: owner ids and mode."""

    path: str
    uid: int
    gid: int
    mode: str  # octal permission bits as `stat -c %a` prints them

    def show(self) -> str:
        return f"{self.uid}:{self.gid} {self.mode}"


@dataclass(frozen=True)
class HostLevelWant:
    """What host.json asks of the host itself: resolver, agent folder, lingering users."""

    resolver: str  # "resolv.conf" | "systemd-resolved"
    resolver_file: ResolverFile
    agent_dir: WantedDir | None  # None when the agent user has no pinned ids
    # users whose systemd user manager runs from boot (rootless podman's socket; the Debian
    # provisioning script enables it)
    linger: tuple[str, ...] = ()
    podman_socket: str | None = None  # the user whose podman.socket is enabled (provisioning does it)
    zone: str = ""  # the fleet's zone
    zone_servers: tuple[str, ...] = ()  # its nameservers, routed per link (systemd-resolved)
    zone_unit: ResolverFile | None = None  # the oneshot unit that sets that routing
    # keeps Debian's DHCP client from rewriting resolv.conf (written where dhclient is installed)
    dhclient_hook: ResolverFile | None = None
    dhcpcd_hook: ResolverFile | None = None  # the same for dhcpcd (written where it is installed)
    networkmanager_dropin: ResolverFile | None = None  # the same for NetworkManager


def host_level_want(entry: HostEntry, fleet: Fleet | None) -> HostLevelWant:
    host = entry.host
    user = host.users.get(host.agent.user)
    pin = fleet.pins.get(host.agent.user) if fleet else None
    ids = (user.uid, user.gid) if user else (pin.uid, pin.gid) if pin else None
    folder = str(PurePosixPath(host.agent.path).parent)
    zone = fleet.zone if fleet else ""
    unit = zone_unit_text(host.dns, zone) if zone else None
    return HostLevelWant(
        resolver=host.dns.resolver,
        resolver_file=resolver_file(host.dns),
        agent_dir=WantedDir(folder, ids[0], ids[1], AGENT_DIR_MODE) if ids else None,
        linger=(host.agent.user,),
        podman_socket=host.agent.user,
        zone=zone,
        zone_servers=tuple(zone_servers(host.dns)) if unit else (),
        zone_unit=ResolverFile(ZONE_UNIT_PATH, unit) if unit else None,
        dhclient_hook=dhclient_hook(host.dns),
        dhcpcd_hook=dhcpcd_hook(host.dns),
        networkmanager_dropin=networkmanager_dropin(host.dns),
    )
