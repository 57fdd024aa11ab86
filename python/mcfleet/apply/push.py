"""Push (Debian): the agent bundle to the node, content-addressed, checked and atomic.

    SFTP as the login user into a fresh private folder in its home (0700; the agent's
    account cannot write there) → root copies it into its own store, hashing the bytes
    it copies (`/var/lib/mcfleet/agent/new`, refused on a hash mismatch) → the store's
    current binary becomes `prev` when it is the confirmed one → `new` becomes `current`
    → root installs `current` at `agent.path` (root-owned 0755), never following a link
    → the upload folder is removed.

Root never reads a binary from `/srv/mcp` to decide or to restore: the rollback target
(`prev`) is root's own copy, and it only ever holds a binary that an apply confirmed
healthy (its hash is the manifest's), so a run that was killed after pushing an
unproven binary cannot make that binary the rollback target of the next one.
Keeping `prev` is a rename inside the store: it needs no free space.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mcfleet.apply.nodeio import AGENT_CURRENT, AGENT_PREV, drop_staging, ensure_store, make_staging, put_file, upload
from mcfleet.apply.prewarm import prewarm
from mcfleet.apply.probe import AgentProbe
from mcfleet.errors import ApplyError, McfleetError
from mcfleet.fleet.models import Host
from mcfleet.observe.manifest import AGENT_RECORD
from mcfleet.report.rate import megabytes
from mcfleet.transport.base import Node

AGENT_NEW = AGENT_CURRENT.rpartition("/")[0] + "/new"


class PushReport(Protocol):
    """Progress of a push: `report("12.3/22.0 MB", bytes_done=…, bytes_total=…)`; `final=True` must go out."""

    def __call__(self, message: str, *, final: bool = False, **data: Any) -> None: ...


def _no_report(message: str, *, final: bool = False, **data: Any) -> None:
    return None


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


def rotate_script(confirmed: str | None) -> str:
    """Root shell inside its own store: keep the confirmed binary as `prev`, make `new` current.

    Every step is checked (`set -e`); renames inside one root-owned folder need no space.
    """
    cur, prev, new = shlex.quote(AGENT_CURRENT), shlex.quote(AGENT_PREV), shlex.quote(AGENT_NEW)
    return "\n".join(
        [
            "set -eu",
            f"if [ -f {cur} ]; then cur=$(sha256sum {cur} | cut -d' ' -f1); "
            f'if [ "$cur" = {shlex.quote(confirmed or "-")} ] || [ ! -f {prev} ]; then mv -f {cur} {prev}; fi; fi',
            f"mv -f {new} {cur}",
        ]
    )


async def _adopt_confirmed(node: Node, host: Host, state: AgentProbe) -> None:
    """A node from before the root store: take its confirmed binary as `prev`, if it still is that one.

    The copy is hashed as it is written, so a binary the agent's account swapped in is refused.
    """
    if state.store_sha256 or state.prev_sha256 or not state.confirmed_sha256:
        return
    if state.binary_sha256 == state.confirmed_sha256:
        # changed under us: no rollback target rather than an unproven one
        with contextlib.suppress(ApplyError):
            await put_file(node, AGENT_PREV, source=host.agent.path, mode="0700", sha=state.confirmed_sha256)


async def push_agent(
    node: Node, host: Host, bundle: Path, sha: str, state: AgentProbe, *, report: PushReport = _no_report
) -> PushResult:
    """Make the node's agent binary be `bundle` (hash `sha`); nothing is sent when it already is.

    `report` is told the bytes sent as they go (`12.3/22.0 MB`) and the slow steps after the upload.
    """
    where = f"{host.name}: push"
    if state.binary_sha256 == sha and state.store_sha256 == sha:
        return PushResult(False, 0, sha, f"already has {sha[:12]}")
    try:
        await ensure_store(node)
        await _adopt_confirmed(node, host, state)
        sent = 0
        if state.store_sha256 != sha:
            staging = await make_staging(node)

            def on_bytes(done: int, total: int) -> None:
                report(megabytes(done, total), final=done in (0, total), bytes_done=done, bytes_total=total)

            try:
                sent = await upload(node, bundle, f"{staging}/mcp-agent", progress=on_bytes)
                await put_file(node, AGENT_NEW, source=f"{staging}/mcp-agent", mode="0700", sha=sha)
            finally:
                await drop_staging(node, staging)
            res = await node.run(rotate_script(state.confirmed_sha256), timeout=60)
            res.check("keeping the confirmed agent as the rollback target", node.name)
        await put_file(node, host.agent.path, source=AGENT_CURRENT, mode="0755", sha=sha, record=AGENT_RECORD)
    except McfleetError as exc:
        raise ApplyError(f"installing the agent bundle failed: {exc.message}", location=where, hint=exc.hint) from exc
    report("installed; unpacking the new bundle on the node once (so the agent starts warm)", final=True)
    unpacked = await prewarm(node, host)  # so the restart in activate starts warm
    was = state.binary_sha256[:12] if state.binary_sha256 else "none"
    note = f", unpacked in {unpacked:.1f} s" if unpacked is not None else ""
    return PushResult(True, sent, sha, f"{was} -> {sha[:12]} ({sent} bytes{note})")
