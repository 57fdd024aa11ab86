"""What the node is, as the agent sees it: Info and the static part of Facts.

Read straight from the kernel and /etc (no subprocesses): `uname`, /etc/os-release, the
boot id, and the pinned users through the passwd/group databases (what `getent` shows)
plus /etc/subuid and /etc/subgid, so a UID that drifted from its pin is visible (rootless
podman's storage belongs to the old UID).
"""

from __future__ import annotations

import hashlib
import os
import platform
import pwd
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mcfleet import __version__


@dataclass(frozen=True)
class UserSeen:
    name: str
    exists: bool
    uid: int = 0
    gid: int = 0
    home: str = ""
    shell: str = ""
    subuid: str = ""
    subgid: str = ""


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def os_release(root: str = "/") -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (
        _read(os.path.join(root, "etc/os-release")) or _read(os.path.join(root, "usr/lib/os-release"))
    ).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _subid(path: str, user: UserSeen) -> str:
    for line in _read(path).splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user.name, str(user.uid)):
            return f"{parts[1]}:{parts[2]}"
    return ""


def user_seen(name: str) -> UserSeen:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return UserSeen(name=name, exists=False)
    seen = UserSeen(name, True, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)
    return UserSeen(**{**asdict(seen), "subuid": _subid("/etc/subuid", seen), "subgid": _subid("/etc/subgid", seen)})


def bundle_sha256() -> str:
    """sha256 of the PEX this agent runs from (pex sets $PEX), or '' when run from source."""
    path = os.environ.get("PEX", "")
    if not path or not os.path.isfile(path):
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def process_age() -> float:
    """Seconds since this process started (the kernel's start time: a PEX's bootstrap, which
    execs the venv's python in the same process, counts), or 0.0 when /proc cannot tell."""
    try:
        # /proc/self/stat: field 22 is the start time in clock ticks since boot; the command
        # name before it (in parentheses) may hold spaces, so the fields are counted after ')'
        ticks = int(_read("/proc/self/stat").rpartition(")")[2].split()[19])
        uptime = float(_read("/proc/uptime").split()[0])
    except (IndexError, ValueError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def node_info(users: list[str]) -> dict[str, Any]:
    release = os_release()
    uname = platform.uname()
    return {
        "version": __version__,
        "arch": uname.machine,
        "os_id": release.get("ID", ""),
        "os_version": release.get("VERSION_ID", ""),
        "os_pretty": release.get("PRETTY_NAME", ""),
        "kernel": uname.release,
        "hostname": uname.node,
        "boot_id": _read("/proc/sys/kernel/random/boot_id").strip(),
        "users": [asdict(user_seen(name)) for name in users],
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
