"""What the lab knows about a node, as plain data (saved in the state file, used by fixtures)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

NodeKind = Literal["fast", "full", "arm64"]


@dataclass(frozen=True)
class LabNode:
    name: str
    kind: NodeKind
    index: int
    address: str
    ssh_port: int
    netns: str
    host_key: str  # 'ssh-ed25519 AAAA…' as pinned in host.json
    dir: str  # the node's runtime folder (keys, sshd_config, overlay dirs, logs)
    # a process inside the node's namespaces: holder (fast/arm64) or container init (full: the one it
    # booted with; `live_pid` follows reboots)
    ns_pid: int
    main_pid: int  # what `down` stops: holder (fast/arm64) or the runner of systemd-nspawn (full)
    sshd_pid: int | None  # fast/arm64: our sshd; full: None (sshd is a unit inside)
    arch: Literal["amd64", "arm64"] = "amd64"
    podman: bool = False
    login: str = "root"  # root, sudo or doas (lab/login.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabNode:
        return cls(**data)

    def live_pid(self) -> int:
        """A process inside the node's namespaces now: a full node's init changes when it reboots."""
        if self.kind == "full":
            from mcfleet.lab.nspawn import container_init

            return container_init(self.main_pid) or self.ns_pid
        return self.ns_pid

    def nsenter(self) -> list[str]:
        """argv prefix that runs a command inside the node (mount, UTS, network namespaces)."""
        flags = ["-m", "-u", "-n"]
        if self.kind == "full":
            flags += ["-p", "-i"]
        elif self.kind == "arm64":
            flags += ["-p", "-r", "-w"]  # enter the chroot of the node's sshd
        return ["nsenter", "-t", str(self.live_pid()), *flags, "--"]
