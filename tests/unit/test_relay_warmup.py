"""The relays to the node sockets the reads will reach (the agent's, the proxies' admin sockets) start while
the facts script runs, on hosts whose files give them services or routes; never on a host given neither."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from mcfleet.fleet.load import HostEntry
from mcfleet.kinds import KINDS
from mcfleet.observe.collect import gather
from mcfleet.observe.facts import Facts
from mcfleet.transport.base import RunResult
from mcfleet.transport.local import LocalNode
from tests.unit.test_plan_cases import CASES, write_case_fleet


class _Node(LocalNode):
    """This machine, reached as if through SSH: its facts script answers only once the relays it is to run
    beside were asked for (`waits_for`), so a relay started after the batch never lets it finish."""

    address = "127.0.0.1"

    def __init__(self, waits_for: int) -> None:
        self.waits_for = waits_for
        self.forwarded: list[str] = []  # asked for while the facts script ran
        self.ran = False
        self.asked = asyncio.Event()

    async def forward_unix(self, remote_path: str) -> str:
        if not self.ran:
            self.forwarded.append(remote_path)
        if len(self.forwarded) >= self.waits_for:
            self.asked.set()
        return remote_path

    async def run(self, command: Any, **kwargs: Any) -> RunResult:
        if self.waits_for:
            await asyncio.wait_for(self.asked.wait(), timeout=5)
        try:
            return await super().run(command, **kwargs)
        finally:
            self.ran = True


class _Pool:
    def __init__(self, nodes: dict[str, _Node]) -> None:
        self.nodes = nodes

    async def connect(self, entry: HostEntry) -> _Node:
        return self.nodes[entry.host.name]

    async def close(self) -> None:
        pass


def test_the_relays_start_beside_the_facts_batch_on_hosts_given_work(tmp_path: Path) -> None:
    case: dict[str, Any] = copy.deepcopy(
        json.loads((CASES / "drift-repairs-leave-the-manifest-alone.json").read_text())
    )
    case["fleet"]["providers"]["route_l4"] = {
        "kind": "haproxy",
        "admin_socket": "/srv/mc-proxy/haproxy.sock",
        "map_file": "/srv/mc-proxy/haproxy.map",
    }
    case["hosts"]["bare"] = {}  # no services, no routes
    loaded = write_case_fleet(tmp_path / "fleet", case)
    nodes = {"rift": _Node(waits_for=3), "bare": _Node(waits_for=0)}

    facts = asyncio.run(gather(loaded, ["rift", "bare"], pool=_Pool(nodes), kinds=KINDS))  # type: ignore[arg-type]

    assert all(isinstance(f, Facts) for f in facts.values()), facts
    agent = loaded.hosts["rift"].host.agent.socket
    assert sorted(nodes["rift"].forwarded) == sorted(
        [agent, "/srv/mc-proxy/caddy-admin.sock", "/srv/mc-proxy/haproxy.sock"]
    )
    assert nodes["bare"].forwarded == []  # its agent may not even be installed yet
