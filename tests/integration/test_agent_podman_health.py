"""The agent's health follows podman's API, and a health command the image lacks fails fast."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mcfleet.agent.client import AgentClient
from tests.fixtures_agent import AgentRunner, PodmanLab, web_service, with_ports

pytestmark = [pytest.mark.lab, pytest.mark.slow]


async def _wait_status(client: AgentClient, want: str, within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while (status := await client.health_status()) != want:
        assert time.monotonic() < deadline, f"health stayed {status}, expected {want}"
        await asyncio.sleep(0.3)


def test_not_serving_with_the_reason_while_the_podman_socket_is_gone(
    agent_podman: PodmanLab, agent_runner: AgentRunner
) -> None:
    agent = agent_runner.start(podman=agent_podman)

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            await _wait_status(client, "SERVING")
            assert (await client.info()).health_reason == ""

            agent_podman.stop()  # the API service ends and its socket goes away
            await _wait_status(client, "NOT_SERVING")
            reason = (await client.info()).health_reason
            assert reason.startswith(f"podman API not reachable at {agent_podman.url}: "), reason
            assert await client.health_status("mcfleet.agent.v1.Agent") == "SERVING"  # the API itself answers
            facts = await client.facts()
            assert any(e["kind"] == "not-serving" and e["message"] == reason for e in facts["events"])
            # Facts still answers, and says the containers are unknown and why
            assert facts["health"]["status"] == "NOT_SERVING" and facts["health"]["reason"], facts["health"]
            assert facts["podman"]["error"] == facts["health"]["reason"] and facts["containers"] == []

            agent_podman.start()
            await _wait_status(client, "SERVING")
            assert (await client.info()).health_reason == ""

    asyncio.run(scenario())


def test_a_health_command_missing_from_the_image_fails_the_stage_at_once(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    agent = agent_runner.start(podman=agent_podman)
    # The busybox image has no `dig`: the check can never pass, so waiting out the stage is pointless.
    svc = web_service(tmp_path, "dns", "foundation", agent_podman.image,
                      health={"kind": "command", "command": ["dig", "+short", "example.test"]})  # fmt: skip

    async def scenario() -> tuple[str, float]:
        async with AgentClient(str(agent.socket)) as client:
            started = time.monotonic()
            result = await client.reconcile(with_ports([svc]), stage_timeout_s=120)
            assert not result.ok
            return result.error, time.monotonic() - started

    error, took = asyncio.run(scenario())
    assert error.startswith("stage foundation did not get healthy: dns cannot get healthy: health command `dig` "
                            f"cannot run in image {agent_podman.image} (exit 12"), error  # fmt: skip
    assert "use a tcp or http check on the published port" in error
    assert took < 60, f"took {took:.1f}s: the boot sequence stalled on a check that cannot pass"
