"""Host-level facts mcfleet manages beyond the pinned ids: the resolver file and the agent's folder.

Read in the same facts batch (one round trip) by the probes below; the host kind compares
them with what the files want (`kinds/host_level.py`), so a hand edit on the node shows in the
plan as `~` with the old and new values instead of being rewritten silently by apply.

Values: the file mcfleet writes for the resolvers (`/etc/resolv.conf` is read once, by the
`resolv` probe; `resolved-conf` reads the systemd-resolved drop-in, telling a missing file
from an empty one), where `/etc/resolv.conf` links to (systemd-resolved's stub or a plain
file), owner, group and mode of the agent's folder (`/srv/mcp`), and which users linger; with
systemd-resolved also the zone unit's file and enabled state and the per-link DNS servers and
domains resolved runs with now (`resolvectl`, only while resolved is active: a link's
settings set by the unit are lost when the link goes away or another manager replaces them).
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

import shlex
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mcfleet.fleet.models_base import FROZEN
from mcfleet.fleet.resolvers import (
    DHCLIENT_HOOK,
    DHCPCD_HOOK,
    DHCPCD_NOHOOK_RE,
    NM_DROPIN,
    RESOLVED_DROPIN,
    ZONE_UNIT,
    ZONE_UNIT_PATH,
)
from mcfleet.util.empty import empty_list

if TYPE_CHECKING:
    from mcfleet.observe.parse import FramedOutput
    from mcfleet.observe.script import Probe, ScriptInputs

ABSENT = "absent"

# What lives in a user's subordinate id ranges now (shared by the facts probe and the Debian
# provisioning script, so the plan and apply decide a range move alike): image layers and
# containers in the user's rootless podman storage, and whether any file under /srv is owned
# by an id (or group) of the ranges.  Measured on podman 4.3: after a move and `podman
# system migrate`, a file of container uid 1000 in an image shows as 65534 and cannot be
# written, and `podman system reset` run after the move cannot delete the old files.
SUBID_USE_SH = r"""subid_use() {  # subid_use <user> <uid start:count> <gid start:count>
    h=$(getent passwd "$1" | cut -d: -f6); l=0; c=0; f=0
    st="$h/.local/share/containers/storage"
    if [ -n "$h" ] && [ -d "$st" ]; then
        l=$(cat "$st"/*-layers/layers.json 2>/dev/null | grep -o '"id"' | wc -l)
        c=$(cat "$st"/*-containers/containers.json 2>/dev/null | grep -o '"id"' | wc -l)
    fi
    for r in "u $2" "g $3"; do
        k=${r%% *}; r=${r#* }; a=${r%:*}; n=${r#*:}
        case "$a$n" in *[!0-9]*|"") continue ;; esac
        hit=$(find /srv -xdev -"${k}id" +$((a - 1)) -"${k}id" -$((a + n)) -print -quit 2>/dev/null || true)
        [ -z "$hit" ] || f=1
    done
    echo "$1 layers $l containers $c files $f"
}"""
PODMAN_SOCKET_LINK = ".config/systemd/user/sockets.target.wants/podman.socket"


class DirFacts(BaseModel):
    model_config = FROZEN
    uid: int
    gid: int
    mode: str = Field(description="octal permission bits, e.g. 750")


class SubidUse(BaseModel):
    model_config = FROZEN
    layers: int = Field(description="image layers in the user's rootless podman storage")
    containers: int = Field(description="containers in that storage")
    files: bool = Field(description="a file under /srv is owned by an id or group of the node's ranges")

    @property
    def empty(self) -> bool:
        return not (self.layers or self.containers or self.files)


class ResolvedLink(BaseModel):
    model_config = FROZEN
    link: str = Field(description='as resolvectl names it, e.g. "Link 2 (eth0)"')
    servers: list[str] = Field(default_factory=empty_list)
    domains: list[str] = Field(default_factory=empty_list, description="~name: a routing-only domain")


class HostLevelFacts(BaseModel):
    model_config = FROZEN
    resolv_conf: str | None = Field(default=None, description="/etc/resolv.conf; None when absent")
    resolv_link: str | None = Field(default=None, description="where /etc/resolv.conf links to; None: a plain file")
    resolved_conf: str | None = Field(default=None, description="mcfleet's systemd-resolved drop-in; None when absent")
    agent_dir: DirFacts | None = Field(default=None, description="the agent's folder; None when absent")
    linger: list[str] = Field(default_factory=empty_list, description="users with linger (/var/lib/systemd/linger)")
    subid_use: dict[str, SubidUse] = Field(
        default_factory=dict,
        description="per user whose node ranges differ from the files: what lives in the node's ranges",
    )
    podman_socket: bool | None = Field(
        default=None, description="the agent user's podman.socket enabled (its sockets.target.wants link)"
    )
    podman_listening: bool | None = Field(
        default=None, description="a socket bound at the agent user's podman.sock (podman.socket started)"
    )
    zone_unit: str | None = Field(default=None, description="mcfleet's zone unit file; None when absent")
    zone_unit_enabled: str = Field(default="", description="systemctl is-enabled of the zone unit")
    links: list[ResolvedLink] = Field(
        default_factory=empty_list,
        description="systemd-resolved's links with DNS servers or domains (empty: not running)",
    )
    dhclient: bool | None = Field(
        default=None, description="Debian's DHCP client script is installed (None: not looked for)"
    )
    dhclient_hook: str | None = Field(default=None, description="mcfleet's dhclient hook; None when absent")
    dhcpcd: bool | None = Field(default=None, description="dhcpcd's hook runner is installed (None: not looked for)")
    dhcpcd_hook: str | None = Field(
        default=None, description="/etc/dhcpcd.enter-hook, whoever wrote it; None when absent"
    )
    dhcpcd_nohook: bool = Field(
        default=False, description="/etc/dhcpcd.conf has `nohook resolv.conf`: dhcpcd leaves resolv.conf alone"
    )
    networkmanager: bool | None = Field(default=None, description="NetworkManager is installed (None: not looked for)")
    networkmanager_dropin: str | None = Field(
        default=None, description="mcfleet's NetworkManager drop-in; None when absent"
    )

    def routed(self, zone: str) -> list[str]:
        """The DNS servers of every link that routes `zone` (domain `~zone`), in link order."""
        out: list[str] = []
        for link in self.links:
            if f"~{zone}".lower() in (d.lower() for d in link.domains):
                out += [s for s in link.servers if s not in out]
        return out


def _file(path: str) -> str:
    q = shlex.quote(path)
    return f"if [ -f {q} ]; then echo file; cat {q}; else echo {ABSENT}; fi"


def _podman_socket_body(link: str, home: str, user: str = "") -> str:
    """`enabled`/`absent` (the unit's wants link), then `listening` when a socket listens at the agent
    user's podman.sock: /proc/net/unix lists it, which a stopped podman.socket leaves behind as a file
    (so `[ -S ]` cannot tell).  It lists a connection the listener accepted under the same path too, and
    podman's worker can outlive a stopped unit holding one: only a line with the listening flag
    (__SO_ACCEPTCON, 00010000) counts.  The runtime folder is named by the uid the account `user` has in
    the node's user database, the uid its user manager runs as, never by who owns its home: a `chown` of
    the home on the node leaves the manager and its socket running under the account's uid.  Only a
    caller that names no account gets the home's owner (provisioning makes the home the account's)."""
    listens = 'awk -v p="/run/user/$u/podman/podman.sock" \'$4 == "00010000" && $8 == p { f = 1 } END { exit !f }\''
    uid = f"id -u {shlex.quote(user)}" if user else f"stat -c %u {home}"
    return (
        f"if [ -L {link} ]; then s=enabled; else s=absent; fi; "
        f"u=$({uid} 2>/dev/null) && {listens} /proc/net/unix "
        '&& s="$s listening"; echo "$s"'
    )


def host_level_probes(inp: "ScriptInputs") -> "list[Probe]":
    from mcfleet.observe.script import Probe

    agent_dir = shlex.quote(inp.agent_path.rsplit("/", 1)[0] or "/")
    # the agent user's home is the agent's folder (provisioning creates it so)
    socket_link = shlex.quote(f"{inp.agent_path.rsplit('/', 1)[0]}/{PODMAN_SOCKET_LINK}")
    return [
        Probe("resolv-link", "readlink /etc/resolv.conf", "/etc/resolv.conf"),
        Probe("resolved-conf", _file(RESOLVED_DROPIN), RESOLVED_DROPIN),
        Probe("agent-dir", f"stat -c '%u %g %a' {agent_dir}", inp.agent_path.rsplit("/", 1)[0]),
        Probe("linger", "ls -1 /var/lib/systemd/linger", "/var/lib/systemd/linger"),
        Probe("subid-use", _subid_use_body(inp.subids), "podman storage and /srv owners in the subid ranges"),
        Probe("podman-socket", _podman_socket_body(socket_link, agent_dir, inp.agent_user), socket_link),
        Probe("zone-unit", _file(ZONE_UNIT_PATH), ZONE_UNIT_PATH),
        Probe("zone-enabled", f"systemctl is-enabled {ZONE_UNIT} 2>/dev/null || true", ZONE_UNIT),
        Probe("dhclient", _dhclient_body(), DHCLIENT_HOOK),
        Probe("dhcpcd", _dhcpcd_body(), DHCPCD_HOOK),
        Probe("networkmanager", _installed_then_file("/usr/sbin/NetworkManager", NM_DROPIN), NM_DROPIN),
        Probe(
            "resolved-links",
            "if systemctl is-active --quiet systemd-resolved.service 2>/dev/null; then "
            "resolvectl dns 2>/dev/null; echo '--'; resolvectl domain 2>/dev/null; fi",
            "resolvectl",
        ),
    ]


def _installed_then_file(program: str, path: str) -> str:
    """`installed` or `none` (is `program` there), then `path` as `_file` prints it."""
    q = shlex.quote(program)
    return f"if [ -x {q} ]; then echo installed; else echo none; fi; {_file(path)}"


def _dhclient_body() -> str:
    """`dhclient` or `none` (is dhclient-script installed), then mcfleet's hook as `_file` prints it."""
    installed = (
        "if [ -x /sbin/dhclient-script ] || [ -x /usr/sbin/dhclient-script ]; then echo dhclient; else echo none; fi"
    )
    return f"{installed}; {_file(DHCLIENT_HOOK)}"


def _dhcpcd_body() -> str:
    """`dhcpcd` or `none` (is dhcpcd-run-hooks installed), `nohook` when /etc/dhcpcd.conf turns its
    resolv.conf hook off, then /etc/dhcpcd.enter-hook as `_file` prints it."""
    installed = (
        "if [ -x /usr/lib/dhcpcd/dhcpcd-run-hooks ] || [ -x /lib/dhcpcd/dhcpcd-run-hooks ]; then echo dhcpcd; "
        "else echo none; fi"
    )
    nohook = f"grep -qsE {shlex.quote(DHCPCD_NOHOOK_RE)} /etc/dhcpcd.conf"
    return f"{installed}; if {nohook}; then echo nohook; else echo hook; fi; {_file(DHCPCD_HOOK)}"


def _subid_use_body(subids: tuple[str, ...]) -> str:
    """For each wanted "<user> <uid range> <gid range>" the node does not have: what lives in the node's ranges."""
    if not subids:
        return "true"
    checks = []
    for line in subids:
        user, want_u, want_g = line.split(" ")
        q = shlex.quote(user)
        checks.append(
            f"hu=$(grep '^'{q}: /etc/subuid | head -n1 | cut -d: -f2,3); "
            f"hg=$(grep '^'{q}: /etc/subgid | head -n1 | cut -d: -f2,3); "
            f'if [ -n "$hu$hg" ] && {{ [ "$hu" != {shlex.quote(want_u)} ] || '
            f'{{ [ {shlex.quote(want_g)} != ":" ] && [ "$hg" != {shlex.quote(want_g)} ]; }}; }}; then '
            f'subid_use {q} "$hu" "$hg"; fi'
        )
    return SUBID_USE_SH + "\n" + "\n".join(checks)


def _subid_use(text: str) -> dict[str, SubidUse]:
    out: dict[str, SubidUse] = {}
    for line in text.splitlines():
        parts = line.split()
        if (
            len(parts) == 7
            and parts[1::2] == ["layers", "containers", "files"]
            and all(x.isdecimal() for x in parts[2::2])
        ):
            out[parts[0]] = SubidUse(layers=int(parts[2]), containers=int(parts[4]), files=parts[6] != "0")
    return out


def _content(text: str) -> str | None:
    head, _, rest = text.partition("\n")
    return rest if head == "file" else None


def _dir(text: str) -> DirFacts | None:
    parts = text.split()
    if len(parts) != 3 or not (parts[0].isdecimal() and parts[1].isdecimal()) or not parts[2].isdecimal():
        return None
    return DirFacts(uid=int(parts[0]), gid=int(parts[1]), mode=parts[2])


def _links(text: str) -> list[ResolvedLink]:
    """`resolvectl dns`, `--`, `resolvectl domain` ("Link 2 (eth0): a b") -> the links (not Global)."""
    servers: dict[str, list[str]] = {}
    domains: dict[str, list[str]] = {}
    into = servers
    for line in text.splitlines():
        if line.strip() == "--":
            into = domains
            continue
        key, sep, rest = line.partition(": ")
        if not sep and line.endswith(":"):
            key, rest = line[:-1], ""
        if key.startswith("Link "):
            into[key] = rest.split()
    return [
        ResolvedLink(link=k, servers=servers.get(k, []), domains=domains.get(k, []))
        for k in dict.fromkeys([*servers, *domains])
        if servers.get(k) or domains.get(k)
    ]


def host_level_from(v: "FramedOutput") -> HostLevelFacts | None:
    """None when the node ran a facts script without these probes (an older mcfleet)."""
    if "agent-dir" not in v.values:
        return None
    socket = v.text("podman-socket").split()
    installed, _, hook_file = v.text("dhclient").partition("\n")
    dhclient = {"dhclient": True, "none": False}.get(installed.strip())
    hook = _content(hook_file) if dhclient is not None else None
    dhcpcd_installed, _, rest = v.text("dhcpcd").partition("\n")
    nohook, _, dhcpcd_file = rest.partition("\n")
    dhcpcd = {"dhcpcd": True, "none": False}.get(dhcpcd_installed.strip())
    nm_installed, _, nm_file = v.text("networkmanager").partition("\n")
    networkmanager = {"installed": True, "none": False}.get(nm_installed.strip())
    return HostLevelFacts(
        resolv_conf=v.text("resolv") or None,  # the `resolv` probe's file (empty: absent or empty)
        resolv_link=v.text("resolv-link").strip() or None,
        resolved_conf=_content(v.text("resolved-conf")),
        agent_dir=_dir(v.text("agent-dir")),
        linger=sorted(v.text("linger").split()),
        subid_use=_subid_use(v.text("subid-use")),
        podman_socket={"enabled": True, ABSENT: False}.get(socket[0] if socket else ""),
        podman_listening="listening" in socket if socket else None,
        zone_unit=_content(v.text("zone-unit")),
        zone_unit_enabled=v.text("zone-enabled").strip(),
        links=_links(v.text("resolved-links")),
        dhclient=dhclient,
        dhclient_hook=hook,
        dhcpcd=dhcpcd,
        dhcpcd_hook=_content(dhcpcd_file) if dhcpcd is not None else None,
        dhcpcd_nohook=nohook.strip() == "nohook",
        networkmanager=networkmanager,
        networkmanager_dropin=_content(nm_file) if networkmanager is not None else None,
    )
