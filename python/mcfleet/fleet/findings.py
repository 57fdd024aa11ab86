"""Validation findings: one problem, where it is, and what to do about it.

Codes are a stable contract shared with the pure-Nix validator (`nix/lib/rules.nix`):
a test checks that both report the same codes for the same fleet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, order=True)
class Finding:
    """One problem in the fleet's files: where it is, what is wrong and how to fix it."""

    code: str
    file: str
    pointer: str
    message: str
    hint: str
    host: str | None = None

    def location(self) -> str:
        return f"{self.file}{'#' + self.pointer if self.pointer else ''}"

    def format(self) -> str:
        return f"{self.code}: {self.location()}: {self.message}\n  hint: {self.hint}"

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


# code -> one line saying what the rule checks.  Keep in sync with nix/lib/rules.nix.
RULES: dict[str, str] = {
    "json-syntax": "a fleet file is not valid JSON",
    "schema": "a fleet file does not match its JSON Schema",
    "missing-file": "fleet.json or a host.json is missing",
    "unreadable": "a fleet file or folder cannot be read: a dangling or looping link, no permission, "
    "a device or FIFO, or a file where a folder belongs",
    "file-too-large": "a fleet file is larger than the size limit",
    "duplicate-key": "a JSON object in a fleet file has the same key twice",
    "name-mismatch": "a host's `name` differs from its folder, or a service's from its file name",
    "pin-mismatch": "a host's pinned user differs from the fleet-wide pin without a documented exception",
    "pin-missing": "a host lacks a user that the fleet pins",
    "id-duplicate": "two pinned users on one host share a UID or a GID",
    "id-dynamic-range": "a pinned id lies in the OS's dynamic system range without a stated reason",
    "id-system-collision": "a pinned id is held by a well-known system account on that host",
    "subid-overlap": "two accounts on one host have overlapping subuid or subgid ranges",
    "dns-no-fallback": "a host has no fallback resolver outside the fleet",
    "dns-fallback-unused": "a host's public resolvers are only in FallbackDNS=, which resolved never fails over to",
    "dns-fallback-internal": "a host lists a fleet-internal resolver as a fallback",
    "dns-fallback-unreached": "glibc would never ask a host's fallback: it comes after the 3rd nameserver",
    "dns-unreachable": "a host's resolver is on a network (tailnet, lan) its tags say it is not on",
    "image-unpinned": "an image is untagged or uses :latest",
    "address-duplicate": "an address is claimed by two hosts",
    "route-duplicate": "two routes of one component share a name or a port",
    "public-no-edge": "a public route exists but no host has the edge role",
    "public-domain": "a public hostname is outside the fleet's public_domains",
    "edge-containers": "an edge-only host runs containers",
    "firewall-unmanaged": "a Debian host lists firewall_ports, which only a NixOS host's firewall opens",
    "master-count": "the fleet does not have exactly one master",
    "core-off-master": "a core-stage service is placed off the master",
    "route-listener-duplicate": "two routes share a (listener, hostname)",
    "route-name-split": "a hostname in the zone is routed by the edge's proxy (public) and by its host's",
    "public-loopback": "a public route's backend is only on loopback of a node that is not the edge",
    "bind-other-host": "a service publishes on an address of another host",
    "name-claimed-twice": "a DNS name, route hostname or service name is claimed twice",
    "unknown-reference": "a reference names a host or service that does not exist",
    "host-port-duplicate": "one host port is pinned twice on a host (routes' or publishes' host_port)",
    "port-range-exhausted": "a host has more routes without a pinned host_port than free ports in fleet.json `ports`",
    "stage-cycle": "service dependencies form a cycle or point to a later boot stage",
    "secret-recipient-missing": "a host needs a secret it cannot decrypt (missing, or not encrypted to its host key)",
    "source-unreadable": "a service's file takes its content from a `source` that cannot be read (missing, too large)",
    "template-unknown": "a service's template uses a {{ name }} mcfleet does not fill for it",
    "jump-loop": "hosts' `ssh.jump` lead back to where they started (a host jumping through itself, or a cycle)",
    "secret-recipient-invalid": "a key in fleet.json `secret_recipients` is not an age or SSH public key",
}
