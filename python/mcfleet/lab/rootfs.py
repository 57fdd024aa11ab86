"""The full nodes' Debian root filesystem: built once with debootstrap, cached as a tarball.

Cold: `debootstrap --variant=minbase --include=systemd,… bookworm`, then apt in a chroot for
the extras (both need the Debian mirror; ~3 min), then `tar --zstd` into
/var/cache/mcfleet/node-rootfs-<arch>-<hash of the package lists>.tar.zst.  Warm: the tarball
is unpacked once into the folder of the same name, which every full node uses as the
read-only lower layer of its own overlay.  A flock serialises concurrent builders (two
pytest workers), and a stamp file marks a complete unpack, so a crash never leaves a
half-built base in use.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from mcfleet.errors import LabError
from mcfleet.lab.proc import run, which

CACHE = Path(os.environ.get("MCFLEET_LAB_CACHE", "/var/cache/mcfleet"))
SUITE = "bookworm"
# What debootstrap installs: systemd and sshd.
PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,iproute2"
# Then apt inside the new root adds what a full node may need: rootless podman as mcp (podman,
# uidmap, catatonit, slirp4netns, fuse-overlayfs, dbus-user-session), sudo and doas for
# non-root logins, nix-bin for NixOS deploy mechanics, zstd for service snapshots, curl for
# health checks, systemd-resolved (installed but disabled) for the nodes that test resolver failover,
# isc-dhcp-client (Debian 12's DHCP client) and dhcpcd-base (Debian 13's; neither runs at boot
# here) for the lease tests, network-manager (disabled too) for the one that rewrites resolv.conf
# when it starts.
# debootstrap alone fails configuring this set (its dependency resolution is
# minimal), apt does not.  A node in the lab's private network cannot reach apt itself, so
# everything it may need is baked in here.
EXTRA_PACKAGES = (
    "podman uidmap catatonit slirp4netns fuse-overlayfs dbus-user-session "
    "sudo opendoas nix-bin zstd curl ca-certificates systemd-resolved isc-dhcp-client dhcpcd-base "
    "network-manager"
)
MIRROR = os.environ.get("MCFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _flavour(arch: str, include: str) -> str:
    """The cache name of one (arch, package list): a changed list builds a new rootfs."""
    extra = EXTRA_PACKAGES if include == PACKAGES else ""
    digest = hashlib.sha256(f"{include}|{extra}".encode()).hexdigest()[:10]
    return f"node-rootfs-{arch}-{digest}"


def tarball_path(cache: Path = CACHE, arch: str = "amd64", include: str = PACKAGES) -> Path:
    return cache / f"{_flavour(arch, include)}.tar.zst"


async def _debootstrap(target: Path, progress: Callable[[str], None], arch: str, include: str) -> None:
    argv = [which("debootstrap"), "--variant=minbase", f"--include={include}"]
    if arch != "amd64":
        argv.append(f"--arch={arch}")
    argv += [SUITE, str(target), MIRROR]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    tail: list[str] = []
    started = time.monotonic()
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-9:], line]
        # debootstrap prints "I: Retrieving …", "I: Extracting …", "I: Configuring …"
        if line.startswith("I: ") and any(
            w in line for w in ("Retriev", "Validat", "Extract", "Install", "Unpack", "Config")
        ):
            progress(f"debootstrap [{time.monotonic() - started:5.1f}s] {line[3:]}")
    if await proc.wait() != 0:
        raise LabError(
            f"debootstrap of the {arch} node rootfs failed: {' / '.join(tail[-3:])}",
            hint=f"it needs the Debian mirror ({MIRROR}); set MCFLEET_DEBIAN_MIRROR to use another",
        )


async def _apt_install(root: Path, progress: Callable[[str], None], packages: list[str]) -> None:
    """apt-get install inside the new root (chroot with /proc, /sys, /dev bound; no service started)."""
    progress(f"installing {len(packages)} more packages in the rootfs with apt")
    policy = root / "usr/sbin/policy-rc.d"  # exit 101: invoke-rc.d starts no service in the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    mounted: list[Path] = []
    try:
        for fs in ("proc", "sys", "dev"):
            await run(["mount", "--rbind", f"/{fs}", str(root / fs)])
            mounted.append(root / fs)
        env = ["env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"]
        await run(["chroot", str(root), *env, "apt-get", "update", "-q"], limit_s=600)
        await run(
            ["chroot", str(root), *env, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            limit_s=1200,
        )
        await run(["chroot", str(root), "apt-get", "clean"])
        if "network-manager" in packages:  # its postinst enables it: it would take the nodes' eth0 over
            units = [
                "NetworkManager.service",
                "NetworkManager-wait-online.service",
                "NetworkManager-dispatcher.service",
            ]
            await run(["chroot", str(root), "systemctl", "disable", *units])
        if "systemd-resolved" in packages:
            # Its postinst enables it and points /etc/resolv.conf at its stub: a node runs it only
            # when a test turns it on, so every other node keeps a plain resolv.conf.
            await run(["chroot", str(root), "systemctl", "disable", "systemd-resolved.service"])
            (root / "etc/resolv.conf").unlink(missing_ok=True)
            shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    finally:
        for m in reversed(mounted):
            await run(["umount", "-R", "-l", str(m)], check=False)
        policy.unlink(missing_ok=True)


async def ensure_tarball(
    progress: Callable[[str], None], *, cache: Path = CACHE, arch: str = "amd64", include: str = PACKAGES
) -> Path:
    """The cached rootfs tarball, built now if missing (debootstrap + tar --zstd)."""
    tarball = tarball_path(cache, arch, include)
    if tarball.exists():
        return tarball
    which("zstd")
    os.makedirs(cache, exist_ok=True)
    build = cache / f"build-{arch}-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    progress(f"building the {arch} node rootfs with debootstrap (once; cached as {tarball})")
    try:
        await _debootstrap(build, progress, arch, include)
        if include == PACKAGES:
            await _apt_install(build, progress, EXTRA_PACKAGES.split())
        # nspawn/sshd inside need no apt lists; keep the tarball small
        shutil.rmtree(build / "var/lib/apt/lists", ignore_errors=True)
        (build / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        progress("packing the rootfs (tar --zstd)")
        await run(["tar", "-C", str(build), "--zstd", "-cf", str(partial), "."], limit_s=600)
        os.replace(partial, tarball)
    finally:
        # never delete through a bind mount of the host's /proc, /sys or /dev left behind
        if not any((build / fs).is_mount() for fs in ("proc", "sys", "dev")):
            shutil.rmtree(build, ignore_errors=True)
    return tarball


async def ensure_rootfs(
    progress: Callable[[str], None], *, cache: Path = CACHE, arch: str = "amd64", include: str = PACKAGES
) -> Path:
    """The unpacked base rootfs (shared, read-only lower dir of every full node's overlay)."""
    os.makedirs(cache, exist_ok=True)
    if (cache / _flavour(arch, include) / ".mcfleet-complete").exists():
        # complete (the stamp is written last): no need to wait behind a builder of another flavour
        return cache / _flavour(arch, include)
    lock_fd = os.open(cache / f".rootfs-{arch}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # blocking flock in a thread: another worker may be building right now
        await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
        base = cache / _flavour(arch, include)
        stamp = base / ".mcfleet-complete"
        if stamp.exists():
            return base
        tarball = await ensure_tarball(progress, cache=cache, arch=arch, include=include)
        progress(f"unpacking {tarball.name}")
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        await run(["tar", "-C", str(base), "--zstd", "-xpf", str(tarball)], limit_s=600)
        stamp.write_text("ok\n")
        for gone in prune_stale(cache, arch, keep=base.name):
            progress(f"removed {gone.name}: an older rootfs of {arch} that no node uses")
        return base
    finally:
        os.close(lock_fd)  # closing releases the flock


def overlay_lowers(mountinfo: str) -> set[str]:
    """The lower folders of the overlay mounts in a /proc/PID/mountinfo text."""
    found: set[str] = set()
    for line in mountinfo.splitlines():
        for option in line.split()[-1].split(","):
            if option.startswith("lowerdir="):
                found.update(option.removeprefix("lowerdir=").split(":"))
    return found


def lowers_in_use() -> set[str]:
    """Every overlay lower folder mounted in any mount namespace: a full node's overlay is in the
    host's, but the arm64 node mounts its own inside a private namespace (`unshare --mount`)."""
    found: set[str] = set()
    seen: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            namespace = os.readlink(proc / "ns" / "mnt")
            if namespace in seen:
                continue
            seen.add(namespace)
            found |= overlay_lowers((proc / "mountinfo").read_text(errors="replace"))
        except OSError:  # the process ended meanwhile, or hides its namespace
            continue
    return found


def prune_stale(cache: Path, arch: str, *, keep: str, in_use: Callable[[], set[str]] = lowers_in_use) -> list[Path]:
    """Remove the other rootfs flavours of `arch` (their package lists changed since: ~600 MB each,
    folder and tarball), except a folder a running node still has as its overlay's lower layer.
    Each arch is built from one package list, so another flavour of it is never current."""
    stale = [p for p in sorted(cache.glob(f"node-rootfs-{arch}-*")) if p.name.removesuffix(".tar.zst") != keep]
    if not stale:
        return []
    used = in_use()
    removed = []
    for path in stale:
        folder = cache / path.name.removesuffix(".tar.zst")
        if str(folder) in used:
            continue  # its tarball goes with the folder, once no node uses it
        if path.is_dir():
            (path / ".mcfleet-complete").unlink(missing_ok=True)  # first: a half-removed folder is never used
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
