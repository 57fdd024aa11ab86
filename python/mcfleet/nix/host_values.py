"""Per-host values the NixOS modules set, computed in Python from the same files.

This is the Python twin of nix/lib/derive.nix: users with the fleet pin, resolvers
with their fallbacks, the mcp-agent unit (ExecStart=/srv/mcp/mcp-agent),
/srv directories and tmpfiles lines, firewall ports.  Debian nodes get these from
mcfleet directly (no NixOS), so both sides must agree; a T1 test compares them for
every host of the real fleet and the test fleets.  The dict shapes and key names are
exactly what `nix eval .#lib.hosts.<name>` prints.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Role
from mcfleet.fleet.resolvers import GLIBC_OPTIONS, written_servers, zone_exec, zone_routed, zone_servers
from mcfleet.fleet.routes import declared_routes
from mcfleet.nix.attrs import system_for

UNIT_DESCRIPTION = "mcp-agent: mcfleet node agent"


def _loopback(ip: str | None) -> bool:
    return ip is not None and (ip.startswith("127.") or ip in ("::1", "localhost"))


def users(loaded: LoadedFleet, entry: HostEntry) -> dict[str, Any]:
    pins = loaded.fleet.pins if loaded.fleet else {}
    out: dict[str, Any] = {}
    for name, user in sorted(entry.host.users.items()):
        pin = pins.get(name)
        out[name] = {
            "uid": user.uid,
            "gid": user.gid,
            "group": name,
            "home": f"/srv/{name}",
            "subuid": user.subuid.model_dump() if user.subuid else None,
            "subgid": user.subgid.model_dump() if user.subgid else None,
            "pin": {"uid": pin.uid, "gid": pin.gid} if pin else None,
            "pinException": user.pin_exception,
        }
    return out


def nameservers(entry: HostEntry) -> list[str]:
    """The fleet's resolvers first, then the public fallbacks, each once,
    as many as the host's resolver asks (glibc: 3)."""
    return written_servers(entry.host.dns)


def resolvers(loaded: LoadedFleet, entry: HostEntry) -> dict[str, Any]:
    dns = entry.host.dns
    zone = loaded.fleet.zone if loaded.fleet else ""
    return {
        "resolver": dns.resolver,
        "servers": written_servers(dns),
        "options": list(GLIBC_OPTIONS) if dns.resolver == "resolv.conf" else [],
        "fallbackDns": list(dns.fallback_dns),
        # systemd-resolved: the fleet's zone goes to its nameservers per link (fleet/resolvers.py)
        "zone": {"name": zone, "servers": zone_servers(dns), "exec": zone_exec(zone, zone_servers(dns))}
        if zone_routed(dns)
        else None,
    }


def agent_unit(entry: HostEntry) -> dict[str, Any]:
    agent = entry.host.agent
    home = str(PurePosixPath(agent.path).parent)
    return {
        "name": agent.unit,
        "description": UNIT_DESCRIPTION,
        "execStart": agent.path,
        "user": agent.user,
        "group": agent.user,
        "workingDirectory": home,
        "restart": "always",
        "restartSec": 5,
        "after": ["network-online.target"],
        "wants": ["network-online.target"],
        "wantedBy": ["multi-user.target"],
        "readWritePaths": [home],
    }


