"""A cgroup of its own for each full node's systemd-nspawn.

Without a systemd on the host (`--register=no --keep-unit`), nspawn puts the container in
`<its own cgroup>/payload`.  Every node started from the same process therefore shared one
`/payload` tree: each node's systemd created and removed `/payload/system.slice/<unit>` for
the same unit names as its neighbours, so a unit starting while another node removed that
cgroup failed with 219/CGROUP.  Seen as nodes booting together with a random failed unit: a
failed systemd-user-sessions.service keeps /run/nologin, and sshd then refuses every non-root
login ("Access denied ... by PAM account configuration") while the node looks up.

Moving nspawn into `<our cgroup>/mcfleet-lab-<netns>` before it starts gives each node its
own `.../payload`.  This is done in the hierarchies a systemd inside manages: the named
`name=systemd` one (legacy and hybrid hosts) and the unified cgroup2 one (hybrid and unified).
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

from mcfleet.errors import LabError

PREFIX = "mcfleet-lab-"


def _hierarchies(mountinfo: str) -> list[tuple[Path, str]]:
    """(mount point, key in /proc/self/cgroup) of the systemd-managed cgroup hierarchies."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype, _, options = line.split(" - ", 1)[1].partition(" ")
        if fstype == "cgroup2":
            found.append((Path(fields[4]), ""))
        elif fstype == "cgroup" and "name=systemd" in options.split()[-1].split(","):
            found.append((Path(fields[4]), "name=systemd"))
    return found


def _own_path(proc_cgroup: str, key: str) -> str:
    """Our path in one hierarchy: the `ID:<key>:/path` line of /proc/self/cgroup."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == key:
            return path
    return "/"


def node_dirs(netns: str, *, mountinfo: str | None = None, proc_cgroup: str | None = None) -> list[Path]:
    """The node's cgroup folder in each hierarchy (nothing on a host without cgroups)."""
    mountinfo = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    proc_cgroup = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
    return [
        mount / _own_path(proc_cgroup, key).lstrip("/") / f"{PREFIX}{netns}" for mount, key in _hierarchies(mountinfo)
    ]


def create(dirs: list[Path]) -> None:
    for d in dirs:
        try:
            d.mkdir(exist_ok=True)
        except OSError as exc:
            raise LabError(
                f"cannot create the node's cgroup {d}: {exc.strerror}",
                hint="full nodes need root and a writable cgroup hierarchy",
            ) from None


def exec_in(dirs: list[Path], argv: list[str]) -> list[str]:
    """`argv` run by a shell that first moves itself into each of `dirs` (exec keeps the PID)."""
    moves = "".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))} && " for d in dirs)
    return ["sh", "-c", f'{moves}exec "$@"', "sh", *argv]


def remove(d: Path) -> None:
    """Remove a node's cgroup folder, innermost first (cgroup folders go with rmdir, once empty)."""
    if not d.name.startswith(PREFIX) or not d.is_dir():
        return
    for parent, subdirs, _ in os.walk(d, topdown=False):
        for sub in subdirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, sub))
    with contextlib.suppress(OSError):
        os.rmdir(d)
