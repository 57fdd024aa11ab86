"""`snapshot`/`restore` stop a service through its agent and start it again (apply/snapshot.py `_stopped`),
against a contract fake of the agent's gRPC API (proto/agent.proto, our own): Facts (the registry, with what
the agent keeps each service at), StopService (carried out to its end even when the caller goes away, as
the agent's `_to_the_end` does), StartService; one change of the containers at a time, as the agent's lock.

Seen by QA on a lab: Ctrl-C while the service was being stopped left it stopped (the start-again began
only after the stop's answer), and a service stopped on purpose (`mcfleet agent stop`) was started by
a snapshot."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from mcfleet.agent.proto import agent_pb2 as pb
from mcfleet.agent.proto import agent_pb2_grpc as pb_grpc
from mcfleet.apply.snapshot import _stopped
from mcfleet.errors import SnapshotError
from mcfleet.fleet.models import Agent
from mcfleet.transport.base import RunResult

SAID = "path=/var/lib/mcfleet/snapshots/db-20260101T000000Z.tar.zst bytes=10 sha256=ab"


class FakeAgent(pb_grpc.AgentServicer):  # type: ignore[misc]
    """The agent's contract as `_stopped` uses it; `hold_stop`: a stop that goes on until released."""

    def __init__(self, desired: str, *, hold_stop: bool = False, stop_error: str = "") -> None:
        self.desired = {"db": desired, "web": "running"}
        self.calls: list[str] = []
        self.stop_reached = asyncio.Event()
        self.release_stop = asyncio.Event()
        if not hold_stop:
            self.release_stop.set()
        self.stop_error = stop_error
        self.start_reached = asyncio.Event()
        self.release_start = asyncio.Event()
        self.release_start.set()
        self._lock = asyncio.Lock()
        self._work: set[asyncio.Future[Any]] = set()

    async def Facts(self, request: pb.FactsRequest, context: Any) -> pb.FactsResponse:
        registry = [{"name": n, "stage": "services", "desired": d, "ports": {}} for n, d in self.desired.items()]
        return pb.FactsResponse(json=json.dumps({"registry": registry, "containers": []}))

    async def _to_the_end(self, work: Any) -> pb.ServiceResponse:
        task = asyncio.ensure_future(work)  # the caller going away cancels the handler, not the work
        self._work.add(task)
        return await asyncio.shield(task)

    async def _known(self, name: str, context: Any) -> None:
        if name not in self.desired:  # as the agent's UnknownService
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no service {name!r} in the agent's registry")

    async def StopService(self, request: pb.ServiceRequest, context: Any) -> pb.ServiceResponse:
        await self._known(request.name, context)

        async def stop() -> pb.ServiceResponse:
            async with self._lock:
                self.calls.append(f"stop {request.name}")
                self.desired[request.name] = "stopped"  # the agent records it first, then stops the containers
                self.stop_reached.set()
                await self.release_stop.wait()
                return pb.ServiceResponse(ok=not self.stop_error, error=self.stop_error)

        return await self._to_the_end(stop())

    async def StartService(self, request: pb.ServiceRequest, context: Any) -> pb.ServiceResponse:
        await self._known(request.name, context)

        async def start() -> pb.ServiceResponse:
            async with self._lock:
                self.calls.append(f"start {request.name}")
                self.start_reached.set()
                await self.release_start.wait()  # a start waits for the service's health checks
                self.desired[request.name] = "running"
                return pb.ServiceResponse(ok=True)

        return await self._to_the_end(start())


