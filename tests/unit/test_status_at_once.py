"""`agent status` and `status` ask a node's probe and its agent's health at once (util.aio.both): the status
waits for the slower of the two, not for their SSH round trips one after the other."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.apply.status import host_status
from mcfleet.fleet.load import HostEntry
from mcfleet.transport.base import RunResult
from mcfleet.transport.local import LocalNode
from mcfleet.util.aio import both
from tests.unit.test_plan_cases import CASES, write_case_fleet


def test_both_gives_the_two_results_and_a_failure_cancels_the_other() -> None:
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    async def fails() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("the probe failed")

    async def run() -> tuple[tuple[int, int], bool]:
        got = await both(value(1, 0.02), value(2, 0.01))
        slow = asyncio.ensure_future(value(3, 3600))
        with pytest.raises(ValueError, match="the probe failed"):
            await both(fails(), slow)
        return got, slow.cancelled()

    got, cancelled = asyncio.run(run())
    assert got == (1, 2)
    assert cancelled  # not left running after the failure


class _Node(LocalNode):
    """This machine, reached as if through SSH: its probe answers only once the agent's socket was asked for."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def forward_unix(self, remote_path: str) -> str:
        self.asked.set()
        return remote_path  # nothing listens there: the health check fails and says so

    async def run(self, command: Any, **kwargs: Any) -> RunResult:
        await asyncio.wait_for(self.asked.wait(), timeout=5)  # asked one after the other: never set
        return await super().run(command, **kwargs)


def test_the_probe_and_the_agents_health_are_asked_at_once(tmp_path: Path) -> None:
    case = json.loads((CASES / "drift-repairs-leave-the-manifest-alone.json").read_text())
    loaded = write_case_fleet(tmp_path / "fleet", case)
    node = _Node()

    class _Pool:
        async def connect(self, entry: HostEntry) -> _Node:
            return node

    row = asyncio.run(host_status(_Pool(), loaded.hosts["rift"]))  # type: ignore[arg-type]
    assert row.reachable and row.error is None, row
    assert row.health.startswith("no agent"), row  # this machine runs none at /srv/mcp/mcp-agent.sock


class _CountingNode(LocalNode):
    """This machine, counting the commands run on it (the probe is one)."""

    def __init__(self) -> None:
        self.commands = 0

    async def forward_unix(self, remote_path: str) -> str:
        return remote_path

    async def run(self, command: Any, **kwargs: Any) -> RunResult:
        self.commands += 1
        return await super().run(command, **kwargs)


def test_status_probes_a_node_only_when_its_agent_does_not_serve(tmp_path: Path, monkeypatch: Any) -> None:
    """`mcfleet status` has the binary, unit and manifest from its facts: a serving agent's answer is the
    whole row (no probe, which runs the node helper four times); one that does not serve is probed, to
    say why."""
    import mcfleet.apply.status as status_module
    from mcfleet.apply.health import AgentHealth

    case = json.loads((CASES / "drift-repairs-leave-the-manifest-alone.json").read_text())
    entry = write_case_fleet(tmp_path / "fleet", case).hosts["rift"]
    answer = AgentHealth(serving=True, version="0.9.1", bundle_sha256="ab" * 32)

    async def health(node: Any, entry: HostEntry) -> AgentHealth:
        return answer

    def row(node: _CountingNode, **kwargs: Any) -> Any:
        class _Pool:
            async def connect(self, entry: HostEntry) -> _CountingNode:
                return node

        return asyncio.run(host_status(_Pool(), entry, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(status_module, "agent_health", health)
    quiet = _CountingNode()
    got = row(quiet, probe_if_serving=False)
    assert (got.health, got.version, got.running_sha256, quiet.commands) == ("SERVING", "0.9.1", "ab" * 32, 0)
    probed = _CountingNode()
    assert row(probed).health == "SERVING" and probed.commands == 1  # `agent status` shows the binary and unit
    answer = AgentHealth(serving=False, error="UNAVAILABLE: Socket closed")
    silent = _CountingNode()
    got = row(silent, probe_if_serving=False)
    assert silent.commands == 1 and got.health.startswith("no agent"), got  # the probe says why: not installed
