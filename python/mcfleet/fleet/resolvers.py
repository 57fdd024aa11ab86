"""What a host's resolver configuration must be so that it fails over when the fleet's DNS dies.

Incident lesson 2: MCNS ran as a container on rift; when it died every node that used it lost
all name resolution.  A fallback only helps if the resolver really reaches it:

- glibc (`/etc/resolv.conf`) reads at most 3 `nameserver` lines (MAXNS) and asks them in
  order: the first for `timeout` seconds (5 by default), server i > 0 for
  `(timeout << i) / number of servers` (at least 1 s), and all of them `attempts` times.
  Defaults, two silent fleet servers: a fallback in 3rd place answers after ~8 s, one in
  4th place is never asked (the lookup fails after ~28 s).  With `options timeout:1
  attempts:2` and the fallback 3rd, the answer comes after ~2 s, and a name nobody
  answers fails after ~6 s.
- systemd-resolved (systemd 252) moves to the next `DNS=` server when one does not answer
  and stays with the one that works, but only after ~5 s per silent server (no setting
  shortens it): with every server in `DNS=`, the first lookup after MCNS went silent took
  10 s, and after MCNS came back it kept asking the public server, which does not know the
  fleet's zone.  `FallbackDNS=` is asked only while no `DNS=` server is configured.  So the
  public fallbacks are the global `DNS=` (every name outside the fleet's zone, MCNS never
  asked), and the fleet's zone goes to MCNS alone: per-link DNS (`resolvectl dns/domain
  ~<zone>/default-route no`) on the link the kernel routes each MCNS address through, set
  by a oneshot unit at boot (link settings live in /run, so they survive a restart of
  resolved but not a reboot).  Measured in the lab: public names 0.01-0.02 s with MCNS
  silent, from the first lookup on.

Both the Debian provisioning script and the NixOS module (nix/modules/dns.nix, fed by
nix/lib/derive.nix `resolvers`) write what this module computes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcfleet.fleet.models import Dns

# glibc's resolv.h: `#define MAXNS 3`; later nameserver lines are ignored.
GLIBC_MAXNS = 3
# Per-server wait in seconds and rounds over the servers; measured in the lab (see
# tests/integration/test_dns_failover_lab.py): 1 s per silent server keeps a lookup that
# the fallback answers under 3 s (one silent fleet server: 1.0 s, two: 2.0 s; glibc waits
# whole seconds, 1 at least).  `rotate` was measured too (0, 1 or 2 s by turns) but starts a
# third of the lookups at the public server, which answers NXDOMAIN for names only the
# fleet's servers know, so it is not written.
GLIBC_OPTIONS = ("timeout:1", "attempts:2")

RESOLV_CONF = "/etc/resolv.conf"
# Debian's DHCP client (isc-dhcp-client, ifupdown's default on Debian 12) rewrites /etc/resolv.conf
# with the lease's servers at every bind and renewal, which drops the fallbacks until the next
# apply: the outage the fallbacks exist for.  dhclient-script sources every file of this folder
# (run-parts order) before it acts, and a `make_resolv_conf` defined there replaces its own; the
# name sorts last so that this definition also wins over resolvconf's and systemd-resolved's hooks.
DHCLIENT_HOOK = "/etc/dhcp/dhclient-enter-hooks.d/zz-mcfleet-resolvers"
DHCLIENT_HOOK_TEXT = (
    "# managed by mcfleet: /etc/resolv.conf holds the fleet's nameservers, then public fallbacks\n"
    "# (host.json's dns); a DHCP lease must not replace them, so dhclient-script writes no resolv.conf\n"
    "make_resolv_conf() {\n"
    "    :\n"
    "}\n"
)
# dhcpcd (Debian 13's default DHCP client, also in Debian 12) does the same through its resolv.conf
# hook.  dhcpcd-run-hooks sources /etc/dhcpcd.enter-hook first, then each hook of its folder unless
# its name is in $skip_hooks, which it checks for every hook after the enter hook ran.  That file is
# one the operator may already use for something else: mcfleet writes it only when absent or its
# own (the first line), and says so in the plan otherwise.
DHCPCD_HOOK = "/etc/dhcpcd.enter-hook"
DHCPCD_HOOK_TEXT = (
    "# managed by mcfleet: /etc/resolv.conf holds the fleet's nameservers, then public fallbacks\n"
    "# (host.json's dns); a DHCP lease must not replace them, so dhcpcd-run-hooks skips its resolv.conf hook\n"
    'skip_hooks="$skip_hooks resolv.conf"\n'
)
# NetworkManager (when installed: desktops, some servers) writes /etc/resolv.conf from its connections'
# DNS, or its global DNS, when it starts, reloads or a connection changes, dropping the fallbacks.
# `dns=none` makes it leave that file alone; conf.d is read in name order, later files win, so the
# name sorts last.  A reload (SIGHUP) re-reads it.
NM_DROPIN = "/etc/NetworkManager/conf.d/zz-mcfleet-resolvers.conf"
NM_DROPIN_TEXT = (
    "# managed by mcfleet: /etc/resolv.conf holds the fleet's nameservers, then public fallbacks\n"
    "# (host.json's dns); NetworkManager must not replace them, so it writes no resolv.conf\n"
    "[main]\n"
    "dns=none\n"
)
# A line of /etc/dhcpcd.conf that turns dhcpcd's resolv.conf hook off (`nohook resolv.conf`, alone or in a
# list): then no enter hook is needed.  An ERE, for `grep -E` in the facts probe and the provisioning script.
DHCPCD_NOHOOK_RE = r"^[[:space:]]*nohook([[:space:]]+|.*[[:space:],])resolv\.conf"
# The first line of each file mcfleet writes whole under /etc (resolver files, DHCP hooks, the zone unit).
MANAGED_MARK = "# managed by mcfleet"
RESOLVED_DROPIN = "/etc/systemd/resolved.conf.d/mcfleet.conf"
ZONE_UNIT = "mcfleet-dns-zone.service"
ZONE_UNIT_PATH = f"/etc/systemd/system/{ZONE_UNIT}"
# The unit's script runs with this PATH on Debian and NixOS alike (ip and resolvectl).
ZONE_PATH = "/run/current-system/sw/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item.lower() not in (s.lower() for s in seen):
            seen.append(item)
    return seen


def ordered_servers(dns: Dns) -> list[str]:
    """The fleet's nameservers first, then the fallbacks, each once (compared case-insensitively)."""
    return _unique([*dns.nameservers, *dns.fallback])


