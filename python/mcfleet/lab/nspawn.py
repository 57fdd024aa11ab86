"""Full nodes: Debian booted with real systemd under systemd-nspawn in the node's netns.

PID 1 of this machine is not systemd and there is no machined/dbus on the host, so nspawn
runs with `--register=no --keep-unit`, each node in a cgroup of its own (lab/cgroups.py).
Each node is an overlay on the shared cached rootfs; its own files (hostname, host key,
root's authorized_keys) go into the overlay's upper dir.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from mcfleet.errors import LabError
from mcfleet.lab import cgroups
from mcfleet.lab.login import etc_hosts
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.proc import log_tail, read_text, run, spawn, start_time, which
from mcfleet.lab.sshd import wait_port
from mcfleet.lab.state import LabState, Resource

SSHD_DROPIN = """\
# written by mcfleet lab: one host key (the pinned one), keys only
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
"""


def _put(upper: Path, rel: str, data: bytes, mode: int = 0o644) -> None:
    target = upper / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    os.chmod(target, mode)


# Rootless podman publishes ports through slirp4netns, which opens /dev/net/tun as the container
# user.  The machine's own /dev/net/tun is 0600 and a bind of it stays 0600, so nspawn binds it
# (and allows the device), then this unit replaces it early in boot with the node's own 0666 node.
# umount is repeated until nothing is mounted there (rm of a path still mounted fails), and the
# unit fails, visibly in the node's journal, unless the node ends up with a 0666 device.
TUN_UNIT = """\
# written by mcfleet lab: a /dev/net/tun that rootless podman (slirp4netns) can open
[Unit]
Description=mcfleet lab: /dev/net/tun usable by every user
DefaultDependencies=no
Before=sysinit.target
ConditionPathExists=/dev/net/tun

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'while umount /dev/net/tun 2>/dev/null; do :; done; rm -f /dev/net/tun && \\
  mknod -m 666 /dev/net/tun c 10 200 && test "$$(stat -c %%a /dev/net/tun)" = 666'

