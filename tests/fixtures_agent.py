"""Fixtures for the agent tests: a real rootful podman API service and real agent processes.

Podman runs inside a network namespace the fixture creates (its CNI bridge, iptables rules
and published ports live and die with that namespace), with its own --root/--runroot/--tmpdir
and three workarounds podman needs on this machine (runc, cgroupfs + file events, lowered ulimits).
The agent under test runs in the same namespace, so its health checks see the published
ports; the test process reaches the agent through its unix socket (a plain file path).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.derive import assign_ports_in, service_ports
from mcfleet.fleet.models import Service

REPO = Path(__file__).resolve().parent.parent
IMAGE = "localhost/mcfleet-agent-bb:test"
APPLETS = ("sh", "cat", "echo", "env", "sleep", "httpd", "true", "false", "wget", "ls", "test")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "cni"
"""


def _need(*programs: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespace, rootful podman)")
    for program in programs:
        if shutil.which(program) is None and not os.access(f"/usr/sbin/{program}", os.X_OK):
            pytest.skip(f"`{program}` is not installed")


def _wait_path(path: Path, proc: subprocess.Popen[bytes], log: Path, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {within}s: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def _wait_listening(path: Path, proc: subprocess.Popen[bytes], log: Path, within: float) -> None:
    """Until the agent accepts a connection on its socket: gRPC creates the file when it binds, and
    listens only when the server starts, so a client that came in between was refused."""
    import socket

    deadline = time.monotonic() + within
    _wait_path(path, proc, log, within)
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return
            except (ConnectionRefusedError, FileNotFoundError):
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {path} within {within}s: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], within: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def busybox_image_tar(out: Path) -> Path:
    root = out / "bb-root"
    (root / "bin").mkdir(parents=True)
    for sub in ("etc", "srv", "tmp", "www", "data"):
        (root / sub).mkdir()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    tar_path = out / "bb.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(root, arcname=".")
    return tar_path


