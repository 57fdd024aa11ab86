"""Fast nodes: a netns, a private mount+UTS namespace and an sshd of their own.

A *holder* process (`sleep infinity`) owns the node's mount and UTS namespaces: own hostname,
tmpfs /srv, /root and /var/lib/mcfleet, copy-on-write /etc (overlay, so useradd and /etc/mcfleet land in the
node's upper dir).  sshd is started into those namespaces with nsenter, so it can be stopped
and started again (tests of unreachable hosts) without losing the node's files.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from mcfleet.errors import LabError
from mcfleet.lab.proc import log_tail, read_text, spawn, start_time, which
from mcfleet.lab.state import LabState, Resource

SSHD_CONFIG = """\
Port {port}
ListenAddress {address}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys} .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
AcceptEnv MCFLEET_*
MaxStartups 100:30:200
MaxSessions 50
"""

# Runs inside `ip netns exec <ns> unshare --mount --uts`; ends as the holder (`sleep infinity`).
HOLDER_SCRIPT = """\
set -e
hostname "$1"
mount -t tmpfs -o size=256m,mode=0755 mcfleet-srv /srv
mount -t overlay mcfleet-etc -o lowerdir=/etc,upperdir="$2/etc-upper",workdir="$2/etc-work" /etc
mount -t tmpfs -o size=64m,mode=0700 mcfleet-root /root
# apply's root store (/var/lib/mcfleet): per node, not the real host's
mkdir -p -m 0700 /var/lib/mcfleet
mount -t tmpfs -o size=64m,mode=0700 mcfleet-store /var/lib/mcfleet
cp -a /etc/skel/. /root/
mkdir -m 0700 /root/.ssh
# podman's CNI IPAM state: per node, not on the real host
if [ -d /var/lib/cni ]; then mount -t tmpfs -o size=16m mcfleet-cni /var/lib/cni; fi
exec sleep infinity
"""


def write_config(node_dir: Path, address: str, port: int) -> Path:
    config = node_dir / "sshd_config"
    config.write_text(
        SSHD_CONFIG.format(
            port=port,
            address=address,
            host_key=node_dir / "ssh_host_ed25519_key",
            authorized_keys=node_dir / "authorized_keys",
        )
    )
    return config


def prepare_etc(node_dir: Path, hostname: str, extra: dict[str, str]) -> None:
    """The node's /etc upper dir: its hostname plus any extra files (e.g. containers.conf)."""
    upper = node_dir / "etc-upper"
    (node_dir / "etc-work").mkdir(parents=True, exist_ok=True)
    upper.mkdir(parents=True, exist_ok=True)
    (upper / "hostname").write_text(hostname + "\n")
    for rel, text in extra.items():
        target = upper / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


async def start_holder(state: LabState, netns: str, hostname: str, node_dir: Path) -> Resource:
    log = node_dir / "holder.log"
    # nsenter --net, not `ip netns exec`: the latter mounts a fresh /sys, hiding the cgroup
    # mounts that podman/runc inside the node need.
    argv = ["nsenter", f"--net=/run/netns/{netns}", which("unshare"), "--mount", "--uts", "--propagation", "private"]
    argv += ["sh", "-c", HOLDER_SCRIPT, "holder", hostname, str(node_dir)]
    pid = spawn(argv, log=log)
    res = state.add(Resource("process", f"{hostname}/holder", pid, start_time(pid), str(log)))
    # Ready once the script has exec'd into `sleep` (every mount done).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        comm = (read_text(f"/proc/{pid}/comm") or "").strip()
        if comm == "sleep":
            res.started = start_time(pid)
            state.save()
            return res
        if start_time(pid) is None:
            break
        await asyncio.sleep(0.01)
    raise LabError(f"node {hostname}: its namespaces could not be set up: {log_tail(log)}", location=str(log))


async def start_sshd(state: LabState, name: str, *, holder_pid: int, node_dir: Path, address: str, port: int) -> int:
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd refuses to start without its privilege separation dir
    log = node_dir / "sshd.log"
    argv = ["nsenter", "-t", str(holder_pid), "-m", "-u", "-n", which("sshd"), "-D", "-e", "-f"]
    pid = spawn([*argv, str(node_dir / "sshd_config")], log=log)
    state.add(Resource("process", f"{name}/sshd", pid, start_time(pid), str(log)))
    await wait_port(address, port, limit_s=10, what=f"sshd of {name}", pid=pid, log=log)
    return pid


async def wait_port(
    host: str, port: int, *, limit_s: float, what: str, pid: int | None = None, log: Path | None = None
) -> None:
    """Poll until a TCP port accepts; fail early if the daemon died."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            pass
        if pid is not None and start_time(pid) is None:
            raise LabError(f"{what} exited at start: {log_tail(log) if log else ''}", location=str(log or ""))
        if time.monotonic() > deadline:
            raise LabError(f"{what} is not listening on {host}:{port} after {limit_s:.0f} s", location=str(log or ""))
        await asyncio.sleep(0.02)


async def wait_unix(path: Path, *, limit_s: float, what: str, pid: int | None = None, log: Path | None = None) -> None:
    """Poll until a unix socket accepts."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            _, writer = await asyncio.open_unix_connection(str(path))
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            pass
        if pid is not None and start_time(pid) is None:
            raise LabError(f"{what} exited at start: {log_tail(log) if log else ''}", location=str(log or ""))
        if time.monotonic() > deadline:
            raise LabError(f"{what} is not listening on {path} after {limit_s:.0f} s", location=str(log or ""))
        await asyncio.sleep(0.02)
