"""A full lab node runs real systemd (systemd-nspawn -b): units written over SSH really run."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from tests.fixtures_lab import FullNode

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

UNIT = """\
[Unit]
Description=mcfleet lab test unit

[Service]
ExecStart=/usr/bin/python3 -m http.server 18080 --bind 0.0.0.0 --directory /etc

[Install]
WantedBy=multi-user.target
"""


def test_a_unit_written_over_ssh_can_be_enabled_restarted_and_stopped(full_node: FullNode) -> None:
    node = full_node.node

    async def scenario() -> dict[str, str]:
        known = asyncssh.import_known_hosts(f"{node.address} {node.host_key}\n")
        async with asyncssh.connect(
            node.address, username="root", client_keys=[str(full_node.client_key)], known_hosts=known
        ) as conn:

            async def sh(cmd: str, check: bool = True) -> str:
                return str((await conn.run(cmd, check=check)).stdout).strip()

            seen = {"pid1": await sh("cat /proc/1/comm"), "hostname": await sh("hostname")}
            async with conn.start_sftp_client() as sftp, sftp.open("/etc/systemd/system/mcfleet-t.service", "w") as f:
                await f.write(UNIT)
            await sh("systemctl daemon-reload && systemctl enable --now mcfleet-t.service")
            seen["enabled"] = await sh("systemctl is-enabled mcfleet-t.service")
            seen["pid_before"] = await sh("systemctl show -p MainPID --value mcfleet-t.service")
            await sh("systemctl restart mcfleet-t.service")
            seen["pid_after"] = await sh("systemctl show -p MainPID --value mcfleet-t.service")
            for _ in range(100):
                got = await conn.run(
                    "python3 -c \"import urllib.request as u;u.urlopen('http://127.0.0.1:18080/hostname')\""
                )
                if got.exit_status == 0:
                    break
                await asyncio.sleep(0.05)
            seen["http"] = str(got.exit_status)
            await sh("systemctl stop mcfleet-t.service")
            seen["after_stop"] = await sh("systemctl is-active mcfleet-t.service", check=False)
            return seen

    seen = asyncio.run(scenario())
    assert seen["pid1"] == "systemd"
    assert seen["hostname"] == node.name
    assert seen["enabled"] == "enabled"
    assert seen["pid_before"] != "0"
    assert seen["pid_after"] not in ("0", seen["pid_before"])
    assert seen["http"] == "0"
    assert seen["after_stop"] == "inactive"


def test_full_node_fleet_dir_pins_its_host_key(full_node: FullNode) -> None:
    import json

    host = json.loads((full_node.fleet_dir / "hosts" / full_node.node.name / "host.json").read_text())
    assert host["ssh"]["host_key"] == full_node.node.host_key
    assert host["addresses"] == [full_node.node.address]