[Install]
WantedBy=sysinit.target
"""
TUN_UNIT_NAME = "mcfleet-lab-tun.service"
# Inside nspawn, keyctl is filtered by its seccomp policy and /proc/sys is read-only: crun's
# session keyring and podman's default sysctl (net.ipv4.ping_group_range) would fail every
# container start ("create keyring: Operation not permitted", "ping_group_range: Read-only").
CONTAINERS_CONF = """\
# written by mcfleet lab: what a container under systemd-nspawn cannot have
[containers]
keyring = false
default_sysctls = []
"""


def _tun_args() -> list[str]:
    """nspawn flags that hand the node /dev/net/tun (rootless podman's port publishing; TUN_UNIT)."""
    if not os.path.exists("/dev/net/tun"):
        return []
    return ["--bind=/dev/net/tun", "--property=DeviceAllow=/dev/net/tun rwm"]


def prepare_upper(node_dir: Path, name: str, client_pub: str) -> Path:
    upper = node_dir / "upper"
    # A new node starts from the base rootfs: what an earlier lab of this directory left in its
    # upper layer (users, agent, containers) must not come back.
    for layer in (upper, node_dir / "work"):
        shutil.rmtree(layer, ignore_errors=True)
    (node_dir / "work").mkdir(parents=True, exist_ok=True)
    (node_dir / "merged").mkdir(parents=True, exist_ok=True)
    _put(upper, "etc/hostname", f"{name}\n".encode())
    _put(upper, "etc/hosts", etc_hosts(name).encode())
    # The node's own resolv.conf (the machine's at first, what mcfleet writes later), kept across the
    # node's reboots as a statically addressed server keeps it: nspawn's default (--resolv-conf=auto)
    # copies the machine's over it at every boot, undoing the fleet's resolvers.
    _put(upper, "etc/resolv.conf", Path("/etc/resolv.conf").read_bytes())
    _put(upper, "etc/ssh/sshd_config.d/mcfleet.conf", SSHD_DROPIN.encode())
    key = node_dir / "ssh_host_ed25519_key"
    _put(upper, "etc/ssh/ssh_host_ed25519_key", key.read_bytes(), 0o600)
    _put(upper, "etc/ssh/ssh_host_ed25519_key.pub", key.with_name(key.name + ".pub").read_bytes())
    (upper / "root").mkdir(parents=True, exist_ok=True)
    os.chmod(upper / "root", 0o700)
    _put(upper, "root/.ssh/authorized_keys", client_pub.encode(), 0o600)
    os.chmod(upper / "root/.ssh", 0o700)
    _put(upper, "etc/containers/containers.conf.d/mcfleet-lab.conf", CONTAINERS_CONF.encode())
    _put(upper, f"etc/systemd/system/{TUN_UNIT_NAME}", TUN_UNIT.encode())
    wants = upper / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / TUN_UNIT_NAME
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{TUN_UNIT_NAME}")
    return upper


# systemd-nspawn exits with 133 when the container reboots (`systemctl reboot` inside): the
# node's runner starts it again on the same overlay and network namespace, as systemd's own
# systemd-nspawn@.service does (RestartForceExitStatus=133), so a full node can be rebooted.
# SIGTERM to the runner is passed to nspawn (which powers the container off) and waited for,
# so `down` stopping the runner still returns once the node is gone.
REBOOT_EXIT = 133
RUNNER = (
    'trap \'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143\' TERM INT; '
    f'while :; do "$@" & child=$!; wait "$child"; rc=$?; [ "$rc" -eq {REBOOT_EXIT} ] || exit "$rc"; done'
)


def _children(pid: int) -> list[int]:
    return [int(p) for p in (read_text(f"/proc/{pid}/task/{pid}/children") or "").split()]


def _comm(pid: int) -> str:
    return (read_text(f"/proc/{pid}/comm") or "").strip()


def container_init(runner_pid: int) -> int | None:
    """The node's PID 1 (systemd) now: the child of the runner's systemd-nspawn (a new one after each
    reboot); None while it boots or is down."""
    for nspawn in _children(runner_pid):
        if _comm(nspawn) == "systemd-nspawn":
            for child in _children(nspawn):
                if _comm(child) == "systemd":
                    return child
    return None


async def _container_init(runner_pid: int, limit_s: float = 20) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        init = container_init(runner_pid)
        if init is not None:
            return init
        if start_time(runner_pid) is None:
            break
        await asyncio.sleep(0.05)
    raise LabError("systemd did not start inside the full node", hint="see the node's nspawn.log")


async def boot(
    state: LabState,
    *,
    name: str,
    index: int,
    base: Path,
    node_dir: Path,
    netns: str,
    address: str,
    host_key: str,
    client_key: Path,
) -> LabNode:
    which("systemd-nspawn")
    client_pub = client_key.with_name(client_key.name + ".pub").read_text()
    upper = prepare_upper(node_dir, name, client_pub)
    merged = node_dir / "merged"
    options = f"lowerdir={base},upperdir={upper},workdir={node_dir / 'work'}"
    state.add(Resource("mount", str(merged)))  # first: a crash must not leak the mount
    await run(["mount", "-t", "overlay", "mcfleet-node", "-o", options, str(merged)])
    log = node_dir / "nspawn.log"
    argv = ["systemd-nspawn", "-q", "-D", str(merged), "-b", "-M", netns, f"--hostname={name}"]
    argv += ["--register=no", "--keep-unit", "--console=passive", f"--network-namespace-path=/run/netns/{netns}"]
    argv += ["--resolv-conf=off"]
    argv += _tun_args()
    cgroup_dirs = cgroups.node_dirs(netns)
    for d in cgroup_dirs:  # recorded first, and undone after the process (newest first)
        state.add(Resource("cgroup", str(d)))
    cgroups.create(cgroup_dirs)
    pid = spawn(cgroups.exec_in(cgroup_dirs, ["sh", "-c", RUNNER, "nspawn-runner", *argv]), log=log)
    state.add(Resource("process", f"{name}/nspawn", pid, start_time(pid), str(log)))
    try:
        await wait_port(address, 22, limit_s=60, what=f"sshd of full node {name}", pid=pid, log=log)
        init = await _container_init(pid)
    except LabError as exc:
        raise LabError(f"{exc.message}; nspawn said: {log_tail(log)}", location=str(log)) from None
    return LabNode(name, "full", index, address, 22, netns, host_key, str(node_dir), init, pid, None)
