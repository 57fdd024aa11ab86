"""The arm64 node: an aarch64 Debian rootfs run through qemu-user (binfmt), chroot sshd (LAB.md 6)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mcfleet.errors import LabError

if TYPE_CHECKING:
    from mcfleet.lab.lab import Lab
    from mcfleet.lab.nodes import LabNode

BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def unavailable_reason() -> str | None:
    """Why an arm64 node cannot run here, or None if binfmt qemu-aarch64 is enabled."""
    try:
        text = BINFMT.read_text()
    except OSError:
        return (
            "binfmt qemu-aarch64 is not registered (apt-get install qemu-user-static binfmt-support; "
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)"
        )
    if not text.startswith("enabled"):
        return "binfmt qemu-aarch64 is registered but disabled (update-binfmts --enable qemu-aarch64)"
    return None


async def add_arm64_node(lab: Lab) -> LabNode:
    reason = unavailable_reason()
    if reason:
        raise LabError(f"no arm64 node: {reason}")
    raise LabError("the arm64 node is not implemented yet", hint="use fast or full nodes")
