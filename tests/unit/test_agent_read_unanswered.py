"""The service kind's early read of a node's agent (started beside the facts script, before the facts say
whether the host has an agent at all) runs no command on the node when the call fails: what is at the
agent's socket is asked (one command) only where the read's answer is used."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from mcfleet.fleet.load import HostEntry
from mcfleet.kinds.service import Unanswered, agent_containers, asked_containers, said_containers
from mcfleet.transport.base import RunResult
from mcfleet.transport.local import LocalNode
from tests.unit.test_plan_cases import CASES, write_case_fleet


class _Node(LocalNode):
    """This machine, reached as if through SSH, counting the commands run on it."""

    def __init__(self, socket: Path) -> None:
        self.commands = 0
        self.socket = socket

    async def forward_unix(self, remote_path: str) -> str:
        return str(self.socket)  # nothing listens there: the agent's call fails

    async def run(self, command: Any, **kwargs: Any) -> RunResult:
        self.commands += 1
        return await super().run(command, **kwargs)


def test_a_failed_early_read_runs_no_command_and_is_explained_only_when_used(tmp_path: Path) -> None:
    case = json.loads((CASES / "drift-repairs-leave-the-manifest-alone.json").read_text())
    entry = write_case_fleet(tmp_path / "fleet", case).hosts["rift"]
    node = _Node(tmp_path / "no-agent.sock")

    class _Pool:
        async def connect(self, entry: HostEntry) -> _Node:
            return node

    got = asyncio.run(asked_containers(_Pool(), entry))  # type: ignore[arg-type]
    assert isinstance(got, Unanswered) and node.commands == 0, got
    said = asyncio.run(said_containers(got, entry))
    assert isinstance(said, str) and said.startswith("the agent did not answer (") and node.commands == 1, said
    assert asyncio.run(agent_containers(_Pool(), entry)) == said  # type: ignore[arg-type]
    assert node.commands == 2
