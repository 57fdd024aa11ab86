"""The arm64 lab node: an aarch64 Debian under qemu-user, reached over SSH with its pinned key."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from mcfleet.lab.nodes import LabNode
from tests.fixtures_lab import LabFleet

pytestmark = [pytest.mark.lab, pytest.mark.arm64, pytest.mark.slow]


def test_arm64_node_runs_aarch64_userland_over_ssh(arm64_node: LabNode, lab_fleet: LabFleet) -> None:
    async def ask() -> list[str]:
        known = asyncssh.import_known_hosts(f"{arm64_node.address} {arm64_node.host_key}\n")
        async with asyncssh.connect(
            arm64_node.address, username="root", client_keys=[str(lab_fleet.client_key)], known_hosts=known
        ) as conn:
            out = await conn.run("uname -m; hostname; python3 -c 'import platform; print(platform.machine())'")
            return str(out.stdout).split()

    assert asyncio.run(ask()) == ["aarch64", arm64_node.name, "aarch64"]
    assert lab_fleet.exec_in(arm64_node, ["uname", "-m"]).stdout.strip() == "aarch64"
