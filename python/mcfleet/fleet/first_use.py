"""The host key a host with `ssh.trust_on_first_use` showed the first time, checked strictly from then on.

Trust on first use means: the first connection takes the key the node presents (nothing to check it
against yet), and every later one must see that same key, as OpenSSH's `StrictHostKeyChecking
accept-new` does.  mcfleet keeps the key per host in the fleet's local state,
`<fleet>/.mcfleet/first-use/<host>.pub` (one OpenSSH public key line, written atomically after the
first login succeeded).  Deleting that file (after verifying the node's new key out of band) lets
the next connection take a new key; pinning `ssh.host_key` in host.json is the better end state.
"""

from __future__ import annotations

from pathlib import Path

from mcfleet.fleet.load import HostEntry
from mcfleet.util.files import atomic_write_text
from mcfleet.util.statedir import STATE_DIR, state_dir

FOLDER = "first-use"


def trusts_first_use(entry: HostEntry) -> bool:
    """A host whose key is taken the first time and checked against that one afterwards: it asks for trust
    on first use and names neither a pinned key nor a known_hosts file."""
    ssh = entry.host.ssh
    return ssh.trust_on_first_use and not ssh.host_key and not ssh.known_hosts


def key_file(entry: HostEntry) -> Path:
    """Where the host's first key is kept: the fleet folder is two levels above hosts/<name>/."""
    return entry.dir.parent.parent / STATE_DIR / FOLDER / f"{entry.host.name}.pub"


def recorded_key(entry: HostEntry) -> str | None:
    """The key line recorded at the first connection, or None before it."""
    try:
        text = key_file(entry).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def record_key(entry: HostEntry, key_line: str) -> Path:
    """Keep `key_line` (the key the first connection saw) as the host's; returns the file."""
    path = key_file(entry)
    folder = state_dir(entry.dir.parent.parent) / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    atomic_write_text(path, key_line.strip() + "\n", mode=0o644)
    return path
