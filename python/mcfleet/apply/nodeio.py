"""Thin helpers over the transport for apply: atomic remote writes and file upload.

Not a second SSH layer: everything goes through the transport's `run()` (both
`transport.ssh.SshConnection` and `transport.local.LocalNode` are a `transport.base.Node`),
and uploads through the SSH connection's SFTP client when there is one.  A node
without SFTP (the local node used by tests of the pure parts) gets a local copy.
"""

from __future__ import annotations

import asyncio
import getpass
import secrets
import shlex
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcfleet.errors import ApplyError
from mcfleet.observe.manifest import NODE_STORE, Manifest, manifest_path
from mcfleet.transport.base import Node, RunResult

# Root's own store on the node: everything root executes or reads to decide lives here
# (the rollback script, the agent binaries it restores, the previous unit, the deadman's
# tokens, the node lock, the manifest).  Root-owned 0700: the agent's account cannot
# write, rename or plant links here, unlike its data folder /srv/mcp.
STORE = NODE_STORE
HELPER = f"{STORE}/mcfleet-node.py"
AGENT_CURRENT = f"{STORE}/agent/current"  # the binary the unit should run (copied to agent.path)
AGENT_PREV = f"{STORE}/agent/prev"  # the last binary an apply confirmed healthy
UNIT_PREV = f"{STORE}/unit.prev"
NODE_LOCK = f"{STORE}/apply.lock"
# Root's copies of files an apply may put back (a service that does not get healthy on new ones):
# needed only while that apply holds the node lock, so the next holder removes any left behind.
KEPT_PREFIX = "previous."


def helper_source() -> str:
    from importlib import resources  # here: plan imports this module (kinds/files.py) and never uploads

    return resources.files("mcfleet.apply").joinpath("node_helper.py").read_text()


def store_of(node: object) -> str:
    """Root's store on this node: STORE, except on a local node a test pointed at a scratch folder."""
    return str(getattr(node, "store", None) or STORE)


def store_script(store: str = STORE) -> str:
    """Shell (run as root) that makes the store a root-owned 0700 folder and installs the helper from stdin.

    A store that is a link, not a folder, or not root's is refused: root must not follow it.
    """
    s, h = shlex.quote(store), shlex.quote(f"{store}/mcfleet-node.py")
    return "\n".join(
        [
            "set -eu",
            f"if [ -L {s} ] || {{ [ -e {s} ] && [ ! -d {s} ]; }}; then "
            f'echo "mcfleet-node: {store} is not a folder (a link or a file): refusing to use it" >&2; exit 3; fi',
            f"mkdir -p -m 0700 {s}",
            f'if [ "$(stat -c %u {s})" != 0 ]; then '
            f'echo "mcfleet-node: {store} is not owned by root: refusing to use it" >&2; exit 3; fi',
            f"chmod 0700 {s}",
            f"umask 077; cat > {h}.tmp && mv -f {h}.tmp {h}",
        ]
    )


# Set on a connection whose store is ready: root's 0700 store and its helper stay as installed while the
# connection lives (no other account can write there, and the node lock keeps other applies out), so
# the apply's later steps (the HAProxy map file, a certificate's key) need not send the helper again.
STORE_READY = "_mcfleet_store_ready"


async def ensure_store(node: Node) -> None:
    """Make root's store and install the node helper: once per connection."""
    if getattr(node, STORE_READY, False):
        return
    store = store_of(node)
    res = await node.run(store_script(store), input=helper_source(), timeout=60)
    res.check(f"preparing {store}", node.name)
    setattr(node, STORE_READY, True)


def helper(*args: str) -> list[str]:
    """The argv that runs the installed root helper (see node_helper.py) on the node."""
    return ["python3", HELPER, *args]


async def put_file(
    node: Node,
    dest: str,
    *,
    source: str | None = None,
    text: str | None = None,
    mode: str = "0644",
    owner: str = "0:0",
    sha: str | None = None,
    record: str | None = None,
) -> str:
    """Copy node file `source` (or `text`, sent on stdin, never in argv) to `dest` as root, never following
    a link; returns the sha256 written.  `record`: a file in root's store that gets dest's stat key and
    hash (node_helper.put)."""
    if (source is None) == (text is None):
        raise ValueError("put_file needs exactly one of source and text")
    args = ["put", dest, mode, owner, *(["--from", source] if source is not None else [])]
    if sha:
        args += ["--sha", sha]
    if record:
        args += ["--record", record]
    res = await node.run(helper(*args), input=text, timeout=300)
    if not res.ok:
        raise ApplyError(_helper_error(res), location=node.name)
    return res.stdout.strip().partition("sha256=")[2]


