"""A call to the agent whose connection closes mid-way (the agent or the node restarted) says so, and
what to do, instead of asking whether the agent runs (it did: it answered the call)."""

from __future__ import annotations

import asyncio
import socket as sockets
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mcfleet.agent.client import AgentClient
from mcfleet.errors import PeerError

# An Agent service whose ReconcileServices never answers: a deploy under way.
SERVER = """
import asyncio, sys
import grpc
from mcfleet.agent.proto import agent_pb2_grpc as pb_grpc

class Waits(pb_grpc.AgentServicer):
    async def ReconcileServices(self, request, context):
        await asyncio.sleep(3600)

async def main():
    server = grpc.aio.server()
    pb_grpc.add_AgentServicer_to_server(Waits(), server)
    server.add_insecure_port("unix:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


def test_an_agent_killed_during_a_deploy_call_is_said_to_have_restarted(tmp_path: Path) -> None:
    socket = tmp_path / "agent.sock"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(socket)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"

        async def deploy_while_it_dies() -> PeerError:
            async with AgentClient(str(socket)) as client:
                call = asyncio.ensure_future(client.reconcile([], prune=False))
                await asyncio.sleep(0.5)  # the call is under way
                server.kill()
                with pytest.raises(PeerError) as err:
                    await call
                return err.value

        error = asyncio.run(deploy_while_it_dies())
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert error.message.startswith("agent ReconcileServices failed: UNAVAILABLE: "), error.message
    assert error.hint is not None and error.hint.startswith("the connection to the agent closed during the call"), error
    assert "`mcfleet plan` shows what is left" in error.hint

    async def nobody_there() -> PeerError:  # no agent at all: the old question stays
        async with AgentClient(str(socket), timeout=2) as client:
            with pytest.raises(PeerError) as err:
                await client.info()
            return err.value

    assert "is mcp-agent running on the node" in (asyncio.run(nobody_there()).hint or "")


def test_a_connection_closed_before_any_answer_asks_whether_the_agent_runs(tmp_path: Path) -> None:
    """What the SSH forward's relay does when it reaches no agent (a link at the socket path, no socket):
    it takes the connection, reads the client's first bytes and closes.  grpc's words then include "Socket
    closed" too, but nothing was under way: the hint must not say the agent restarted during a call."""
    path = tmp_path / "relay.sock"
    server = sockets.socket(sockets.AF_UNIX)
    server.bind(str(path))
    server.listen(8)

    def close_each() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()

    async def ask() -> PeerError:
        async with AgentClient(str(path), timeout=2) as client:
            with pytest.raises(PeerError) as err:
                await client.info()
            return err.value

    try:
        error = asyncio.run(ask())
    finally:
        server.close()
    assert "Socket closed" in error.message and "failed to connect" in error.message, error.message
    assert error.hint == "is mcp-agent running on the node (systemctl status mcp-agent)?"
