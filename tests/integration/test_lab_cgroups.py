"""Full nodes booted together each run in a cgroup tree of their own.

nspawn without a host systemd puts its container in `<its cgroup>/payload`: with every node
started from the same process, all nodes' systemd managed the same `/payload/system.slice/...`
cgroups, and units failed at random with 219/CGROUP when neighbours booted together (a failed
systemd-user-sessions.service then kept /run/nologin, and sshd refused the sudo login user).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcfleet.lab import cgroups, proc
from tests.integration.apply_lab import MakeNodes, make_nodes_fixture  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def _cgroups_of(pid: int) -> dict[str, str]:
    """{hierarchy key: path} of a host PID, for the hierarchies a systemd manages."""
    found = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        if key in ("", "name=systemd"):
            found[key] = path
    return found


def test_nodes_booted_together_have_their_own_cgroups_and_no_failed_unit(make_nodes: MakeNodes) -> None:
    fleet = make_nodes(3, "cgr", login="sudo")
    seen = {}
    for node in fleet.nodes:
        paths = _cgroups_of(node.ns_pid)
        assert paths, Path(f"/proc/{node.ns_pid}/cgroup").read_text()
        for key, path in paths.items():
            # the container's systemd sits in its node's folder, not in a shared /payload
            assert path.split("/")[-3:-1] == [f"{cgroups.PREFIX}{node.netns}", "payload"], (key, path)
        seen[node.name] = paths
    assert len({tuple(sorted(p.items())) for p in seen.values()}) == len(fleet.nodes)
    for node in fleet.nodes:
        # Each node's own boot: no unit failed, and non-root logins are open (no /run/nologin).
        failed = fleet.sh(node.name, "systemctl --failed --no-legend --plain").stdout.strip()
        assert failed == "", f"{node.name}: {failed}"
        assert fleet.sh(node.name, "test -e /run/nologin", check=False).returncode != 0


def test_lab_down_removes_the_nodes_cgroups(tmp_path: Path) -> None:
    import asyncio

    from mcfleet.lab.lab import Lab, lab_down

    lab = Lab(tmp_path / "lab")

    async def up_and_down() -> list[Path]:
        try:
            node = await lab.add_full_node("cgdown")
            dirs = cgroups.node_dirs(node.netns)
            assert dirs and all(d.is_dir() for d in dirs), dirs
        finally:
            await lab_down(lab)
        return dirs

    for d in asyncio.run(up_and_down()):
        assert not d.exists(), f"{d} left behind"


def test_removing_a_node_undoes_what_it_made_and_deletes_its_folder_but_not_its_neighbours(tmp_path: Path) -> None:
    import asyncio

    from mcfleet.lab.lab import Lab, lab_down
    from mcfleet.lab.nodes import LabNode

    lab = Lab(tmp_path / "lab")

    def mounted_under(folder: str) -> list[str]:
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        return [m for m in points if m.startswith(f"{folder}/")]

    def left(gone: LabNode, dirs: list[Path]) -> dict[str, object]:
        return {
            "folder": Path(gone.dir).exists(),
            "mounts": mounted_under(gone.dir),
            "netns": Path(f"/run/netns/{gone.netns}").exists(),
            "cgroups": [d for d in dirs if d.exists()],
            "alive": proc.alive(gone.main_pid),
            "resources": [r.name for r in lab.state.resources if gone.name in r.name or gone.netns in r.name],
            "nodes": sorted(lab.nodes),
        }

    async def scenario() -> dict[str, object]:
        try:
            gone, kept = await asyncio.gather(lab.add_full_node("rmgone"), lab.add_full_node("rmkept"))
            # what a deploy leaves on a node: its upper layer grows
            code, _, err = await lab.exec_in(gone.name, ["sh", "-c", "head -c 4000000 /dev/zero > /srv/blob"])
            assert code == 0, err
            dirs = cgroups.node_dirs(gone.netns)
            assert mounted_under(gone.dir) and all(d.is_dir() for d in dirs)
            removed = await lab.remove_node(gone.name)
            code, out, _ = await lab.exec_in(kept.name, ["cat", "/etc/hostname"])
            return {"removed": removed, "neighbour": (code, out.strip(), mounted_under(kept.dir) != [])} | left(
                gone, dirs
            )
        finally:
            await lab_down(lab)

    seen = asyncio.run(scenario())
    assert seen["removed"], "nothing was undone"
    assert seen["folder"] is False and seen["mounts"] == [] and seen["netns"] is False
    assert seen["cgroups"] == [] and seen["alive"] is False and seen["resources"] == []
    assert seen["nodes"] == ["rmkept"]
    assert seen["neighbour"] == (0, "rmkept", True)
