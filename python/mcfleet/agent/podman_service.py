"""Restart the agent user's own podman API service when it went stale.

Rootless podman's API is `podman system service`, started by the user's systemd from
`podman.socket` on the first connection.  `podman system reset` run by hand (the
incident's wipe) deletes the storage and the database under that running service and
kills its pause process, but not the service itself: it keeps answering `_ping`, while
its first container call fails with "opening database …: no such file or directory" and
later ones never answer.  The service does not go away by itself while a client keeps a
connection open.  The cure is to stop it: the socket starts a fresh service (on the
fresh storage) on the next connection.

podman.service runs with KillMode=process, so `systemctl --user stop` ends only its main
process; the service's worker (re-executed inside the rootless user namespace) survives,
hung, and is killed here by pid.  Containers (conmon and its children) are never touched.

A stale service is recognised before any call hangs on it: its worker lives in a user
namespace that is no longer podman's (rootless podman keeps its user namespace open with
a pause process, whose pid is in $XDG_RUNTIME_DIR/libpod/tmp/pause.pid; the reset kills it
and the next podman command makes a new one).  This relies on the agent itself running in
the host's user namespace, as mcp-agent.service does (it sets no PrivateUsers=).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

USER_SOCKET = re.compile(r"^unix://(/run/user/(\d+))/podman/podman\.sock$")
SYSTEMCTL_TIMEOUT_S = 30.0
STARTUP_GRACE_S = 1.0
CONFIRM_S = 1.0


def user_runtime_dir(url: str) -> str | None:
    """The runtime dir of the user whose podman socket `url` is, when that user is us."""
    match = USER_SOCKET.match(url)
    if match is None or int(match.group(2)) != os.getuid():
        return None
    return match.group(1)


def service_pids(uid: int, proc: Path = Path("/proc")) -> list[int]:
    """Our `podman … system service` processes (main and worker), by their command line."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if argv and argv[0].endswith(b"podman") and b"system" in argv and b"service" in argv:
            found.append(int(entry.name))
    return found


def _userns(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return ""


def _age_s(pid: int) -> float:
    """Seconds since the process started (0 when it cannot be read)."""
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def stale_namespace(url: str) -> str:
    """Why the user's running API service is stale ('' when it is not, or none runs).

    A worker younger than STARTUP_GRACE_S is left alone: a service that is starting has its
    worker in the new namespace a moment before its pause process writes pause.pid (callers
    also look twice, CONFIRM_S apart, before they restart anything).  The grace is short on
    purpose: a service stale since a reset seconds after it started must still be found, or
    it goes on creating containers in namespaces no other podman command can see."""
    runtime = user_runtime_dir(url)
    if runtime is None:
        return ""
    own = _userns("self")
    workers = {
        pid: ns
        for pid in service_pids(os.getuid())
        if (ns := _userns(pid)) and ns != own and _age_s(pid) >= STARTUP_GRACE_S
    }
    if not workers:
        return ""  # no service running (or not yet inside its namespace): nothing stale to talk to
    try:
        pause = _userns(int(Path(runtime, "libpod/tmp/pause.pid").read_text().strip()))
    except (OSError, ValueError):
        pause = ""
    if pause and set(workers.values()) == {pause}:
        return ""
    which = "is gone" if not pause else "belongs to another user namespace"
    return (
        f"podman's API service (pid {', '.join(map(str, workers))}) runs in a user namespace podman no longer "
        f"uses: its pause process {which} (podman system reset?)"
    )


def restart_user_service(url: str) -> str:
    """Stop the user's podman.service and kill its leftover worker; say what was done.
    Returns '' when `url` is not our own rootless socket (a rootful podman is not ours to restart)."""
    runtime = user_runtime_dir(url)
    if runtime is None:
        return ""
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    try:
        done = subprocess.run(
            ["systemctl", "--user", "stop", "podman.service"],
            env=env,
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
            check=False,
        )
        stopped = "stopped podman.service" if done.returncode == 0 else f"systemctl --user stop: {done.stderr.strip()}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        stopped = f"systemctl --user stop podman.service failed: {exc}"
    killed = []
    for pid in service_pids(os.getuid()):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            continue
    leftover = f", killed its leftover worker(s) {', '.join(map(str, killed))}" if killed else ""
    return f"{stopped}{leftover}; podman.socket starts a fresh service on the next call"
