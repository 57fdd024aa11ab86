"""`mcfleet provision HOST` (Debian): what a node needs before its first agent.

The node-side part is one script (`templates/provision.sh`, one round trip): the
`mcp` group and user with their pinned GID/UID (refused, not changed, when the name
has other ids or the ids belong to another account: a rootless podman user's UID never moves), the
subordinate id ranges for rootless podman, `/srv/mcp/`, and the resolvers (the
host's nameservers, then the public fallbacks, so a dead fleet DNS does not stop lookups;
with resolv.conf, dhclient's and dhcpcd's hooks keep DHCP leases from rewriting it, and a drop-in
keeps NetworkManager from it).  The unit, the
bundle, the start and the health check are the apply pipeline's push and activate,
so a provisioned node is exactly what `apply` would make it.
"""

from __future__ import annotations

import shlex

from mcfleet.apply.artifacts import BuildBlocked
from mcfleet.apply.confirm import fill_template, template
from mcfleet.apply.probe import agent_dir
from mcfleet.errors import ApplyError, Refused
from mcfleet.fleet.load import HostEntry
from mcfleet.fleet.models import OS, Fleet, HostUser, IdRange
from mcfleet.fleet.resolvers import (
    DHCLIENT_HOOK,
    DHCPCD_HOOK,
    DHCPCD_NOHOOK_RE,
    MANAGED_MARK,
    NM_DROPIN,
    ZONE_UNIT_PATH,
    dhclient_hook,
    dhcpcd_hook,
    networkmanager_dropin,
    resolver_file,
    zone_servers,
    zone_unit_text,
)
from mcfleet.observe.hostlevel import SUBID_USE_SH
from mcfleet.transport.base import Node


def _range(r: IdRange | None) -> str:
    return f"{r.start}:{r.count}" if r else ""


def pinned_user(entry: HostEntry, fleet: Fleet | None) -> HostUser:
    """The agent user's ids on this host: its host.json entry, else the fleet-wide pin."""
    name = entry.host.agent.user
    if name in entry.host.users:
        return entry.host.users[name]
    pin = fleet.pins.get(name) if fleet else None
    if pin is None:
        raise Refused(
            f"no pinned ids for the agent user {name!r}",
            location=f"{entry.host.name}: provision",
            hint=f'declare "users": {{"{name}": {{"uid": 850, "gid": 850}}}} in host.json or a pin in fleet.json',
        )
    return HostUser(uid=pin.uid, gid=pin.gid)


def provision_script(entry: HostEntry, fleet: Fleet | None) -> str:
    host = entry.host
    user = pinned_user(entry, fleet)
    resolv = resolver_file(host.dns)
    zone = fleet.zone if fleet else ""
    unit = zone_unit_text(host.dns, zone) if zone else None
    hook = dhclient_hook(host.dns)
    dhcpcd = dhcpcd_hook(host.dns)
    nm = networkmanager_dropin(host.dns)
    q = shlex.quote
    return fill_template(
        template("provision.sh"),
        {
            "NAME": q(host.agent.user),
            "UID": str(user.uid),
            "GID": str(user.gid),
            "DIR": q(agent_dir(host)),
            "SUBUID": q(_range(user.subuid)),
            "SUBGID": q(_range(user.subgid)),
            "RESOLVER": q(host.dns.resolver),
            "RESOLV_FILE": q(resolv.path),
            "RESOLV_TEXT": q(resolv.text),
            "ZONE": q(zone),
            "ZONE_SERVERS": q(" ".join(zone_servers(host.dns))),
            "ZONE_UNIT_PATH": q(ZONE_UNIT_PATH),
            "ZONE_UNIT_TEXT": q(unit or ""),
            "DHCLIENT_HOOK": q(DHCLIENT_HOOK),
            "DHCLIENT_HOOK_TEXT": q(hook.text if hook else ""),
            "DHCPCD_HOOK": q(DHCPCD_HOOK),
            "DHCPCD_HOOK_TEXT": q(dhcpcd.text if dhcpcd else ""),
            "NM_DROPIN": q(NM_DROPIN),
            "NM_DROPIN_TEXT": q(nm.text if nm else ""),
            "MANAGED_MARK": q(MANAGED_MARK),
            "DHCPCD_NOHOOK_RE": q(DHCPCD_NOHOOK_RE),
            "SUBID_USE_FN": SUBID_USE_SH,  # shell code, not a value
        },
    )


def parse_output(stdout: str) -> tuple[list[str], list[str], str | None]:
    """(changed lines, ok lines, refusal) from the script's output."""
    changed, ok, refusal = [], [], None
    for line in stdout.splitlines():
        tag, _, text = line.partition(": ")
        if tag == "changed":
            changed.append(text)
        elif tag == "ok":
            ok.append(text)
        elif tag == "refuse":
            refusal = text
    return changed, ok, refusal


async def provision_host(node: Node, entry: HostEntry, fleet: Fleet | None) -> tuple[bool, str]:
    """Run the provisioning script; (changed?, message).  Raises Refused or ApplyError."""
    host = entry.host
    if host.os != OS.debian:
        raise BuildBlocked(
            f"{host.name} runs {host.os}: its users come from the NixOS configuration, not from mcfleet",
            location=f"{host.name}: provision",
            hint="build and switch the node's configuration (nixos-rebuild)",
        )
    res = await node.run(provision_script(entry, fleet), timeout=120)
    changed, ok, refusal = parse_output(res.stdout)
    if refusal is not None:
        raise Refused(
            refusal,
            location=f"{host.name}: provision",
            hint="fix the node by hand or record the node's own ids as a pin_exception in host.json",
        )
    if not res.ok:
        raise ApplyError(
            f"provisioning failed (exit {res.exit_status}): {(res.stderr or res.stdout).strip()[-400:]}",
            location=f"{host.name}: provision",
        )
    if changed:
        return True, "; ".join(changed)
    return False, f"nothing to change ({len(ok)} checks ok)"


def with_folders(changed: bool, message: str, folders: str) -> str:
    """The provision phase's message when it also made folders: they come first when the script changed
    nothing (was "nothing to change (12 checks ok); folders: /srv/hello …" for a phase that changed)."""
    return f"{message}; folders: {folders}" if changed else f"folders: {folders}; otherwise {message}"
