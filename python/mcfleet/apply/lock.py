"""The locks that keep two applies apart.

The fleet lock: an exclusive, non-blocking `flock` on `<fleet>/.mcfleet/apply.lock`.
The kernel drops the lock when the holder dies (even by SIGKILL), so a crashed apply
never leaves the fleet locked; the file's content (pid, user, start time, argv) only
serves the error message of the apply that is refused.

The node lock: the fleet lock covers one checkout, so two copies of the fleet could
still apply to one node at once.  Each node therefore holds its own lock for the
whole apply of that node: a root shell on the node takes an exclusive `flock` on
`/var/lib/mcfleet/apply.lock` and keeps it until its stdin closes, which happens when
the orchestrator's SSH session ends in any way (done, killed, network gone).  A second
orchestrator is refused with who holds it.
"""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import json
import os
import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcfleet.apply.nodeio import KEPT_PREFIX, NODE_LOCK
from mcfleet.errors import ApplyError, Refused
from mcfleet.transport.base import become_refused
from mcfleet.util.statedir import state_dir

if TYPE_CHECKING:
    from mcfleet.transport.base import Node


def lock_path(fleet_root: Path) -> Path:
    return fleet_root / ".mcfleet" / "apply.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid', '?')} ({info.get('who', '?')}, started {started}: {info.get('command', '?')})"


@contextmanager
def fleet_lock(fleet_root: Path, command: str) -> Iterator[None]:
    """Hold the fleet lock for the duration of the block, or raise Refused at once."""
    path = state_dir(fleet_root) / lock_path(fleet_root).name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"another apply holds the fleet lock: {_holder(path)}",
                location=str(path),
                hint="wait for it to finish; the lock is released automatically when that process ends",
            ) from None
        info = {
            "pid": os.getpid(),
            "who": f"{getpass.getuser()}@{socket.gethostname()}",
            "started": time.time(),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# The lock-holding processes of this run (kept referenced until the connections close).
node_locks: list[Any] = []


def holder_text() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


def node_lock_script(who: str, lock_file: str = NODE_LOCK) -> str:
    """Root shell: take the node's lock (util-linux flock) and hold it until stdin closes.

    Plain sh + flock, so it runs on every node (a NixOS node may have no python3).  The lock
    file and the holder's name live in root's store; root's `>>` there follows no link mcp
    could plant (the folder is root's, 0700).  Once it holds the lock, the files an apply that
    died (killed, its connection gone) had copied to put back are removed: no other apply can
    still need them, and they may be a secret's earlier content.
    """
    lock, holder = shlex.quote(lock_file), shlex.quote(lock_file + ".holder")
    kept = shlex.quote(f"{os.path.dirname(lock_file)}/{KEPT_PREFIX}") + "*"
    info = json.dumps({"who": who, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return "\n".join(
        [
            "umask 077",
            f"exec 9>>{lock}",
            f'if ! flock -n 9; then echo "busy=$(head -c 1000 {holder} 2>/dev/null)"; exit 9; fi',
            f"printf '%s' {shlex.quote(info)} > {holder}",
            f"rm -f -- {kept}",
            "echo locked",
            "cat >/dev/null",  # until the orchestrator's session ends, however it ends
        ]
    )


async def hold_node_lock(node: Node, who: str | None = None) -> None:
    """Take the node's apply lock for as long as `node`'s SSH connection lives, or raise Refused.

    A node without `start` (the local node of unit tests) has no other orchestrator: no lock.
    """
    from mcfleet.apply.nodeio import ensure_store

    start: Any = getattr(node, "start", None)
    if start is None:
        return
    await ensure_store(node)
    proc = await start(node_lock_script(who or holder_text()))
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
    except TimeoutError:
        proc.close()
        raise ApplyError(
            f"taking the node's apply lock {NODE_LOCK} got no answer within 60 s", location=node.name
        ) from None
    if first.strip() == "locked":
        node_locks.append(proc)  # the process lives with the connection; closing either releases the lock
        return
    proc.close()
    if first.startswith("busy="):
        raise Refused(
            f"another orchestrator is applying to this node: {_node_holder(first[5:].strip())}",
            location=f"{node.name}: lock",
            hint="wait for it to finish; the lock is released when that apply ends or its connection drops",
        )
    err = (await proc.stderr.read()).strip() if first == "" else first
    refused = become_refused(getattr(node, "become", None), getattr(node, "user", "?"), err, node.name)
    if refused is not None:
        raise refused
    raise ApplyError(f"could not take the node's apply lock {NODE_LOCK}: {err or 'no answer'}", location=node.name)


def _node_holder(raw: str) -> str:
    try:
        info = json.loads(raw)
    except ValueError:
        return raw
    return f"{info.get('who', '?')}, since {info.get('since', '?')}"
