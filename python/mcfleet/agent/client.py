"""Async client for a running mcfleet-agent, over a unix socket path.

Usage (the orchestrator forwards the node's /srv/mcp/mcp-agent.sock to a local socket,
e.g. with asyncssh `forward_local_path`, then talks to the local path):

    async with AgentClient("/tmp/mcfleet-rift.sock", timeout=10) as agent:
        await agent.wait_serving(30)          # retries until health says SERVING
        info = await agent.info()             # version, arch, os_*, boot_id, users, bundle_sha256, boot
        facts = await agent.facts()           # dict: info, registry, containers, boot, events
        result = await agent.reconcile([(service, ports)])  # ports: fleet.derive.service_ports
        if not result.ok: print(result.error)
        await agent.stop("mcq"); await agent.start("mcq"); await agent.restart("mcq")
        await agent.recover()                 # rebuild every container from the registry

Every RPC failure (agent down, socket missing, deadline) raises `mcfleet.errors.PeerError`
naming the socket; results are the protobuf messages of proto/agent.proto.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from mcfleet.agent.grpc_words import reached_no_agent
from mcfleet.agent.proto import agent_pb2 as pb
from mcfleet.agent.proto import agent_pb2_grpc as pb_grpc
from mcfleet.agent.proto import health_pb2, health_pb2_grpc
from mcfleet.errors import PeerError
from mcfleet.fleet.models import Service

T = TypeVar("T")


# grpc's words for a connection that closed while a call was under way (measured: the agent killed
# during ReconcileServices gives UNAVAILABLE "Stream removed (Socket closed)"), as when the node reboots
LOST_MID_CALL = (
    "the connection to the agent closed during the call: mcp-agent or the node restarted. What the agent "
    "finished stays; `mcfleet plan` shows what is left, and apply again finishes it"
)


def _lost_mid_call(exc: grpc.aio.AioRpcError) -> bool:
    """A connection that closed during a call; not one closed before the agent answered anything (grpc says
    "failed to connect to all addresses": the SSH forward or the relay reached no agent, and closed)."""
    details = exc.details() or ""
    if exc.code() != grpc.StatusCode.UNAVAILABLE or reached_no_agent(details):
        return False
    return "Socket closed" in details or "Stream removed" in details


class AgentClient:
    """One channel to one agent.  `timeout` bounds quick calls (health, Info, Facts);
    `long_timeout` bounds calls that wait for containers to get healthy."""

    def __init__(self, socket_path: str, *, timeout: float = 10.0, long_timeout: float = 900.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.long_timeout = long_timeout
        self._channel = grpc.aio.insecure_channel(f"unix:{socket_path}")
        self._agent = pb_grpc.AgentStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            raise PeerError(
                f"agent {what} failed: {exc.code().name}: {exc.details()}",
                location=f"unix:{self.socket_path}",
                hint=LOST_MID_CALL
                if _lost_mid_call(exc)
                else "is mcp-agent running on the node (systemctl status mcp-agent)?",
            ) from exc

    async def health_status(self, service: str = "") -> str:
        """'SERVING' | 'NOT_SERVING' | ... for the agent ('' ) or 'boot' (all stages healthy)."""
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await self._call("health check", lambda: self._health.Check(request, timeout=self.timeout))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def wait_serving(self, within_s: float, service: str = "") -> str:
        """Poll health until SERVING; raise PeerError with the last answer after `within_s`."""
        deadline = time.monotonic() + within_s
        last = "no answer"
        while True:
            try:
                last = await self.health_status(service)
                if last == "SERVING":
                    return last
            except PeerError as exc:
                last = exc.message
            if time.monotonic() >= deadline:
                raise PeerError(f"agent not serving after {within_s:g}s: {last}", location=f"unix:{self.socket_path}")
            await asyncio.sleep(0.2)

    async def info(self) -> pb.InfoResponse:
        return await self._call("Info", lambda: self._agent.Info(pb.InfoRequest(), timeout=self.timeout))

    async def busy(self) -> pb.Work | None:
        """The change of the containers the agent is making now (None: none), from Info."""
        info = await self.info()
        return info.busy if info.HasField("busy") else None

    async def facts(self, events: int = 200, *, check_health: bool = False) -> dict[str, Any]:
        """The agent's facts; with `check_health`, also "checks": each running container's health now."""
        request = pb.FactsRequest(events=events, check_health=check_health)
        reply = await self._call("Facts", lambda: self._agent.Facts(request, timeout=self.timeout))
        result: dict[str, Any] = json.loads(reply.json)
        return result

    async def reconcile(
        self,
        services: Sequence[tuple[Service, dict[str, int]]],
        *,
        prune: bool = True,
        stage_timeout_s: float = 0.0,
    ) -> pb.ReconcileResponse:
        """Make the node run exactly `services` (its full desired set when prune=True), each with
        the host ports mcfleet assigned to its routes (`fleet.derive.service_ports`)."""
        desired = [
            # `files` are written by mcfleet (the files kind), not the agent: never sent
            pb.DesiredService(spec_json=service.model_dump_json(by_alias=True, exclude={"files"}), ports=ports)
            for service, ports in services
        ]
        request = pb.ReconcileRequest(services=desired, prune=prune, stage_timeout_s=stage_timeout_s)
        return await self._call(
            "ReconcileServices", lambda: self._agent.ReconcileServices(request, timeout=self.long_timeout)
        )

    async def stop(self, name: str) -> pb.ServiceResponse:
        request = pb.ServiceRequest(name=name)
        return await self._call("StopService", lambda: self._agent.StopService(request, timeout=self.long_timeout))

    async def start(self, name: str, stage_timeout_s: float = 0.0) -> pb.ServiceResponse:
        request = pb.ServiceRequest(name=name, stage_timeout_s=stage_timeout_s)
        return await self._call("StartService", lambda: self._agent.StartService(request, timeout=self.long_timeout))

    async def restart(self, name: str, stage_timeout_s: float = 0.0) -> pb.ServiceResponse:
        request = pb.ServiceRequest(name=name, stage_timeout_s=stage_timeout_s)
        return await self._call(
            "RestartService", lambda: self._agent.RestartService(request, timeout=self.long_timeout)
        )

    async def recover(self, stage_timeout_s: float = 0.0) -> pb.RecoverResponse:
        request = pb.RecoverRequest(stage_timeout_s=stage_timeout_s)
        return await self._call("Recover", lambda: self._agent.Recover(request, timeout=self.long_timeout))
