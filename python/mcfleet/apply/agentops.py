"""One agent operation on one host: recover, or restart/stop/start one service.

    report = await agent_op(session, "rift", "recover", overrides=[])
    report = await agent_op(session, "rift", "restart", service="mcq", overrides=[])

Each goes through the same refusal gate as apply (the host is observed and planned
first; a refused plan changes nothing), then asks the host's agent over the forwarded
socket.  `recover` recreates every container from the agent's registry in boot-stage
order, volumes untouched (what to run when podman's state was lost); the report says,
per stage, which containers were recreated and whether the stage got healthy.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from mcfleet.agent.client import AgentClient
from mcfleet.apply.events import Phase, Status
from mcfleet.apply.planwork import Override
from mcfleet.apply.session import ApplySession
from mcfleet.errors import ApplyError, PeerError
from mcfleet.fleet.models import Stage
from mcfleet.kinds.service import agent_socket, agent_unreached, failing_checks, heartbeat, waiting_behind
from mcfleet.transport.base import Node

T = TypeVar("T")

OPERATIONS = ("recover", "restart", "stop", "start")
LONG_TIMEOUT = 900.0


@dataclass(frozen=True)
class StageReport:
    stage: str
    services: list[str]
    containers: list[str]  # what the agent did, "<kind> <container>"
    healthy: bool


@dataclass
class AgentOpReport:
    host: str
    operation: str
    ok: bool
    error: str = ""
    service: str | None = None
    stages: list[StageReport] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the whole command: connect, observe and plan (the refusal gate), the agent's work
    agent_seconds: float = 0.0  # the agent's own work (the one RPC)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        what = f"{self.operation} {self.service}" if self.service else self.operation
        lines = [
            f"{self.host}: {what}: {'ok' if self.ok else 'FAILED'} in {self.seconds:.1f} s "
            f"(the agent's part {self.agent_seconds:.1f} s)"
        ]
        for s in self.stages:
            state = "healthy" if s.healthy else "not healthy"
            lines.append(f"  {s.stage}: {state}: {', '.join(s.containers) or 'nothing to do'}")
        if not self.stages and self.actions and self.actions != [what]:  # not the head line again
            lines.append("  " + ", ".join(self.actions))
        if self.error:
            lines.append(f"  error: {self.error}")
            if self.service and "healthy" in self.error:  # its container's output says why
                lines.append(f"  see: mcfleet logs {self.host} {self.service}")
        return "\n".join(lines)


def stage_reports(registry: list[dict[str, Any]], actions: list[Any], healthy: list[str]) -> list[StageReport]:
    stage_of = {str(e.get("name")): str(e.get("stage")) for e in registry}
    out = []
    for stage in Stage:
        services = sorted(n for n, s in stage_of.items() if s == stage)
        if not services:
            continue
        done = [
            f"{a.kind} {a.container}" for a in actions if stage_of.get(a.service) == stage and a.kind != "unchanged"
        ]
        out.append(StageReport(stage.value, services, done, stage.value in healthy))
    return out


async def agent_op(
    session: ApplySession, host: str, operation: str, *, service: str | None = None, overrides: list[Override]
) -> AgentOpReport:
    if operation not in OPERATIONS:
        raise ValueError(operation)
    started = time.monotonic()
    await session.gate([host], overrides)
    entry = session.loaded.hosts[host]
    node = await session.connect(entry)
    try:
        return await _agent_op(session, node, host, operation, service=service, started=started)
    except PeerError as exc:
        raise await agent_unreached(node, entry.host.agent.socket, entry.host.agent.unit, exc) from None


async def _agent_op(
    session: ApplySession, node: Node, host: str, operation: str, *, service: str | None, started: float
) -> AgentOpReport:
    entry = session.loaded.hosts[host]
    target = await agent_socket(node, entry.host.agent.socket)
    async with AgentClient(target, long_timeout=LONG_TIMEOUT) as client:
        asked = time.monotonic()

        def say(text: str) -> None:
            session.log.emit(host, Phase.deploy, Status.progress, text)

        def waiting(work: Awaitable[T], what: str) -> Awaitable[T]:
            """The call, with a line every 10 s while the agent waits for health checks (up to its
            stage timeout, 120 s): what it waits behind, or which checks fail so far and why."""
            return heartbeat(work, say, what, lambda: waiting_behind(client), lambda: failing_checks(client))

        if operation == "recover":
            reply = await waiting(client.recover(), "recover")
            agent_seconds = time.monotonic() - asked
            registry = (await client.facts(events=0)).get("registry", [])
            report = AgentOpReport(host, operation, reply.ok, reply.error)
            report.stages = stage_reports(registry, list(reply.actions), list(reply.stages_healthy))
            actions = list(reply.actions)
        else:
            if service is None:
                raise ApplyError(f"agent {operation} needs a service", location=host)
            call = {"restart": client.restart, "stop": client.stop, "start": client.start}[operation]
            answer = await waiting(call(service), f"{operation} {service}")
            agent_seconds = time.monotonic() - asked
            report = AgentOpReport(host, operation, answer.ok, answer.error, service=service)
            actions = list(answer.actions)
        report.actions = [f"{a.kind} {a.container}" for a in actions]
    report.seconds, report.agent_seconds = time.monotonic() - started, agent_seconds
    return report
