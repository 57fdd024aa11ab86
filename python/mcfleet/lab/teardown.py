"""`mcfleet lab down`: undo every resource in the state file, newest first; idempotent.

Before a node's netns is deleted, any process still inside it (a container started over SSH,
an sshd session) is stopped too: the namespace is the lab's, so whatever runs in it is too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from mcfleet.lab import cgroups, proc
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.state import LabState, Resource


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(netns: str) -> list[int]:
    """PIDs whose network namespace is /run/netns/<netns>."""
    inode = _ns_inode(f"/run/netns/{netns}")
    if inode is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdecimal() and _ns_inode(f"/proc/{entry}/ns/net") == inode and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def _is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == path for line in handle)


async def _undo(resource: Resource, nodes: dict[str, LabNode]) -> None:
    if resource.kind == "process" and resource.pid is not None:
        # Containers outlive the podman service: remove them while the node still runs.
        node = nodes.get(resource.name.split("/")[0])
        if node is not None and node.podman and resource.name.endswith("/holder") and proc.alive(node.ns_pid):
            from mcfleet.lab.podman import remove_all

            await remove_all(node.ns_pid)
        proc.stop(resource.pid, resource.started, timeout=15)
        if node is not None and resource.name.endswith("/nspawn"):
            # nspawn leaves its propagation dir behind when /run is not a tmpfs
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{node.netns}", ignore_errors=True)
    elif resource.kind == "mount":
        if _is_mounted(resource.name):
            await proc.run(["umount", resource.name], check=False)
            if _is_mounted(resource.name):
                await proc.run(["umount", "-l", resource.name], check=False)
    elif resource.kind == "netns":
        for pid in pids_in_netns(resource.name):
            proc.stop(pid, proc.start_time(pid), timeout=5)
        if proc.exists(f"/run/netns/{resource.name}"):
            await proc.run(["ip", "netns", "del", resource.name], check=False)
    elif resource.kind == "bridge":
        if proc.exists(f"/sys/class/net/{resource.name}"):
            await proc.run(["ip", "link", "del", resource.name], check=False)
    elif resource.kind == "iptables":
        table, chain = resource.name.split("/", 1)
        await proc.run(["iptables", "-t", table, "-F", chain], check=False)
        await proc.run(["iptables", "-t", table, "-X", chain], check=False)
    elif resource.kind == "dir":
        shutil.rmtree(resource.name, ignore_errors=True)
    elif resource.kind == "cgroup":
        cgroups.remove(Path(resource.name))
    elif resource.kind == "binfmt":
        await proc.run(["update-binfmts", "--disable", resource.name], check=False)


def _mounts_under(folder: str) -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return [m for m in points if m == folder or m.startswith(f"{folder}/")]


def _belongs_to(resource: Resource, node: LabNode) -> bool:
    """Whether `resource` was made for `node` alone (its processes, overlay, cgroups, netns, run dir)."""
    name = resource.name
    if resource.kind == "process":
        return name.startswith(f"{node.name}/") or name.endswith(f"@{node.name}")
    if resource.kind == "mount":
        return name.startswith(f"{node.dir}/")
    if resource.kind == "cgroup":
        return Path(name).name == f"{cgroups.PREFIX}{node.netns}"
    if resource.kind == "netns":
        return name == node.netns
    if resource.kind == "dir":
        return Path(name).name == node.netns
    return False


async def remove_node(state: LabState, name: str) -> list[str]:
    """Undo what one node made, newest first, and delete its folder; the rest of the lab stays.

    A full node's folder holds its overlay's upper layer: every package, container image and
    cache written on the node (100-200 MB after a deploy).  A test session that only stopped its
    nodes kept all of them on disk until the end.
    """
    data = state.info.get("nodes", {}).get(name)
    if data is None:
        return []
    node = LabNode.from_dict(data)
    done: list[str] = []
    for resource in [r for r in reversed(state.resources) if _belongs_to(r, node)]:
        await _undo(resource, {node.name: node})
        done.append(f"{resource.kind} {resource.name}")
        state.drop(resource)
    state.info["nodes"].pop(name, None)
    state.save()
    if not _mounts_under(node.dir):  # never delete through a mount
        shutil.rmtree(node.dir, ignore_errors=True)
    return done


async def down(state: LabState) -> list[str]:
    """Undo everything; return a line per resource undone.  Safe to run twice."""
    nodes = {n: LabNode.from_dict(d) for n, d in state.info.get("nodes", {}).items()}
    done: list[str] = []
    for resource in list(reversed(state.resources)):
        await _undo(resource, nodes)
        label = f"{resource.kind} {resource.name}" + (f" (pid {resource.pid})" if resource.pid else "")
        done.append(label)
        state.drop(resource)
    with contextlib.suppress(OSError):
        os.rmdir("/run/mcfleet-lab")  # only when no other lab uses it
    # what the lab wrote on disk: each node's folder (its overlay's upper layer: packages, images, caches,
    # 100-200 MB after a deploy) and the registry's storage; the peers' small folders keep their logs
    for folder in [*(n.dir for n in nodes.values()), str(state.path.parent / "registry")]:
        if not _mounts_under(folder):  # never delete through a mount
            shutil.rmtree(folder, ignore_errors=True)
    state.info = {}
    state.save()
    with contextlib.suppress(OSError):
        state.path.unlink()
    return done
