"""`ssh.jump` naming a fleet host: the connection is tunnelled through that host's own pooled
connection (its pinned key checked like any other), and a jump loop is a clear error."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from mcfleet.errors import McfleetError
from mcfleet.fleet.load import load_fleet
from mcfleet.transport.ssh import SshPool
from tests.fixtures_lab import LabFleet

pytestmark = [pytest.mark.lab]


def _fleet_with_jumps(lab_fleet: LabFleet, root: Path, jumps: dict[str, str]) -> Path:
    shutil.copytree(lab_fleet.fleet_dir, root, ignore=shutil.ignore_patterns(".lab", ".mcfleet"))
    for name, via in jumps.items():
        path = root / "hosts" / name / "host.json"
        host = json.loads(path.read_text())
        host["ssh"]["jump"] = via
        path.write_text(json.dumps(host))
    return root


def test_jump_through_a_fleet_host_tunnels_via_that_node(lab_fleet: LabFleet, tmp_path: Path) -> None:
    first, second = lab_fleet.names[0], lab_fleet.names[1]
    loaded = load_fleet(_fleet_with_jumps(lab_fleet, tmp_path / "fleet", {second: first}))

    async def client_address() -> tuple[str, str]:
        async with SshPool(hosts=loaded.hosts) as pool:
            conn = await pool.connect(loaded.hosts[second])
            seen = await conn.run("echo $SSH_CONNECTION", timeout=30)
            direct = await (await pool.connect(loaded.hosts[first])).run("echo $SSH_CONNECTION", timeout=30)
            return seen.stdout.split()[0], direct.stdout.split()[0]

    via_jump, direct = asyncio.run(client_address())
    # Reached through the jump, the second node sees the FIRST node's address as its client;
    # the first node, reached directly, sees the lab gateway.
    assert via_jump == lab_fleet.node(first).address
    assert direct != lab_fleet.node(first).address


def test_a_jump_loop_is_an_error_not_a_hang(lab_fleet: LabFleet, tmp_path: Path) -> None:
    first, second = lab_fleet.names[0], lab_fleet.names[1]
    loaded = load_fleet(_fleet_with_jumps(lab_fleet, tmp_path / "fleet", {first: second, second: first}))

    async def attempt() -> None:
        async with SshPool(hosts=loaded.hosts) as pool:
            await asyncio.wait_for(pool.connect(loaded.hosts[first]), timeout=60)

    with pytest.raises(McfleetError, match="the jumps form a loop"):
        asyncio.run(attempt())