def public_fallbacks(dns: Dns) -> list[str]:
    """The fallbacks that are not also among the host's nameservers, each once."""
    own = {ns.lower() for ns in dns.nameservers}
    return [a for a in _unique(dns.fallback) if a.lower() not in own]


def zone_routed(dns: Dns) -> bool:
    """systemd-resolved with a public fallback: the zone goes to the nameservers, the rest to the fallbacks."""
    return dns.resolver == "systemd-resolved" and bool(public_fallbacks(dns))


def written_servers(dns: Dns) -> list[str]:
    """The resolver's global list: the first 3 for glibc (it ignores the rest); resolved's global
    DNS= gets the public fallbacks (the nameservers answer the zone per link), or every server
    when there is no public fallback (a host validation refuses)."""
    servers = ordered_servers(dns)
    if dns.resolver == "resolv.conf":
        return servers[:GLIBC_MAXNS]
    return public_fallbacks(dns) if zone_routed(dns) else servers


def zone_servers(dns: Dns) -> list[str]:
    """The nameservers that answer the fleet's zone per link (systemd-resolved only)."""
    return _unique(list(dns.nameservers)) if zone_routed(dns) else []


# Sets resolved's per-link DNS for the zone on the link that routes to each nameserver (`ip route
# get`; a nameserver on this host itself, as on MCNS's own host, is routed through lo, which
# resolved refuses, so the link holding that address), and makes that link no default route,
# so only names under the zone go there.  One line
# for the unit's ExecStart: no backslash, `%` or single quote; `$` is doubled by zone_exec.
ZONE_SCRIPT = (
    'PATH=@PATH@; zone=@ZONE@; servers="@SERVERS@"; '
    'dev_of() { set -- $(ip -o route get "$1" 2>/dev/null); '
    'if [ "$1" = local ]; then set -- $(ip -o addr show to "$2/32" 2>/dev/null); '
    '[ -n "$2" ] || return 1; echo "$2"; return 0; fi; while [ $# -gt 1 ]; do '
    'if [ "$1" = dev ]; then echo "$2"; return 0; fi; shift; done; return 1; }; '
    'links=; for a in $servers; do d=$(dev_of $a) || { echo "no route to $a" >&2; continue; }; '
    'case " $links " in *" $d "*) ;; *) links="$links $d" ;; esac; done; '
    '[ -n "$links" ] || { echo "no route to any of $servers" >&2; exit 1; }; '
    'for d in $links; do set --; for a in $servers; do [ "$(dev_of $a)" = "$d" ] && set -- "$@" $a; done; '
    'resolvectl dns $d "$@" && resolvectl domain $d "~$zone" && resolvectl default-route $d no || exit 1; '
    'echo "$zone -> $* on $d"; done'
)


