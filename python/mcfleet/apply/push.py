"""Push (Debian): the agent bundle to `/srv/mcp/mcp-agent`, content-addressed and atomic.

    SFTP to `.mcp-agent.<nonce>.tmp` beside the binary → sha256 verified on the node
    → the current binary saved as `mcp-agent.prev` (copy + rename) → rename into place.

Nothing is sent when the node already has that hash.  `.prev` only ever holds a
binary that an apply confirmed healthy (its hash is the manifest's), so a run that
was killed after pushing an unproven binary cannot make that binary the rollback
target of the next one.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from mcfleet.apply.nodeio import Node, temp_name, upload
from mcfleet.apply.probe import AgentProbe
from mcfleet.errors import ApplyError
from mcfleet.fleet.models import Host


@dataclass(frozen=True)
class PushResult:
    changed: bool
    bytes_sent: int
    sha256: str
    message: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install_script(binary: str, tmp: str, want: str, confirmed: str | None) -> str:
    """Verify the uploaded temp file and move it into place, keeping a proven `.prev`."""
    b, t, p = shlex.quote(binary), shlex.quote(tmp), shlex.quote(binary + ".prev")
    return "\n".join(
        [
            "set -eu",
            f"got=$(sha256sum {t} | cut -d' ' -f1)",
            f'if [ "$got" != {shlex.quote(want)} ]; then rm -f {t}; '
            'echo "hash mismatch after upload: $got" >&2; exit 3; fi',
            f"chmod 0755 {t}",
            # keep the running binary as .prev when it is the confirmed one (or when there is no .prev yet)
            f"if [ -f {b} ]; then cur=$(sha256sum {b} | cut -d' ' -f1); "
            f'if [ "$cur" = {shlex.quote(confirmed or "")} ] || [ ! -f {p} ]; then '
            f"cp -p {b} {p}.tmp && mv -f {p}.tmp {p}; fi; fi",
            f"sync {t} 2>/dev/null || true",
            f"mv -f {t} {b}",
        ]
    )


async def push_agent(node: Node, host: Host, bundle: Path, sha: str, state: AgentProbe) -> PushResult:
    """Make the node's agent binary be `bundle` (hash `sha`); nothing is sent when it already is."""
    if state.binary_sha256 == sha:
        return PushResult(False, 0, sha, f"already has {sha[:12]}")
    binary = host.agent.path
    tmp = temp_name(binary)
    res = await node.run(["mkdir", "-p", binary.rpartition("/")[0] or "/"])
    res.check("creating the agent's folder", node.name)
    try:
        sent = await upload(node, bundle, tmp)
    except (OSError, Exception) as exc:  # asyncssh.SFTPError is not an OSError
        await node.run(["rm", "-f", tmp])
        raise ApplyError(
            f"uploading the agent bundle failed: {exc}",
            location=f"{host.name}: push",
            hint="check free space in the agent's folder on the node",
        ) from exc
    res = await node.run(install_script(binary, tmp, sha, state.confirmed_sha256), timeout=120)
    if not res.ok:
        raise ApplyError(
            f"installing the agent bundle failed: {res.stderr.strip() or res.stdout.strip()}",
            location=f"{host.name}: push",
            hint="a hash mismatch means the upload was corrupted: re-run the apply",
        )
    was = state.binary_sha256[:12] if state.binary_sha256 else "none"
    return PushResult(True, sent, sha, f"{was} -> {sha[:12]} ({sent} bytes)")