@dataclass
class PodmanLab:
    """One podman API service in its own network namespace."""

    base: Path
    netns: str
    image: str = IMAGE
    proc: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.base / "podman.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.base / "containers.conf")}

    def _flags(self) -> list[str]:
        b = self.base
        return ["--root", f"{b}/storage", "--runroot", f"{b}/run", "--tmpdir", f"{b}/tmp"]

    def in_ns(self, *argv: str) -> list[str]:
        # nsenter --net only: `ip netns exec` also remounts /sys, which hides the cgroup mounts runc needs.
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def podman(self, *args: str, check: bool = True) -> str:
        """The podman CLI against our storage (local mode: for import and inspection)."""
        done = subprocess.run(
            ["podman", *self._flags(), *args], env=self.env, capture_output=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.decode()[-1000:]}")
        return done.stdout.decode()

    def remote(self, *args: str, check: bool = True) -> str:
        """The podman CLI through the API service (sees the service's mounts and namespace)."""
        done = subprocess.run(
            ["podman", "--url", self.url, *args], env=self.env, capture_output=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman --url {' '.join(args)} failed: {done.stderr.decode()[-1000:]}")
        return done.stdout.decode()

    def start(self) -> None:
        log = self.base / "podman-service.log"
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        cmd = ["podman", *self._flags(), "system", "service", "--time=0", self.url]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(self.in_ns(*cmd), env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(self.proc)
        _wait_path(self.socket, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def wipe_state(self) -> None:
        """Lose podman's state like a broken node would: every container gone, its database and
        run state deleted, the service restarted.  Images and the data volumes stay."""
        self.remote("rm", "-a", "-f", "-t", "0")
        self.stop()
        for sub in ("run", "tmp", "storage/libpod"):
            shutil.rmtree(self.base / sub, ignore_errors=True)
        self.start()

    def http_get(self, port: int, path: str = "/") -> str:
        """GET from inside the namespace, where the container's port is published."""
        url = f"http://127.0.0.1:{port}{path}"
        code = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode(), end='')"
        done = subprocess.run(self.in_ns(sys.executable, "-c", code), capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"GET :{port}{path} failed: {done.stderr.decode()[-500:]}")
        return done.stdout.decode()


@pytest.fixture
def agent_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanLab]:
    _need("ip", "podman", "runc", "busybox", "catatonit")
    base = tmp_path_factory.mktemp("pm")
    netns = f"mcfa{os.getpid() % 100000}{base.name[-2:].strip('-_')}"
    (base / "containers.conf").write_text(CONTAINERS_CONF)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    lab = PodmanLab(base, netns)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        tar = busybox_image_tar(base)
        lab.podman("import", "-q", "--change", 'CMD ["/bin/sh"]', str(tar), IMAGE)
        lab.start()
        yield lab
    finally:
        if lab.proc is not None:
            with contextlib.suppress(Exception):
                lab.remote("rm", "-a", "-f", "-t", "0")
        lab.stop()
        for proc in lab.procs:
            _stop(proc)
        subprocess.run(["ip", "netns", "del", netns], check=False)
        with contextlib.suppress(Exception):
            lab.podman("rm", "-a", "-f", "-t", "0", check=False)
        _unmount_below(base)


def _stop_leftover_conmons(base: Path) -> None:
    """conmon processes of `podman exec` sessions (command health checks) linger 5 minutes
    (exit_command_delay) and then run a `podman container cleanup` that re-mounts this storage
    after teardown.  They are ours, started by this fixture's podman: stop them by PID."""
    marker = str(base.resolve()).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"conmon") and any(marker in a for a in argv):
                pids.append(int(proc.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_below(base: Path) -> None:
    """podman bind-mounts its storage's `overlay` dir onto itself (in our mount namespace, as it
    runs with `nsenter --net` only) and leaves it mounted: unmount it, deepest first, or a later
    pytest run cannot rotate this temp dir away ("Device or resource busy")."""
    _stop_leftover_conmons(base)
    prefix = str(base.resolve()) + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle if line.split()[4].startswith(prefix)]
    for point in sorted(set(points), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@dataclass
class AgentProc:
    proc: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def stop(self) -> None:
        _stop(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class AgentRunner:
    """Starts `mcfleet-agent` processes (from source or from a bundle) and stops them at teardown."""

    base: Path
    started: list[AgentProc] = field(default_factory=list)

    def start(
        self,
        *extra: str,
        podman: PodmanLab | None = None,
        argv: list[str] | None = None,
        name: str = "agent",
    ) -> AgentProc:
        sock = self.base / f"{name}.sock"
        log = self.base / f"{name}.log"
        cmd = argv or [sys.executable, "-m", "mcfleet.agent.main"]
        cmd = [*cmd, "--socket", str(sock), "--registry", str(self.base / f"{name}.db"), *extra]
        if podman is not None:
            cmd = podman.in_ns(*cmd, "--podman", podman.url, "--stop-timeout", "2")
        env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "PEX_ROOT": str(self.base / "pex-root")}
        sock.unlink(missing_ok=True)  # left by an agent that was killed (one stopped removes its own)
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        agent = AgentProc(proc, sock, log)
        self.started.append(agent)
        _wait_listening(sock, proc, log, within=300)
        return agent

    def report_sections(self, tail: int = 6000) -> list[tuple[str, str]]:
        """Each agent's state and the end of its log, for a failed test's report (read before teardown)."""
        sections = []
        for agent in self.started:
            code = agent.proc.poll()
            state = "running" if code is None else f"exited {code}"
            try:
                text = agent.log_text()[-tail:]
            except OSError as exc:
                text = f"(log unreadable: {exc})"
            sections.append((f"agent {agent.socket.name} ({state}, pid {agent.proc.pid})", text))
        return sections


@pytest.fixture
def agent_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRunner]:
    runner = AgentRunner(tmp_path_factory.mktemp("ag"))
    try:
        yield runner
    finally:
        for agent in runner.started:
            agent.stop()


# --------------------------------------------------------------------------- services the tests deploy

# Each start appends a line to /data/starts and dumps its environment: the tests read both
# from the host side of the volume.
# The program listens on the port the agent hands it ($PORT or $PORT_WEB), as mcdsl services do:
# an HTTP answer on the published host port proves the env value and the mapping agree.
CMD = ["sh", "-c", "echo start >> /data/starts; env > /data/env; exec httpd -f -p ${PORT:-$PORT_WEB} -h /www"]


def web_service(
    root: Path,
    name: str,
    stage: str,
    image: str,
    *,
    env: list[str] | None = None,
    route_name: str | None = None,
    health: dict[str, object] | None = None,
    user: str | None = None,
    restart: str = "unless-stopped",
) -> Service:
    www = root / "www" / name
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text(f"hello from {name}\n")
    route: dict[str, object] = {"port": 8080, "mode": "l7"}
    if route_name:
        route["name"] = route_name
    return Service.model_validate(
        {
            "name": name,
            "stage": stage,
            "components": [
                {
                    "name": name,
                    "image": image,
                    "cmd": CMD,
                    "env": env or [f"GREETING=hello-{name}"],
                    "volumes": [f"{root}/data/{name}:/data", f"{www}:/www:ro"],
                    "routes": [route],
                    "health": health or {"kind": "http", "port": 8080, "path": "/index.html", "timeout_s": 2},
                    "restart": restart,
                    **({"user": user} if user else {}),
                }
            ],
        }
    )


def with_ports(services: list[Service], host: str = "lab") -> list[tuple[Service, dict[str, int]]]:
    """Each service with the host ports mcfleet assigns it (the agent takes the ports it is given)."""
    assigned = assign_ports_in(host, services, 20000, 29999)
    return [(s, service_ports(s, assigned)) for s in services]


def three_stages(root: Path, image: str) -> list[Service]:
    return [
        web_service(root, "dns", "foundation", image),
        # A command check (run in the container through podman exec) for the middle stage.
        web_service(
            root, "proxy", "core", image, health={"kind": "command", "command": ["test", "-s", "/www/index.html"]}
        ),
        web_service(root, "app", "services", image, route_name="web", user="0:0", restart="on-failure"),
    ]


# --------------------------------------------------------------------------- bundle + arm64 python

ARM64_DEBS = [
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
    "libtinfo6",
    "libncursesw6",
    "libreadline8",
    "libdb5.3",
    "libnsl2",
    "libtirpc3",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libcom-err2",
    "libkrb5support0",
    "libkeyutils1",
    "media-types",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
]


@pytest.fixture(scope="session")
def agent_bundle(request: pytest.FixtureRequest) -> Any:
    """The agent PEX, built once per inputs hash into pytest's cache (reused across runs)."""
    from mcfleet.bundle.build import BundleError, build_agent_bundle

    cache = request.config.cache.mkdir("mcfleet-bundles") if request.config.cache else None
    try:
        return build_agent_bundle(cache_dir=cache)
    except BundleError as exc:
        if "pip" in exc.message.lower() or "network" in exc.message.lower() or "index" in exc.message.lower():
            pytest.skip(f"cannot build the bundle here (PyPI unreachable?): {exc.message}")
        raise


def _build_arm64_sysroot(target: Path) -> None:
    """Debian 12's arm64 python3.11 and its libraries, unpacked from the archive's .debs with a
    private apt state (the machine's dpkg/apt configuration is not touched)."""
    work = target.with_name(target.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (work / sub).mkdir(parents=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (work / "sources.list").write_text(
        f"deb [arch=arm64 signed-by={keyring}] http://deb.debian.org/debian bookworm main\n"
        f"deb [arch=arm64 signed-by={keyring}] http://deb.debian.org/debian-security bookworm-security main\n"
    )
    opts = [
        "-q", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64",
        "-o", f"Dir::State={work}", "-o", f"Dir::State::Lists={work}/lists", "-o", "Dir::State::status=/dev/null",
        "-o", f"Dir::Cache={work}/cache", "-o", f"Dir::Etc::SourceList={work}/sources.list",
        "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "Debug::NoLocking=1",
    ]  # fmt: skip
    subprocess.run(["apt-get", *opts, "update"], check=True, capture_output=True, timeout=300)
    subprocess.run(
        ["apt-get", *opts, "download", *ARM64_DEBS], cwd=work / "debs", check=True, capture_output=True, timeout=300
    )
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted((work / "debs").glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True, timeout=120)
    os.replace(staging, target)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def arm64_python(request: pytest.FixtureRequest) -> list[str]:
    """argv prefix that runs Debian 12's aarch64 python3.11 under qemu-user (no binfmt needed).

    The sysroot (~40 MB unpacked from 28 .debs, ~5 s) is cached in pytest's cache directory."""
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        pytest.skip("qemu-aarch64-static is not installed (apt-get install qemu-user-static)")
    if request.config.cache is None:
        pytest.skip("needs pytest's cache directory for the arm64 sysroot")
    root = request.config.cache.mkdir("mcfleet-arm64-python") / "root"
    lock_path = root.with_name("lock")
    with lock_path.open("w") as lock:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "usr/bin/python3.11").exists():
            try:
                _build_arm64_sysroot(root)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                pytest.skip(f"cannot fetch Debian's arm64 python3.11 (deb.debian.org unreachable?): {exc}")
    # A wrapper that qemu names as argv[0] (-0): python then reports it as sys.executable, so
    # the PEX's re-exec of itself runs through qemu again instead of needing binfmt_misc.
    wrapper = root / "usr/bin/python3-qemu"
    wrapper.write_text(f'#!/bin/sh\nexec {qemu} -L {root} -0 "$0" {root}/usr/bin/python3.11 "$@"\n')
    wrapper.chmod(0o755)
    return [str(wrapper)]
