"""The lab's state file: every PID, namespace, bridge, mount and iptables chain it made.

Written atomically after *each* resource is created (not at the end), so `mcfleet lab down`
can undo a half-finished `lab up` that crashed.  `down` undoes resources in reverse order
of creation: processes die before their mounts are unmounted and their netns is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcfleet.errors import LabError
from mcfleet.util.files import atomic_write_text

Kind = Literal["process", "netns", "bridge", "mount", "iptables", "binfmt", "dir", "cgroup"]


@dataclass
class Resource:
    kind: Kind
    name: str  # netns/bridge name, mount point, "<table>/<chain>", or a label for a process
    pid: int | None = None
    started: int | None = None  # /proc/<pid>/stat start time: guards against PID reuse
    log: str | None = None


@dataclass
class LabState:
    path: Path
    resources: list[Resource] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # nodes, peers, network: for `status`

    def add(self, resource: Resource) -> Resource:
        self.resources.append(resource)
        self.save()
        return resource

    def drop(self, resource: Resource) -> None:
        self.resources = [r for r in self.resources if r is not resource]
        self.save()

    def save(self) -> None:
        data = {"version": 1, "resources": [asdict(r) for r in self.resources], "info": self.info}
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n", mode=0o600)

    @classmethod
    def load(cls, path: Path) -> LabState:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            resources = [Resource(**r) for r in data.get("resources", [])]
        except (ValueError, TypeError) as exc:
            raise LabError(
                f"the lab state file is unreadable: {exc}",
                location=str(path),
                hint="remove what it lists by hand (ip netns, ip link, umount), then delete the file",
            ) from None
        return cls(path, resources, data.get("info", {}))


class DirLock:
    """An exclusive flock on <dir>/.lab/lock for the duration of `up`/`down`.

    It waits up to `wait` seconds for the lock before refusing.  A lock can outlive the command
    that took it by a moment: a helper forked by a killed `lab up` shares the lock's open file
    until it has exec'd (the descriptor is close-on-exec), and a killed process blocked in a
    namespace or mount call closes its files only when that call returns.  `down` right after a
    crash would otherwise be refused for nothing.
    """

    def __init__(self, path: Path, *, wait: float = 10.0) -> None:
        self.path = path
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> DirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LabError(
                        f"another `mcfleet lab` command is working on this directory (waited {self.wait:g} s)",
                        location=str(self.path.parent.parent),
                        hint=f"wait for it to finish, or use another --dir; its PID is in {self.path}",
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
