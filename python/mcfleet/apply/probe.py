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

from mcfleet.apply.nodeio import STORE, helper_source, stale_temp_glob, store_of, store_script
from mcfleet.fleet.models import Host
from mcfleet.kinds.agent import unit_dropins
from mcfleet.observe.manifest import Manifest, manifest_path, parse_manifest
from mcfleet.transport.base import Node


def unit_path(host: Host) -> str:
    return f"/etc/systemd/system/{host.agent.unit}"


def agent_dir(host: Host) -> str:
    return host.agent.path.rpartition("/")[0] or "/"


@dataclass(frozen=True)
class AgentProbe:
    """The agent's files and unit on a node, read right before apply acts on them."""

    binary_sha256: str | None  # the file the unit runs (agent.path)
    prev_sha256: str | None  # root's copy of the last confirmed binary
    unit_sha256: str | None
    active: str  # systemctl is-active: active, inactive, failed, activating, unknown
    enabled: str  # systemctl is-enabled: enabled, disabled, not-found...
    manifest: Manifest | None = None
    has_systemd: bool = True
    store_sha256: str | None = None  # root's copy of the binary it installed last
    dropins: tuple[str, ...] = ()  # drop-in files that override the unit (kinds.agent.unit_dropins)

    @property
    def confirmed_sha256(self) -> str | None:
        """The agent hash the last successful apply confirmed healthy (from the manifest)."""
        return self.manifest.agent.sha256 if self.manifest and self.manifest.agent else None


def probe_script(host: Host, store: str = STORE) -> str:
    """Run as root with the node helper on stdin: prepares the root store, then reads.

    Hashes come from the helper, which reads only regular files and follows no link
    (`/srv/mcp` is the agent account's to write).
    """
    b, u, m = host.agent.path, unit_path(host), manifest_path(store)
    q = shlex.quote
    current, prev, helper = f"{store}/agent/current", f"{store}/agent/prev", f"{store}/mcfleet-node.py"
    hashed = {"bin": b, "store": current, "prev": prev, "unit": u}
    globs = [stale_temp_glob(p) for p in (b, u, m, current, prev, f"{store}/unit.prev")]
    return "\n".join(
        [
            store_script(store),
            "set +e",
            # leftovers of a killed run: temp files are never the only copy of anything (rm never follows a link)
            f"rm -f {' '.join(globs)} {q(store)}/*.tmp 2>/dev/null",
            *(f"echo {key}=$(python3 {helper} hash {q(path)} | cut -d= -f2-)" for key, path in hashed.items()),
            "if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo systemd=1; "
            f"echo active=$(systemctl is-active {q(host.agent.unit)} 2>/dev/null); "
            f"echo enabled=$(systemctl is-enabled {q(host.agent.unit)} 2>/dev/null); "
            f"echo dropins=$(systemctl show -p DropInPaths --value {q(host.agent.unit)} 2>/dev/null); "
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
        return None if v in ("-", "") else v  # "!link"/"!other"/"!links": never equal to a real hash

    manifest = parse_manifest(values.get("manifest") or "", where=manifest_at)
    return AgentProbe(
        binary_sha256=sha("bin"),
        prev_sha256=sha("prev"),
        unit_sha256=sha("unit"),
        active=values.get("active") or "unknown",
        enabled=values.get("enabled") or "unknown",
        manifest=manifest,
        has_systemd=values.get("systemd") == "1",
        store_sha256=sha("store"),
        dropins=unit_dropins(values.get("dropins", "").split()),
    )


async def probe(node: Node, host: Host) -> AgentProbe:
    store = store_of(node)
    res = await node.run(probe_script(host, store), input=helper_source(), timeout=60)
    res.check("reading the agent's state", node.name)
    return parse_probe(res.stdout, manifest_at=f"{node.name}:{manifest_path(store)}")
