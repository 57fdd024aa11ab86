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
- systemd-resolved moves to the next `DNS=` server when one does not answer and stays with
  the one that works; `FallbackDNS=` is asked only while no `DNS=` server is configured, so
  every fallback is written into `DNS=` after the fleet's servers.

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
# the fallback answers under 3 s.
GLIBC_OPTIONS = ("timeout:1", "attempts:2")

RESOLV_CONF = "/etc/resolv.conf"
RESOLVED_DROPIN = "/etc/systemd/resolved.conf.d/mcfleet.conf"


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item.lower() not in (s.lower() for s in seen):
            seen.append(item)
    return seen


def ordered_servers(dns: Dns) -> list[str]:
    """The fleet's nameservers first, then the fallbacks, each once (compared case-insensitively)."""
    return _unique([*dns.nameservers, *dns.fallback])


def written_servers(dns: Dns) -> list[str]:
    """The servers the resolver is given: the first 3 for glibc (it ignores the rest), all for resolved."""
    servers = ordered_servers(dns)
    return servers[:GLIBC_MAXNS] if dns.resolver == "resolv.conf" else servers


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
    lines = [
        "# managed by mcfleet: every server in DNS= (resolved switches to the next one that answers);",
        "# FallbackDNS= is only used while no DNS= server is configured",
        "[Resolve]",
        f"DNS={' '.join(ordered_servers(dns))}",
    ]
    if dns.fallback_dns:
        lines.append(f"FallbackDNS={' '.join(dns.fallback_dns)}")
    return "\n".join(lines) + "\n"


def resolver_file(dns: Dns) -> ResolverFile:
    """The file a Debian node gets for its resolvers (the NixOS module writes the same values)."""
    if dns.resolver == "systemd-resolved":
        return ResolverFile(RESOLVED_DROPIN, resolved_dropin_text(dns))
    return ResolverFile(RESOLV_CONF, resolv_conf_text(dns))
