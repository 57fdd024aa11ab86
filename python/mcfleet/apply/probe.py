"""What apply needs to know about a node's agent right before it acts: one round trip.

The plan was made from facts observed earlier; apply re-reads the few values its
decisions rest on (binary hash, unit file, unit state, manifest) at the moment it
acts, so a re-run after a crash decides from the node's real state.  The same
script removes what a killed run may have left behind: temp files beside the
binary, the unit and the manifest (all renames are atomic, so a temp file is
never the only copy of anything).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from mcfleet.apply.nodeio import Node, stale_temp_glob
from mcfleet.fleet.models import Host
from mcfleet.observe.manifest import Manifest, parse_manifest
from mcfleet.observe.manifest import manifest_path as manifest_beside


def unit_path(host: Host) -> str:
    return f"/etc/systemd/system/{host.agent.unit}"


def agent_dir(host: Host) -> str:
    return host.agent.path.rpartition("/")[0] or "/"


def manifest_path(host: Host) -> str:
    return manifest_beside(host.agent.path)


@dataclass(frozen=True)
class AgentProbe:
    """The agent's files and unit on a node, read right before apply acts on them."""

    binary_sha256: str | None
    prev_sha256: str | None
    unit_sha256: str | None
    active: str  # systemctl is-active: active, inactive, failed, activating, unknown
    enabled: str  # systemctl is-enabled: enabled, disabled, not-found...
    manifest: Manifest | None = None
    has_systemd: bool = True

    @property
    def confirmed_sha256(self) -> str | None:
        """The agent hash the last successful apply confirmed healthy (from the manifest)."""
        return self.manifest.agent.sha256 if self.manifest and self.manifest.agent else None


def probe_script(host: Host) -> str:
    b, u, m = host.agent.path, unit_path(host), manifest_path(host)
    q = shlex.quote
    sha = 'h() { if [ -f "$1" ]; then sha256sum "$1" | cut -d" " -f1; else echo -; fi; }'
    return "\n".join(
        [
            sha,
            # leftovers of a killed run: temp files are never the only copy of anything
            f"rm -f {stale_temp_glob(b)} {stale_temp_glob(u)} {stale_temp_glob(m)} {q(b)}.rollback.tmp 2>/dev/null",
            f"echo bin=$(h {q(b)})",
            f"echo prev=$(h {q(b + '.prev')})",
            f"echo unit=$(h {q(u)})",
            "if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo systemd=1; "
            f"echo active=$(systemctl is-active {q(host.agent.unit)} 2>/dev/null); "
            f"echo enabled=$(systemctl is-enabled {q(host.agent.unit)} 2>/dev/null); "
            "else echo systemd=0; echo active=unknown; echo enabled=unknown; fi",
            f"echo manifest=$(cat {q(m)} 2>/dev/null | tr -d '\\n' | head -c 1048576)",
            "true",
        ]
    )


def parse_probe(stdout: str, *, manifest_at: str = "the manifest") -> AgentProbe:
    """The probe's answer; a corrupt manifest is an error (ManifestCorrupt), never read as absent."""
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value.strip()

    def sha(key: str) -> str | None:
        v = values.get(key, "-")
        return None if v in ("-", "") else v

    manifest = parse_manifest(values.get("manifest") or "", where=manifest_at)
    return AgentProbe(
        binary_sha256=sha("bin"),
        prev_sha256=sha("prev"),
        unit_sha256=sha("unit"),
        active=values.get("active") or "unknown",
        enabled=values.get("enabled") or "unknown",
        manifest=manifest,
        has_systemd=values.get("systemd") == "1",
    )


async def probe(node: Node, host: Host) -> AgentProbe:
    res = await node.run(probe_script(host), timeout=30)
    res.check("reading the agent's state", node.name)
    return parse_probe(res.stdout, manifest_at=f"{node.name}:{manifest_path(host)}")
