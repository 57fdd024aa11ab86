"""A service this apply removes that holds a host port a declared service now takes is stopped before the
deploy: its removal runs after the routes', and until then the other service's new container could not
bind the port (the deploy failed, every apply again, until someone stopped it by hand)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mcfleet.fleet.desired import desired_state
from mcfleet.kinds.base import PLANNED
from mcfleet.kinds.service import ServiceKind
from mcfleet.observe.manifest import Manifest, ManifestService
from mcfleet.phase import Phase
from mcfleet.plan.model import Action
from tests.unit.test_service_inactive import fleet


class Agent:
    """The agent's calls as the deploy makes them, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def stop(self, name: str) -> Any:
        self.calls.append(f"stop {name}")
        return SimpleNamespace(ok=True, error="")

    async def reconcile(self, services: Any, *, prune: bool, stage_timeout_s: float) -> Any:
        self.calls.append("reconcile " + ",".join(s.name for s, _ in services))
        return SimpleNamespace(ok=True, error="", actions=[])

    async def busy(self) -> None:
        return None


def _deploy(tmp_path: Path, old_ports: dict[str, int]) -> tuple[list[str], Any]:
    loaded = fleet(tmp_path, True)
    d = desired_state(loaded)["rift"]
    gone = Action(host="rift", phase=Phase.deploy, kind="delete", subject="service old", reason="no longer declared")
    manifest = Manifest(services={"old": ManifestService(hash="h", containers=["old"], ports=old_ports)})
    ctx = SimpleNamespace(desired=d, data={PLANNED: [gone]}, entry=loaded.hosts["rift"], manifest=manifest,
                          node=None)  # fmt: skip
    agent = Agent()
    outcome = asyncio.run(ServiceKind()._deploy(ctx, agent, {"web"}))  # type: ignore[arg-type]
    return agent.calls, outcome


def test_a_removed_service_holding_a_port_another_now_takes_is_stopped_before_the_deploy(tmp_path: Path) -> None:
    web_port = next(iter(desired_state(fleet(tmp_path / "a", True))["rift"].services["web"].ports.values()))
    calls, outcome = _deploy(tmp_path / "b", {"old/0": web_port})
    assert calls == ["stop old", "reconcile web"], calls
    assert outcome.message.startswith(f"old stopped first: it held port {web_port}, which web now takes"), outcome
    calls, _outcome = _deploy(tmp_path / "c", {"old/0": 1})  # no clash: left for its removal, after the routes
    assert calls == ["reconcile web"], calls
