"""The arm64 node: an aarch64 Debian rootfs run through qemu-user (binfmt), chroot sshd.

systemd does not run here (no nspawn under emulation), so the node is like a fast node whose
root is an aarch64 Debian: its own netns, mount/UTS/PID namespaces, an overlay on the cached
arm64 rootfs (mounted inside the node's private mount namespace, so nothing shows on the
host), and the rootfs's own sshd started in a chroot.  `uname -m` over SSH says aarch64.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mcfleet.errors import LabError
from mcfleet.lab import netns, rootfs
from mcfleet.lab.keys import make_key
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.proc import exists, read_text, run, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource

if TYPE_CHECKING:
    from mcfleet.lab.lab import Lab

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
BINFMT = f"{BINFMT_DIR}/qemu-aarch64"
PACKAGES = "python3,openssh-server,iproute2"

SSHD_CONFIG = """\
Port 22
ListenAddress {address}
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile /root/.ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
AcceptEnv MCFLEET_*
"""

# Runs in the node's netns with fresh mount/UTS/PID namespaces; ends as the chrooted sshd.
LAUNCH = """\
set -e
hostname "$1"
R="$2/merged"
mount -t overlay mcfleet-arm64 -o lowerdir="$3",upperdir="$2/upper",workdir="$2/work" "$R"
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs -o size=16m mcfleet-run "$R/run"
mkdir -p "$R/run/sshd"
exec chroot "$R" /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config.mcfleet
"""


def unavailable_reason() -> str | None:
    """Why an arm64 node cannot run here, or None if binfmt qemu-aarch64 is enabled."""
    text = read_text(BINFMT)
    if text is None:
        return (
            "binfmt qemu-aarch64 is not registered (apt-get install qemu-user-static binfmt-support; "
            "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)"
        )
    if not text.startswith("enabled"):
        return "binfmt qemu-aarch64 is registered but disabled (update-binfmts --enable qemu-aarch64)"
    return None


async def enable_binfmt(state: LabState) -> None:
    """Register qemu-aarch64 with binfmt_misc (undone by `lab down` if we did it)."""
    if unavailable_reason() is None:
        return
    which("qemu-aarch64-static")
    if not exists(f"{BINFMT_DIR}/register"):
        await run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
        state.add(Resource("mount", BINFMT_DIR))
    await run(["update-binfmts", "--enable", "qemu-aarch64"])
    state.add(Resource("binfmt", "qemu-aarch64"))
    reason = unavailable_reason()
    if reason:
        raise LabError(f"could not enable binfmt for arm64: {reason}")


def _prepare(node_dir: Path, address: str, client_pub: str) -> None:
    upper = node_dir / "upper"
    for sub in ("work", "merged", "upper/etc/ssh", "upper/root/.ssh"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    (upper / "etc/ssh/sshd_config.mcfleet").write_text(SSHD_CONFIG.format(address=address))
    key = node_dir / "ssh_host_ed25519_key"
    (upper / "etc/ssh/ssh_host_ed25519_key").write_bytes(key.read_bytes())
    os.chmod(upper / "etc/ssh/ssh_host_ed25519_key", 0o600)
    (upper / "root/.ssh/authorized_keys").write_text(client_pub)
    os.chmod(upper / "root/.ssh", 0o700)


async def add_arm64_node(lab: Lab, name: str = "arm1") -> LabNode:
    net = await lab.network()
    await enable_binfmt(lab.state)
    base = await rootfs.ensure_rootfs(lab.progress, arch="arm64", include=PACKAGES)
    index = lab.reserve_index()
    node_dir = lab.run_dir / "nodes" / name
    host_key = make_key(node_dir / "ssh_host_ed25519_key")
    ns, address = await netns.add_node_netns(lab.state, net, index)
    _prepare(node_dir, address, lab.client_key.with_name(lab.client_key.name + ".pub").read_text())
    log = node_dir / "sshd.log"
    argv = ["nsenter", f"--net=/run/netns/{ns}", which("unshare"), "--mount", "--uts", "--pid", "--fork"]
    argv += ["--kill-child", "--propagation", "private", "sh", "-c", LAUNCH, "arm64", name, str(node_dir), str(base)]
    pid = spawn(argv, log=log)
    lab.state.add(Resource("process", f"{name}/unshare", pid, start_time(pid), str(log)))
    await wait_port(address, 22, limit_s=60, what=f"sshd of arm64 node {name}", pid=pid, log=log)
    children = (read_text(f"/proc/{pid}/task/{pid}/children") or "").split()
    if not children:
        raise LabError(f"arm64 node {name}: sshd is not running", location=str(log))
    # unshare --fork ignores SIGTERM while it waits: `down` stops sshd (PID 1 of the node's
    # PID namespace) first, which ends the namespace and lets unshare exit.
    sshd_pid = int(children[0])
    lab.state.add(Resource("process", f"{name}/sshd", sshd_pid, start_time(sshd_pid), str(log)))
    node = LabNode(name, "arm64", index, address, 22, ns, host_key, str(node_dir), int(children[0]), pid,
                   int(children[0]), arch="arm64")  # fmt: skip
    lab.record_node(node)
    lab.progress(f"node {name}: arm64 (qemu-user), {address}, sshd pid {node.sshd_pid}")
    return node