def zone_exec(zone: str, servers: list[str]) -> str:
    """The unit's ExecStart (systemd expands `$`, so the script's are doubled)."""
    script = ZONE_SCRIPT.replace("@PATH@", ZONE_PATH).replace("@ZONE@", zone).replace("@SERVERS@", " ".join(servers))
    return "/bin/sh -c '" + script.replace("$", "$$") + "'"


@dataclass(frozen=True)
class ResolverFile:
    """One file mcfleet writes on a Debian node for its resolvers."""

    path: str
    text: str


def resolv_conf_text(dns: Dns) -> str:
    servers = ordered_servers(dns)
    lines = ["# managed by mcfleet: the fleet's nameservers, then a public fallback (glibc asks at most 3)"]
    dropped = servers[GLIBC_MAXNS:]
    if dropped:
        lines.append(f"# not written, glibc would never ask them: {' '.join(dropped)}")
    lines += [f"nameserver {ns}" for ns in servers[:GLIBC_MAXNS]]
    lines.append(f"options {' '.join(GLIBC_OPTIONS)}")
    return "\n".join(lines) + "\n"


def resolved_dropin_text(dns: Dns) -> str:
    if zone_routed(dns):
        head = [
            f"# managed by mcfleet: the public resolvers answer every name; the fleet's zone goes to "
            f"{' '.join(zone_servers(dns))}",
            f"# per link ({ZONE_UNIT}), so no lookup waits on a silent fleet nameserver",
        ]
    else:
        head = ["# managed by mcfleet: every server in DNS= (resolved switches to the next one that answers)"]
    lines = [
        *head,
        "# FallbackDNS= is only used while no DNS= server is configured",
        "[Resolve]",
        f"DNS={' '.join(written_servers(dns))}",
    ]
    if dns.fallback_dns:
        lines.append(f"FallbackDNS={' '.join(dns.fallback_dns)}")
    return "\n".join(lines) + "\n"


def dhclient_hook(dns: Dns) -> ResolverFile | None:
    """The dhclient hook a Debian node with the resolv.conf resolver gets (when dhclient is installed);
    None with systemd-resolved, whose own hook hands the lease's servers to resolved."""
    return ResolverFile(DHCLIENT_HOOK, DHCLIENT_HOOK_TEXT) if dns.resolver == "resolv.conf" else None


def dhcpcd_hook(dns: Dns) -> ResolverFile | None:
    """The dhcpcd enter hook a node with the resolv.conf resolver gets (where dhcpcd is installed)."""
    return ResolverFile(DHCPCD_HOOK, DHCPCD_HOOK_TEXT) if dns.resolver == "resolv.conf" else None


def networkmanager_dropin(dns: Dns) -> ResolverFile | None:
    """The NetworkManager drop-in a node with the resolv.conf resolver gets (where NetworkManager is
    installed); None with systemd-resolved, to which NetworkManager hands its connections' servers."""
    return ResolverFile(NM_DROPIN, NM_DROPIN_TEXT) if dns.resolver == "resolv.conf" else None


def resolver_file(dns: Dns) -> ResolverFile:
    """The file a Debian node gets for its resolvers (the NixOS module writes the same values)."""
    if dns.resolver == "systemd-resolved":
        return ResolverFile(RESOLVED_DROPIN, resolved_dropin_text(dns))
    return ResolverFile(RESOLV_CONF, resolv_conf_text(dns))


def zone_unit_text(dns: Dns, zone: str) -> str | None:
    """The oneshot unit that routes the fleet's zone to its nameservers; None when not zone-routed."""
    if not zone_routed(dns):
        return None
    return (
        f"# managed by mcfleet: names under {zone} go to the fleet's nameservers, per link\n"
        "[Unit]\n"
        f"Description=mcfleet: resolve {zone} through the fleet's nameservers\n"
        "Wants=network-online.target\n"
        "After=network-online.target systemd-resolved.service tailscaled.service\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={zone_exec(zone, zone_servers(dns))}\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