class FakeNode:
    """A node reached through SSH: the agent's socket forwarded to a local path; the script's runs kept."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.ran: list[str] = []

    async def forward_unix(self, remote: str) -> str:
        return str(self.socket)

    async def run(self, command: str, *, timeout: float) -> RunResult:  # noqa: ASYNC109 (Node.run's signature)
        self.ran.append(command)
        return RunResult(0, SAID + "\n", "")


async def _serving(agent: FakeAgent, socket: Path) -> grpc.aio.Server:
    server = grpc.aio.server()
    pb_grpc.add_AgentServicer_to_server(agent, server)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    return server


def test_ctrl_c_while_the_service_is_being_stopped_starts_it_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    socket = tmp_path / "agent.sock"

    async def scenario() -> tuple[FakeAgent, FakeNode]:
        agent = FakeAgent("running", hold_stop=True)
        server = await _serving(agent, socket)
        node = FakeNode(socket)
        try:
            run = asyncio.ensure_future(_stopped(node, Agent(), "db", "tar …", "full1", SnapshotError))  # type: ignore[arg-type]
            await asyncio.wait_for(agent.stop_reached.wait(), 10)  # the StopService call is under way
            run.cancel()  # Ctrl-C: asyncio.run cancels the command's task
            await asyncio.sleep(0.2)
            agent.release_stop.set()  # the agent carries the stop out all the same
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(run, 10)
            return agent, node
        finally:
            await server.stop(None)

    agent, node = asyncio.run(scenario())
    assert agent.calls == ["stop db", "start db"], agent.calls  # was: ["stop db"], db left stopped
    assert agent.desired["db"] == "running"
    assert node.ran == []  # nothing archived after the Ctrl-C
    said = capsys.readouterr().err
    assert "full1: snapshot of db interrupted while db was being stopped; db was started again" in said, said


def test_a_service_stopped_before_is_snapshotted_as_it_is_and_stays_stopped(tmp_path: Path) -> None:
    socket = tmp_path / "agent.sock"

    async def scenario() -> tuple[FakeAgent, FakeNode, tuple[str, bool]]:
        agent = FakeAgent("stopped")  # `mcfleet agent stop full1 db` before
        server = await _serving(agent, socket)
        node = FakeNode(socket)
        try:
            done = await _stopped(node, Agent(), "db", "tar …", "full1", SnapshotError)  # type: ignore[arg-type]
            return agent, node, done
        finally:
            await server.stop(None)

    agent, node, done = asyncio.run(scenario())
    assert agent.calls == [], agent.calls  # was: ["stop db", "start db"], db running afterwards
    assert agent.desired["db"] == "stopped"
    assert node.ran == ["tar …"] and done == (SAID, True)


def test_a_stop_that_fails_starts_the_service_again_and_says_so(tmp_path: Path) -> None:
    socket = tmp_path / "agent.sock"

    async def scenario() -> tuple[FakeAgent, FakeNode, SnapshotError]:
        agent = FakeAgent("running", stop_error="podman: stopping db-main timed out")  # some containers stopped
        server = await _serving(agent, socket)
        node = FakeNode(socket)
        try:
            with pytest.raises(SnapshotError) as err:
                await _stopped(node, Agent(), "db", "tar …", "full1", SnapshotError)  # type: ignore[arg-type]
            return agent, node, err.value
        finally:
            await server.stop(None)

    agent, node, error = asyncio.run(scenario())
    assert agent.calls == ["stop db", "start db"] and agent.desired["db"] == "running"  # was: left stopped
    assert node.ran == []
    assert error.message == "stopping db: podman: stopping db-main timed out; db was started again", error.message
    assert error.location == "full1"


def test_a_service_the_agent_does_not_hold_is_said_so_and_nothing_is_stopped(tmp_path: Path) -> None:
    socket = tmp_path / "agent.sock"

    async def scenario() -> tuple[FakeAgent, SnapshotError]:
        agent = FakeAgent("running")
        server = await _serving(agent, socket)
        try:
            with pytest.raises(SnapshotError) as err:
                await _stopped(FakeNode(socket), Agent(), "mcq", "tar …", "full1", SnapshotError)  # type: ignore[arg-type]
            return agent, err.value
        finally:
            await server.stop(None)

    agent, error = asyncio.run(scenario())
    assert agent.calls == []
    assert error.message == "the agent holds no service mcq: nothing was stopped", error.message
    assert error.hint is not None and "mcfleet apply --on full1" in error.hint


def test_ctrl_c_while_the_service_is_being_started_again_waits_for_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    socket = tmp_path / "agent.sock"

    async def scenario() -> FakeAgent:
        agent = FakeAgent("running")
        agent.release_start.clear()
        server = await _serving(agent, socket)
        try:
            run = asyncio.ensure_future(_stopped(FakeNode(socket), Agent(), "db", "tar …", "full1", SnapshotError))  # type: ignore[arg-type]
            await asyncio.wait_for(agent.start_reached.wait(), 10)
            run.cancel()
            await asyncio.sleep(0.2)
            assert not run.done()  # the start's answer is waited for
            agent.release_start.set()
            with pytest.raises(asyncio.CancelledError):  # and the Ctrl-C goes on
                await asyncio.wait_for(run, 10)
            return agent
        finally:
            await server.stop(None)

    agent = asyncio.run(scenario())
    assert agent.calls == ["stop db", "start db"] and agent.desired["db"] == "running"
    said = capsys.readouterr().err
    assert "full1: snapshot of db interrupted while db was being started again; db was started again" in said, said
