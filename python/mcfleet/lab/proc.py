"""Processes of the lab: short commands (asyncio) and long-running daemons (detached, by PID).

Daemons are started with `subprocess.Popen(start_new_session=True)` and not with asyncio,
because an asyncio subprocess transport kills its child when the event loop closes, and the
lab's daemons must outlive `mcfleet lab up`.  Every daemon is identified by PID *and* its
start time (field 22 of /proc/<pid>/stat), so `down` never signals a recycled PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from mcfleet.errors import LabError, ToolMissing

# Program -> Debian package that provides it (for the "missing tool" hint).
APT_PACKAGE = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "systemd-nspawn": "systemd-container",
    "podman": "podman",
    "runc": "runc",
    "knotd": "knot",
    "knotc": "knot",
    "keymgr": "knot",
    "pebble": "pebble",
    "caddy": "caddy",
    "haproxy": "haproxy",
    "debootstrap": "debootstrap",
    "zstd": "zstd",
    "tar": "tar",
    "iptables": "iptables",
    "busybox": "busybox-static",
    "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support",
    "openssl": "openssl",
    "docker-registry": "docker-registry",
}

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def which(program: str) -> str:
    """Absolute path of a program, or ToolMissing naming the apt package to install."""
    found = shutil.which(program) or next(
        (f"{d}/{program}" for d in SBIN if os.access(f"{d}/{program}", os.X_OK)), None
    )
    if found is None:
        package = APT_PACKAGE.get(program, program)
        raise ToolMissing(
            f"`{program}` is not installed",
            hint=f"install it: apt-get install -y {package}",
        )
    return found


def installed(program: str) -> bool:
    try:
        which(program)
    except ToolMissing:
        return False
    return True


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (network namespaces, mounts, sshd, systemd-nspawn)",
            hint="run it as root, e.g. `sudo mcfleet lab up`",
        )


async def run(argv: Sequence[str], *, check: bool = True, input_: bytes | None = None, limit_s: float = 120) -> str:
    """Run a short command; return stdout.  A failure raises LabError with its stderr tail."""
    code, out, err = await run_status(argv, input_=input_, limit_s=limit_s)
    if check and code != 0:
        tail = (err.strip() or out.strip()).splitlines()[-3:]
        raise LabError(f"`{' '.join(argv)}` failed (exit {code}): {' / '.join(tail)}")
    return out


async def run_status(argv: Sequence[str], *, input_: bytes | None = None, limit_s: float = 120) -> tuple[int, str, str]:
    """Run a short command; return (exit code, stdout, stderr)."""
    program = which(argv[0]) if not argv[0].startswith("/") else argv[0]
    proc = await asyncio.create_subprocess_exec(
        program,
        *argv[1:],
        stdin=subprocess.PIPE if input_ is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(input_), limit_s)
    except TimeoutError:
        await _kill(proc)
        raise LabError(f"`{' '.join(argv)}` did not finish within {limit_s:.0f} s") from None
    except BaseException:  # cancelled (a sibling step failed, Ctrl-C): leave no child behind
        await asyncio.shield(_kill(proc))
        raise
    return int(proc.returncode or 0), out.decode(errors="replace"), err.decode(errors="replace")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.communicate()


def spawn(argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a daemon detached from us (own session), output appended to `log`; return its PID."""
    program = which(argv[0]) if not argv[0].startswith("/") else argv[0]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [program, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    # The Popen object is dropped on purpose: we track the daemon by PID.  Python would
    # otherwise warn "subprocess still running" when the object is collected.
    child.returncode = 0
    return child.pid


def start_time(pid: int) -> int | None:
    """Kernel start time of a process (clock ticks since boot), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def read_text(path: str) -> str | None:
    """A small /proc or /sys file, or None if it is gone (sync: these reads never block)."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def exists(path: str) -> bool:
    return os.path.exists(path)


def alive(pid: int, started: int | None = None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def _reap(pid: int) -> None:
    # Our own children must be waited for, or they stay zombies (and /proc/<pid> stays).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, started: int | None, *, timeout: float = 10.0) -> None:
    """SIGTERM a daemon we started (checked by start time), wait, then SIGKILL."""
    if not alive(pid, started):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, started):
            _reap(pid)
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(250):
        _reap(pid)
        if not alive(pid, started):
            _reap(pid)
            return
        time.sleep(0.02)


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        return " / ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