def _helper_error(res: RunResult) -> str:
    text = (res.stderr.strip() or res.stdout.strip() or f"exit {res.exit_status}")[-400:]
    return text.removeprefix("mcfleet-node: ")


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


async def write_manifest(node: Node, manifest: Manifest) -> None:
    """The manifest, stamped with when and by whom, into root's store (the agent's account cannot rewrite it)."""
    stamped = manifest.model_copy(
        update={
            "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "applied_by": f"{getpass.getuser()}@{socket.gethostname()}",
        }
    )
    await write_text(node, manifest_path(store_of(node)), stamped.to_text(), mode="0600")


async def write_text(node: Node, path: str, text: str, mode: str = "0644", owner: str | None = None) -> None:
    """Replace a remote file atomically with `text` (one round trip)."""
    res = await node.run(write_text_script(path, mode, owner), input=text)
    res.check(f"writing {path}", node.name)


async def make_staging(node: Node) -> str:
    """A fresh private folder (0700) of the SSH login user in its home, for uploads.

    Uploads go there as the login user, never into a folder the agent's account can
    write; a root step then copies the file out, checking its hash.
    """
    # a killed run's upload folders go first (the node lock keeps a second orchestrator out)
    script = 'umask 077; rm -rf "${HOME:-/tmp}"/.mcfleet-upload.*; mktemp -d "${HOME:-/tmp}/.mcfleet-upload.XXXXXXXX"'
    res = await node.run(script, login=True, timeout=60)
    user = getattr(node, "user", None) or "the login user"
    res.check(f"creating a private upload folder in the home of {user}", node.name)
    return res.stdout.strip()


async def drop_staging(node: Node, staging: str) -> None:
    if staging.rpartition("/")[2].startswith(".mcfleet-upload."):
        await node.run(["rm", "-rf", "--", staging], login=True, timeout=60)


async def upload(node: Node, local: Path, remote: str, *, progress: Callable[[int, int], None] | None = None) -> int:
    """Copy a local file to `remote` as the login user (SFTP on SSH connections); returns the bytes sent.

    `progress(done, total)` is called with 0 first, as the bytes go, and with total at the end.
    A failure says why: permission (with the path and the user) or no space left (with
    the mount and the free bytes), not SFTP's bare "Failure".
    """
    size = (await asyncio.to_thread(local.stat)).st_size
    sftp_factory: Any = getattr(node, "sftp", None)
    tell = progress or (lambda done, total: None)
    tell(0, size)
    try:
        if sftp_factory is not None:
            sftp = await sftp_factory()

            def handler(_src: bytes, _dst: bytes, done: int, total: int) -> None:
                if 0 < done < size:  # 0 and the end are told here, exactly once each
                    tell(done, size)

            await sftp.put(str(local), remote, progress_handler=handler)
        else:
            await asyncio.to_thread(shutil.copyfile, local, remote)
    except Exception as exc:  # asyncssh.SFTPError is not an OSError
        raise ApplyError(await _upload_failure(node, remote, size, exc), location=node.name) from exc
    tell(size, size)
    return size


async def _upload_failure(node: Node, remote: str, size: int, exc: BaseException) -> str:
    text = str(getattr(exc, "reason", "") or exc)
    user = getattr(node, "user", None) or "the login user"
    if "ermission denied" in text or isinstance(exc, PermissionError):
        return f"permission denied writing {remote} as {user}"
    folder = remote.rpartition("/")[0] or "/"
    res = await node.run(["df", "-Pk", folder], login=True, timeout=30)
    rows = res.stdout.split("\n")[1:] if res.ok else []
    fields = rows[0].split() if rows else []
    if len(fields) >= 6 and fields[3].isdecimal():
        free = int(fields[3]) * 1024
        if free < size:
            return f"no space left on {fields[5]} ({free} bytes free, {size} needed) uploading {remote} as {user}"
    return f"uploading {remote} as {user} failed: {text}"
