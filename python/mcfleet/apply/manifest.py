"""Write the applied-state manifest (`/srv/mcp/mcfleet-state.json`) at the end of a host's apply.

The manifest model lives in `observe.manifest` (plan reads it); apply updates the
parts it owns (agent, pinned users, and whatever the post-activation steps set)
and keeps every other field.  It is written atomically (temp + rename) and only
when its content changes, so an apply that changes nothing writes nothing.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from typing import Any

from mcfleet.apply.nodeio import Node, write_text
from mcfleet.apply.probe import manifest_path
from mcfleet.fleet.models import Host
from mcfleet.observe.manifest import MANIFEST_VERSION, Manifest

# Fields that change on every write and so do not count as a change.
VOLATILE = ("applied_at", "applied_by")


def updated(current: dict[str, Any], host: Host, *, agent_sha: str | None, agent_version: str | None) -> dict[str, Any]:
    """The manifest after this apply: agent and users replaced, everything else kept."""
    out = dict(current)
    out["version"] = MANIFEST_VERSION
    if agent_sha:
        agent = current.get("agent")
        prev: dict[str, Any] = agent if isinstance(agent, dict) else {}
        version = agent_version or (prev.get("version") if prev.get("sha256") == agent_sha else None)
        out["agent"] = {"path": host.agent.path, "sha256": agent_sha, "version": version or None}
    out["users"] = {name: {"uid": u.uid, "gid": u.gid} for name, u in sorted(host.users.items())}
    Manifest.model_validate(out)  # what we write must be what plan can read
    return out


def _stable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in VOLATILE}


def differs(current: dict[str, Any], new: dict[str, Any]) -> bool:
    return _stable(current) != _stable(new)


async def write_manifest(node: Node, host: Host, manifest: dict[str, Any]) -> None:
    stamped = {
        **manifest,
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "applied_by": f"{getpass.getuser()}@{socket.gethostname()}",
    }
    await write_text(node, manifest_path(host), json.dumps(stamped, indent=2, sort_keys=True) + "\n", mode="0644")
