"""Loopback SSH nodes for the plan tests and bench (sshd on loopback addresses, without netns).

Each node is a real `sshd` on 127.0.0.1:<free port>, started under `unshare` with
its own hostname, a tmpfs /srv and /root, and a copy-on-write /etc (overlay), so
`useradd` inside a node changes only that node.  Used until/unless the lab
fixtures (tests/fixtures_lab.py) provide the same; needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def can_run() -> str | None:
    """None when loopback nodes can run here, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root (unshare --mount, overlay /etc)"
    for tool in (SSHD, "/usr/bin/ssh-keygen", "/usr/bin/unshare", "/usr/bin/nsenter"):
        if not Path(tool).exists():
            return f"{tool} is not installed"
    return None


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class Node:
    name: str
    dir: Path
    address: str
    port: int
    host_key: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        d = self.dir
        script = (
            f"hostname {self.name} && mount -t tmpfs -o size=64m tmpfs /srv && "
            f"mount -t tmpfs -o size=16m tmpfs /root && "
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc && "
            f"exec {SSHD} -D -e -f {d}/sshd_config"
        )
        with (d / "sshd.log").open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {(d / 'sshd.log').read_text()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex((self.address, self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"sshd for {self.name} did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def exec_in(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's mount/uts namespaces (its /etc, /srv, hostname)."""
        assert self.proc is not None, "node is not running"
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "-u", *argv], capture_output=True, text=True, check=False
        )


def make_nodes(base: Path, names: list[str]) -> tuple[list[Node], Path]:
    """Create (not start) nodes under base; returns them and the client key path."""
    base.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    client_key = base / "client_ed25519"
    if not client_key.exists():
        keygen(client_key)
    pub = client_key.with_suffix(".pub").read_text()
    nodes = []
    for name in names:
        d = base / name
        d.mkdir()
        (d / "etc-upper").mkdir()
        (d / "etc-work").mkdir()
        host_key = keygen(d / "ssh_host_ed25519_key")
        (d / "authorized_keys").write_text(pub)
        # A distinct loopback address per node: the fleet rules forbid shared addresses.
        address = f"127.0.{20 + os.getpid() % 200}.{len(nodes) + 1}"
        port = free_port(address)
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress {address}\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        nodes.append(Node(name=name, dir=d, address=address, port=port, host_key=host_key))
    return nodes, client_key


def write_fleet(
    root: Path, nodes: list[Node], client_key: Path, *, services: dict[str, dict[str, object]] | None = None
) -> Path:
    """A fleet dir for the nodes: first node is master (+edge), mcp pinned at 850."""
    root.mkdir(parents=True, exist_ok=True)
    fleet = {
        "name": "plan-test",
        "zone": "svc.mcp.example.test",
        "pins": {"mcp": {"uid": 850, "gid": 850, "reason": "checked free on every test node"}},
    }
    (root / "fleet.json").write_text(json.dumps(fleet, indent=2))
    for i, node in enumerate(nodes):
        hdir = root / "hosts" / node.name
        hdir.mkdir(parents=True)
        host = {
            "name": node.name,
            "os": "debian",
            "arch": "amd64",
            "roles": ["master", "edge"] if i == 0 else ["worker"],
            "ssh": {"user": "root", "port": node.port, "host_key": node.host_key, "identity_file": str(client_key)},
            "addresses": [node.address],
            "users": {"mcp": {"uid": 850, "gid": 850}},
            "dns": {"nameservers": ["127.0.0.53"], "fallback": ["9.9.9.9"]},
        }
        (hdir / "host.json").write_text(json.dumps(host, indent=2))
        for svc_name, svc in (services or {}).get(node.name, {}).items():  # type: ignore[union-attr]
            (hdir / "services").mkdir(exist_ok=True)
            (hdir / "services" / f"{svc_name}.json").write_text(json.dumps(svc, indent=2))
    return root


def cleanup(nodes: list[Node]) -> None:
    for node in nodes:
        node.stop()
    for node in nodes:
        shutil.rmtree(node.dir / "etc-work", ignore_errors=True)
