"""Podman on a fast node: the node's own storage and config, run in the node's namespaces.

The three workarounds for this kind of machine live in the node's /etc/containers (written
into its copy-on-write /etc, so `podman` run over SSH on the node picks them up too):
runc instead of crun (hybrid cgroups), cgroupfs, lowered ulimits (no CAP_SYS_RESOURCE), and
storage paths in storage.conf — never the CONTAINERS_STORAGE_CONF variable, which conmon's
cleanup process does not see (every `podman run --rm` then hangs 20 s).
"""

from __future__ import annotations

import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mcfleet.lab.proc import run, spawn, start_time, which
from mcfleet.lab.sshd import wait_unix
from mcfleet.lab.state import LabState, Resource

IMAGE = "localhost/mcfleet-bb:test"
BB_APPLETS = ("sh", "ls", "cat", "echo", "sleep", "httpd", "true", "env", "wget", "nc", "id", "hostname")


RUN_BASE = Path("/run/mcfleet-lab")
# podman as the agent's user mcp inside a lab systemd node (root's shell there): its rootless
# storage and its user bus, as the agent sees them
PODMAN_AS_MCP = (
    "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850 "
    "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/850/bus podman"
)


def short_run_dir(netns: str) -> Path:
    """Runroot and tmp_dir must have short paths: with a long runroot (e.g. under pytest's
    tmp dir) every `podman run --rm` hangs 20 s waiting for conmon."""
    return RUN_BASE / netns


def node_etc_files(node_dir: Path, run_dir: Path) -> dict[str, str]:
    """containers.conf and storage.conf for one node (relative to /etc)."""
    c = node_dir / "containers"
    containers_conf = f"""\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{run_dir}/tmp"

[network]
network_backend = "cni"
"""
    storage_conf = f"""\
[storage]
driver = "overlay"
graphroot = "{c}/storage"
runroot = "{run_dir}/run"
"""
    return {"containers/containers.conf": containers_conf, "containers/storage.conf": storage_conf}


def busybox_tar(out: Path) -> Path:
    """A tiny image root from the host's static busybox: /bin/busybox + applet symlinks."""
    target = out / "mcfleet-bb.tar"
    if target.exists():
        return target
    busybox = which("busybox")
    root = out / "bb-root"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    for sub in ("etc", "srv", "tmp"):
        (root / sub).mkdir(exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in BB_APPLETS:
        link = root / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    with tarfile.open(target, "w") as tar:
        tar.add(root, arcname=".")
    return target


def _in_node(holder_pid: int) -> list[str]:
    return ["nsenter", "-t", str(holder_pid), "-m", "-u", "-n", "--"]


async def import_image(holder_pid: int, tar: Path) -> None:
    """Import the busybox image into the node's storage (no registry here)."""
    which("podman")
    which("runc")
    argv = [*_in_node(holder_pid), which("podman"), "import", "-q", "--change", 'CMD ["/bin/sh"]', str(tar), IMAGE]
    await run(argv, limit_s=120)


@dataclass(frozen=True)
class PodmanService:
    node: str
    pid: int
    socket: str  # unix socket of the node's podman API service
    image: str

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


async def start_service(state: LabState, name: str, holder_pid: int, node_dir: Path, netns: str) -> PodmanService:
    sock = short_run_dir(netns) / "podman.sock"
    log = node_dir / "podman-service.log"
    argv = [*_in_node(holder_pid), which("podman"), "system", "service", "--time=0", f"unix://{sock}"]
    pid = spawn(argv, log=log)
    state.add(Resource("process", f"{name}/podman", pid, start_time(pid), str(log)))
    await wait_unix(sock, limit_s=15, what=f"podman service of {name}", pid=pid, log=log)
    return PodmanService(name, pid, str(sock), IMAGE)


async def remove_all(holder_pid: int) -> None:
    """Stop and remove every container of the node (they outlive the podman service otherwise)."""
    await run([*_in_node(holder_pid), which("podman"), "rm", "-a", "-f", "-t", "0"], check=False, limit_s=60)
