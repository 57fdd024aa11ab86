"""Which processes are the user's podman API service, and which socket is the agent's own to restart."""

from __future__ import annotations

import os
from pathlib import Path

from mcfleet.agent.podman_service import service_pids, user_runtime_dir


def proc_entry(root: Path, pid: int, argv: list[str]) -> None:
    entry = root / str(pid)
    entry.mkdir()
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_service_pids_are_podman_system_service_processes_of_the_user_only(tmp_path: Path) -> None:
    proc_entry(tmp_path, 520, ["/usr/bin/podman", "--log-level=info", "system", "service"])
    proc_entry(tmp_path, 528, ["/usr/bin/podman", "--log-level=info", "system", "service"])  # its worker
    proc_entry(tmp_path, 603, ["/usr/bin/conmon", "--api-version", "1", "--exit-command", "/usr/bin/podman"])
    proc_entry(tmp_path, 605, ["/run/podman-init", "--", "/bin/sh", "-c", "podman system service"])
    proc_entry(tmp_path, 700, ["/usr/bin/podman", "system", "reset", "--force"])
    (tmp_path / "self").mkdir()
    assert sorted(service_pids(os.getuid(), tmp_path)) == [520, 528]
    assert service_pids(os.getuid() + 1, tmp_path) == []  # another user's service is not ours


def test_only_our_own_rootless_socket_is_ours_to_restart() -> None:
    uid = os.getuid()
    assert user_runtime_dir(f"unix:///run/user/{uid}/podman/podman.sock") == f"/run/user/{uid}"
    assert user_runtime_dir(f"unix:///run/user/{uid + 1}/podman/podman.sock") is None
    assert user_runtime_dir("unix:///run/podman/podman.sock") is None  # rootful podman: not the agent's
