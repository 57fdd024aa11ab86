"""The agent bundle on the lab's arm64 node: pushed over SFTP, started by the node's own aarch64
python3 (qemu-user), and health-checked through a unix socket forwarded over the SSH connection —
the same path `mcfleet apply` takes, on the other architecture."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from mcfleet.agent.client import AgentClient
from mcfleet.lab.nodes import LabNode
from tests.fixtures_lab import LabFleet

pytestmark = [pytest.mark.lab, pytest.mark.arm64, pytest.mark.slow]

REMOTE = "/srv/mcfleet-arm64-test"


def test_agent_bundle_serves_health_and_info_on_the_arm64_node(
    arm64_node: LabNode, lab_fleet: LabFleet, agent_bundle: Any
) -> None:
    async def scenario() -> tuple[str, str, str, str]:
        known = asyncssh.import_known_hosts(f"{arm64_node.address} {arm64_node.host_key}\n")
        async with asyncssh.connect(
            arm64_node.address, username="root", client_keys=[str(lab_fleet.client_key)], known_hosts=known
        ) as conn:
            await conn.run(f"rm -rf {REMOTE} && mkdir -p {REMOTE}", check=True)
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(agent_bundle.path), f"{REMOTE}/mcp-agent")
            remote_sha = (await conn.run(f"sha256sum {REMOTE}/mcp-agent", check=True)).stdout
            agent = await conn.create_process(
                f"cd {REMOTE} && exec env PEX_ROOT={REMOTE}/.pex python3 {REMOTE}/mcp-agent "
                f"--socket {REMOTE}/agent.sock --registry {REMOTE}/agent.db --no-boot"
            )
            try:
                with tempfile.TemporaryDirectory(prefix="mcf-arm64-") as tmp:
                    local = str(Path(tmp) / "agent.sock")
                    # The agent unpacks and starts under qemu-user (~30 s); wait for its socket first.
                    for _ in range(240):
                        if (await conn.run(f"test -S {REMOTE}/agent.sock")).exit_status == 0:
                            break
                        await asyncio.sleep(0.5)
                    listener = await conn.forward_local_path(local, f"{REMOTE}/agent.sock")
                    try:
                        async with AgentClient(local, timeout=30.0) as client:
                            health = await client.wait_serving(60, "mcfleet.agent.v1.Agent")  # no podman
                            info = await client.info()
                    finally:
                        listener.close()
            finally:
                agent.terminate()
                agent.close()
            return str(remote_sha).split()[0], health, info.arch, info.bundle_sha256

    remote_sha, health, arch, bundle_sha = asyncio.run(scenario())
    assert remote_sha == agent_bundle.sha256  # the bytes arrived whole
    assert health == "SERVING"
    assert arch == "aarch64"  # the node's own interpreter ran the aarch64 wheels
    assert bundle_sha == agent_bundle.sha256