def agent_unit_text(entry: HostEntry) -> str:
    """The systemd unit file for mcp-agent (what Debian nodes get written to /etc/systemd/system)."""
    u = agent_unit(entry)
    return "\n".join(
        [
            "[Unit]",
            f"Description={u['description']}",
            f"After={' '.join(u['after'])}",
            f"Wants={' '.join(u['wants'])}",
            "",
            "[Service]",
            f"ExecStart={u['execStart']}",
            f"User={u['user']}",
            f"Group={u['group']}",
            f"WorkingDirectory={u['workingDirectory']}",
            f"Restart={u['restart']}",
            f"RestartSec={u['restartSec']}",
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            f"ReadWritePaths={' '.join(u['readWritePaths'])}",
            # hardening rootless podman still allows; left open because it needs them: user/mount
            # namespaces (RestrictNamespaces, PrivateUsers), /dev/fuse + /dev/net/tun (PrivateDevices),
            # procfs/sysfs mounts in its namespace (ProtectKernelTunables, ProtectControlGroups, ProtectProc),
            # mount/unshare/setns (SystemCallFilter), setuid files in images (RestrictSUIDSGID)
            "CapabilityBoundingSet=",
            "ProtectKernelModules=true",
            "ProtectKernelLogs=true",
            "RestrictRealtime=true",
            "LockPersonality=true",
            "SystemCallArchitectures=native",
            "UMask=0027",
            "KeyringMode=private",
            "",
            "[Install]",
            f"WantedBy={' '.join(u['wantedBy'])}",
            "",
        ]
    )


def volume_dirs(entry: HostEntry) -> set[str]:
    """Host sides of the active services' volumes under /srv/ (sgardd mounts /srv/sgard, not /srv/sgardd)."""
    found = set()
    for svc in entry.services:
        if not svc.active:
            continue
        for comp in svc.components:
            for volume in comp.volumes:
                source = volume.split(":", 1)[0]
                if source.startswith("/srv/"):
                    found.add(source)
    return found


def srv_dirs(entry: HostEntry) -> list[dict[str, str]]:
    owner = entry.host.agent.user
    paths = {str(PurePosixPath(entry.host.agent.path).parent)} | volume_dirs(entry)
    return [{"group": owner, "mode": "0750", "owner": owner, "path": p} for p in sorted(paths)]


def tmpfiles(entry: HostEntry) -> list[str]:
    return [f"d {d['path']} {d['mode']} {d['owner']} {d['group']} -" for d in srv_dirs(entry)]


def firewall(loaded: LoadedFleet, entry: HostEntry) -> dict[str, list[int]]:
    """Ports opened to the network: declared ports, fixed publishes not bound to loopback, and the
    listeners of every route this host's proxy serves (its own routes; on the edge, the fleet's
    public ones).  The agent has no network port: mcfleet reaches its unix socket through SSH.
    """
    publishes = [p for svc in entry.services if svc.active for c in svc.components for p in c.publish]
    opened = [p for p in publishes if not _loopback(p.host_ip)]
    listeners = {r.listener for r in declared_routes(loaded) if r.proxy_host == entry.host.name}
    tcp = set(entry.host.firewall_ports) | {p.host_port for p in opened if p.protocol != "udp"} | listeners
    udp = {p.host_port for p in opened if p.protocol == "udp"}
    return {"tcp": sorted(tcp), "udp": sorted(udp)}


def nix_trust(entry: HostEntry) -> dict[str, list[str]]:
    """What the NixOS module declares so the node's nix daemon accepts `nix copy` (host.json `nix`)."""
    n = entry.host.nix
    return {
        "trustedUsers": [entry.host.ssh.user] if n.trust == "trusted-user" else [],
        "publicKeys": list(n.public_keys) if n.trust == "signed" else [],
    }


def host_values(loaded: LoadedFleet, name: str) -> dict[str, Any]:
    """Everything above for one host, shaped like `nix eval .#lib.hosts.<name>`."""
    entry = loaded.hosts[name]
    host = entry.host
    return {
        "name": host.name,
        "os": str(host.os),
        "arch": str(host.arch),
        "roles": [str(r) for r in host.roles],
        "system": system_for(str(host.arch)),
        "users": users(loaded, entry),
        "nameservers": nameservers(entry),
        "resolvers": resolvers(loaded, entry),
        "agentUnit": agent_unit(entry),
        "agentUnitText": agent_unit_text(entry),
        "srvDirs": srv_dirs(entry),
        "tmpfiles": tmpfiles(entry),
        "firewall": firewall(loaded, entry),
        "edge": Role.edge in host.roles,
        "nixTrust": nix_trust(entry),
    }
