"""The kinds' reads of a node that the files alone call for (the agent's containers on a host given services or
routes, the proxies' live routes on a host given routes) start beside the host's facts script, and `read`
takes their answers instead of asking again; a host given neither is asked nothing early.  A node's
proxies (route and route_l4) are asked at once."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import HostEntry
from mcfleet.fleet.models import CaddyProvider, HaproxyProvider
from mcfleet.kinds import KINDS
from mcfleet.kinds.base import ReadContext
from mcfleet.kinds.service import ServiceKind
from mcfleet.observe.collect import gather
from mcfleet.observe.facts import AgentFacts, Facts
from mcfleet.plan.planner import plan_fleet
from mcfleet.providers import steps
from mcfleet.providers.base import ProviderError
from mcfleet.providers.route.base import ProxyRoute
from mcfleet.transport.base import RunResult
from mcfleet.transport.local import LocalNode
from tests.unit.test_plan_cases import CASES, write_case_fleet


class _Node(LocalNode):
    """This machine, reached as if through SSH: its facts script (the first command) answers only once the
    node sockets it is to run beside were asked for (`waits_for`), so a read started after the batch never
    lets it finish."""

    address = "127.0.0.1"

    def __init__(self, waits_for: int) -> None:
        self.waits_for = waits_for
        self.forwarded: list[str] = []  # asked for while the facts script ran
        self.facts_done = False
        self.asked = asyncio.Event()

    async def forward_unix(self, remote_path: str) -> str:
        if not self.facts_done:
            self.forwarded.append(remote_path)
        if len(self.forwarded) >= self.waits_for:
            self.asked.set()
        return remote_path  # nothing listens there: the reads fail, and say why

    async def run(self, command: Any, **kwargs: Any) -> RunResult:
        if self.facts_done:  # what the failed reads ask about the socket
            return await super().run(command, **kwargs)
        if self.waits_for:
            await asyncio.wait_for(self.asked.wait(), timeout=5)
        try:
            return await super().run(command, **kwargs)
        finally:
            self.facts_done = True


class _Pool:
    def __init__(self, nodes: dict[str, Any]) -> None:
        self.nodes = nodes

    async def connect(self, entry: HostEntry) -> Any:
        return self.nodes[entry.host.name]

    async def close(self) -> None:
        pass


def _fleet(tmp_path: Path) -> Any:
    case: dict[str, Any] = copy.deepcopy(
        json.loads((CASES / "drift-repairs-leave-the-manifest-alone.json").read_text())
    )
    case["fleet"]["providers"]["route_l4"] = {
        "kind": "haproxy",
        "admin_socket": "/srv/mc-proxy/haproxy.sock",
        "map_file": "/srv/mc-proxy/haproxy.map",
    }
    case["hosts"]["bare"] = {}  # no services, no routes
    return write_case_fleet(tmp_path / "fleet", case)


def test_the_reads_the_files_call_for_start_beside_the_facts_batch(tmp_path: Path) -> None:
    loaded = _fleet(tmp_path)
    nodes = {"rift": _Node(waits_for=3), "bare": _Node(waits_for=0)}

    facts = asyncio.run(gather(loaded, ["rift", "bare"], pool=_Pool(nodes), kinds=KINDS))  # type: ignore[arg-type]

    assert all(isinstance(f, Facts) for f in facts.values()), facts
    agent = loaded.hosts["rift"].host.agent.socket
    assert sorted(nodes["rift"].forwarded) == sorted(
        [agent, "/srv/mc-proxy/caddy-admin.sock", "/srv/mc-proxy/haproxy.sock"]
    )
    assert nodes["bare"].forwarded == []  # its agent may not even be installed yet


def test_the_read_takes_the_early_answer_instead_of_asking_again(tmp_path: Path) -> None:
    loaded = _fleet(tmp_path)
    agent = AgentFacts(path="/srv/mcp/mcp-agent", present=True, unit_active="active", systemd=True)
    observed: dict[str, Any] = {"rift": Facts(host="rift", agent=agent)}
    answer = {"containers": [{"name": "web-web", "image": "mcr.example/web:1.2", "state": "running"}]}

    class _NoPool:
        async def connect(self, entry: HostEntry) -> Any:
            raise AssertionError(f"{entry.host.name}'s agent asked again")

    async def run() -> Any:
        early: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        early.set_result(answer)
        ctx = ReadContext(loaded, desired_state(loaded), _NoPool(), {"service": {"rift": early}})  # type: ignore[arg-type]
        return await ServiceKind().read(ctx, observed)

    rift = asyncio.run(run())["rift"]
    assert [(c.name, c.image, c.state) for c in rift.containers] == [("web-web", "mcr.example/web:1.2", "running")]


class _Proxy:
    """A route backend whose read answers only once the other proxy's read has started too."""

    def __init__(self, key: str, started: asyncio.Event, other: asyncio.Event, fails: bool = False) -> None:
        self.key, self.started, self.other, self.fails = key, started, other, fails

    async def list_routes(self) -> dict[str, ProxyRoute]:
        self.started.set()
        await asyncio.wait_for(self.other.wait(), timeout=5)  # asked one after the other: never set
        if self.fails:
            raise ProviderError(f"{self.key} refused")
        return {self.key: ProxyRoute(443, self.key, "10.0.0.1:1", "l4")}


def test_the_proxies_of_a_node_are_asked_at_once_and_the_first_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = _fleet(tmp_path)
    node = _Node(waits_for=0)

    def read(caddy_fails: bool, haproxy_fails: bool) -> Any:
        async def run() -> Any:
            caddy_started, haproxy_started = asyncio.Event(), asyncio.Event()
            backends = {
                CaddyProvider: _Proxy("caddy", caddy_started, haproxy_started, caddy_fails),
                HaproxyProvider: _Proxy("haproxy", haproxy_started, caddy_started, haproxy_fails),
            }

            async def open_backend(provider: Any, _node: Any) -> _Proxy:
                return backends[type(provider)]

            async def no_problem(*_args: Any) -> None:
                return None

            monkeypatch.setattr(steps, "open_route_backend", open_backend)
            monkeypatch.setattr(steps, "no_socket", no_problem)
            return await steps.read_proxies(loaded, node)

        return asyncio.run(run())

    assert sorted(read(False, False).routes) == ["caddy", "haproxy"]
    with pytest.raises(ProviderError, match="caddy refused"):  # the route provider's, as when asked first
        read(True, True)
    with pytest.raises(ProviderError, match="haproxy refused"):
        read(False, True)


def test_a_plan_says_when_each_host_is_connected_before_its_facts_are_back(tmp_path: Path) -> None:
    """status starts its agent questions from this: beside the host's facts, not after every host's plan."""
    loaded = _fleet(tmp_path)
    nodes = {"rift": _Node(waits_for=0), "bare": _Node(waits_for=0)}
    seen: list[tuple[str, bool]] = []

    def connected(host: str) -> None:
        seen.append((host, nodes[host].facts_done))

    _plan, facts = asyncio.run(
        plan_fleet(loaded, ["rift", "bare"], pool=_Pool(nodes), kinds=KINDS, connected=connected)  # type: ignore[arg-type]
    )

    assert sorted(seen) == [("bare", False), ("rift", False)]
    assert all(isinstance(f, Facts) for f in facts.values()), facts
