"""A rootfs folder an overlay uses is found in use even when the overlay lives in a private mount
namespace, as the arm64 node's does (`unshare --mount`): pruning must never remove it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from mcfleet.lab import rootfs

pytestmark = [pytest.mark.lab]

# `exec sleep`: the namespace's one process, so killing it ends the namespace and its mount
MOUNT = (
    'mount -t overlay mcfleet-test -o lowerdir="$1",upperdir="$2/upper",workdir="$2/work" "$2/merged"'
    " && echo up && exec sleep 60"
)


def test_an_overlay_in_a_private_mount_namespace_is_in_use(tmp_path: Path) -> None:
    lower, scratch = tmp_path / "node-rootfs-amd64-old", tmp_path / "node"
    lower.mkdir()
    for sub in ("upper", "work", "merged"):
        (scratch / sub).mkdir(parents=True)
    assert str(lower) not in rootfs.lowers_in_use()
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT, "sh", str(lower), str(scratch)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "up\n"
        assert not (scratch / "merged").is_mount()  # invisible from this namespace's own mount table
        assert str(lower) in rootfs.lowers_in_use()
        kept = rootfs.prune_stale(tmp_path, "amd64", keep="node-rootfs-amd64-new")
        assert kept == [] and lower.is_dir()
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 10  # the namespace, and its mount, go with its last process
    while str(lower) in rootfs.lowers_in_use():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert rootfs.prune_stale(tmp_path, "amd64", keep="node-rootfs-amd64-new") == [lower]
