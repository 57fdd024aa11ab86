"""Thin helpers over the transport for apply: atomic remote writes and file upload.

Not a second SSH layer: everything goes through the transport's `run()` (both
`transport.ssh.SshConnection` and `transport.local.LocalRunner` satisfy `Node`),
and uploads through the SSH connection's SFTP client when there is one.  A node
without SFTP (the local runner used by tests of the pure parts) gets a local copy.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import shutil
from pathlib import Path
from typing import Any, Protocol

from mcfleet.transport.base import Command, RunResult


class Node(Protocol):
    """What apply needs from a connection: a name and `run()` (see transport.base.Runner)."""

    name: str

    async def run(self, command: Command, *, input: str | None = None, timeout: float | None = None) -> RunResult: ...  # noqa: ASYNC109


def temp_name(path: str) -> str:
    """A temp file beside `path` (same filesystem, so the final rename is atomic).

    Named `.<name>.<nonce>.tmp` so a crashed run's leftovers are recognisable and
    cleaned by the next one (`stale_temp_glob`).
    """
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}.{secrets.token_hex(6)}.tmp"


def stale_temp_glob(path: str) -> str:
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}.*.tmp"


def write_text_script(path: str, mode: str = "0644", owner: str | None = None) -> str:
    """Shell that writes stdin to `path` atomically (temp beside it, fsync by `sync`, rename)."""
    q, tmp = shlex.quote(path), shlex.quote(temp_name(path))
    chown = f" && chown {shlex.quote(owner)} {tmp}" if owner else ""
    return (
        f"mkdir -p $(dirname {q}) && cat > {tmp} && chmod {mode} {tmp}{chown} "
        f"&& {{ sync {tmp} 2>/dev/null || true; }} && mv -f {tmp} {q} || {{ rm -f {tmp}; exit 1; }}"
    )


async def write_text(node: Node, path: str, text: str, mode: str = "0644", owner: str | None = None) -> None:
    """Replace a remote file atomically with `text` (one round trip)."""
    res = await node.run(write_text_script(path, mode, owner), input=text)
    res.check(f"writing {path}", node.name)


async def upload(node: Node, local: Path, remote: str) -> int:
    """Copy a local file to `remote` (SFTP on SSH connections); returns the bytes sent."""
    sftp_factory: Any = getattr(node, "sftp", None)
    if sftp_factory is not None:
        sftp = await sftp_factory()
        await sftp.put(str(local), remote)
    else:
        await asyncio.to_thread(shutil.copyfile, local, remote)
    return (await asyncio.to_thread(local.stat)).st_size
