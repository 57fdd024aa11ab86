"""Which cgroup folders a full lab node gets, on legacy, hybrid and unified hosts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mcfleet.lab.cgroups import exec_in, node_dirs

HYBRID = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
"""
HYBRID_SELF = "9:name=systemd:/ci/job\n4:memory:/sandbox/1\n0::/ci/job\n"
UNIFIED = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_hybrid_host_the_named_systemd_and_the_unified_hierarchy_under_our_own_cgroup() -> None:
    assert node_dirs("mcl3n1", mountinfo=HYBRID, proc_cgroup=HYBRID_SELF) == [
        Path("/sys/fs/cgroup/unified/ci/job/mcfleet-lab-mcl3n1"),
        Path("/sys/fs/cgroup/systemd/ci/job/mcfleet-lab-mcl3n1"),
    ]  # never the memory controller's hierarchy, which the node's systemd does not manage


def test_unified_host_and_a_host_without_cgroups() -> None:
    assert node_dirs("mcl3n1", mountinfo=UNIFIED, proc_cgroup="0::/\n") == [Path("/sys/fs/cgroup/mcfleet-lab-mcl3n1")]
    assert node_dirs("mcl3n1", mountinfo="", proc_cgroup="") == []


def test_the_wrapper_moves_itself_then_execs_the_program_with_its_pid(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    done = subprocess.run(exec_in(dirs, ["sh", "-c", "echo $$"]), capture_output=True, text=True, check=True)
    pid = done.stdout.strip()
    assert [(d / "cgroup.procs").read_text().strip() for d in dirs] == [pid, pid]
