"""Building a new rootfs flavour removes the older ones of that arch (~600 MB each), never one in use."""

from __future__ import annotations

from pathlib import Path

from mcfleet.lab import rootfs

MOUNTINFO = (
    "36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
    "250 29 0:61 / /var/tmp/lab/.lab/nodes/full1/merged rw,relatime shared:141 - overlay mcfleet-node "
    "rw,lowerdir=/var/cache/mcfleet/node-rootfs-amd64-aaaa,upperdir=/x/upper,workdir=/x/work,uuid=on\n"
    "251 29 0:62 / /merged2 rw - overlay none rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w\n"
)


def test_overlay_lower_folders_are_read_from_mountinfo() -> None:
    assert rootfs.overlay_lowers(MOUNTINFO) == {"/var/cache/mcfleet/node-rootfs-amd64-aaaa", "/l1", "/l2"}


def _flavour(cache: Path, name: str) -> None:
    (cache / name).mkdir()
    (cache / name / ".mcfleet-complete").write_text("ok\n")
    (cache / f"{name}.tar.zst").write_bytes(b"tar")


def test_stale_flavours_of_the_arch_go_and_the_rest_stay(tmp_path: Path) -> None:
    for name in ("node-rootfs-amd64-new", "node-rootfs-amd64-old1", "node-rootfs-amd64-used", "node-rootfs-arm64-x"):
        _flavour(tmp_path, name)
    used = {str(tmp_path / "node-rootfs-amd64-used")}
    removed = rootfs.prune_stale(tmp_path, "amd64", keep="node-rootfs-amd64-new", in_use=lambda: used)
    assert sorted(p.name for p in removed) == ["node-rootfs-amd64-old1", "node-rootfs-amd64-old1.tar.zst"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        "node-rootfs-amd64-new", "node-rootfs-amd64-new.tar.zst",
        "node-rootfs-amd64-used", "node-rootfs-amd64-used.tar.zst",  # a running node's lower layer
        "node-rootfs-arm64-x", "node-rootfs-arm64-x.tar.zst",  # another arch
    ]  # fmt: skip
    asked: list[bool] = []
    assert (
        rootfs.prune_stale(tmp_path, "arm64", keep="node-rootfs-arm64-x", in_use=lambda: asked.append(True) or set())
        == []
    )
    assert not asked  # nothing stale: /proc is not read
