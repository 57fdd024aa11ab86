"""The tcp health check on real sockets: a port that accepts and closes at once is what rootless
podman's port forwarder does when nothing listens in the container, and must not pass."""

from __future__ import annotations

import asyncio
import socket

import pytest

from mcfleet.agent.health import _tcp


async def _served(on_client: str) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if on_client == "banner":
            writer.write(b"SSH-2.0-test\r\n")
            await writer.drain()
        if on_client in ("close", "reset"):
            if on_client == "reset":  # SO_LINGER 0: the close sends RST
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.close()
            await writer.wait_closed()
            return
        await reader.read()  # a server waiting for its client, until the check hangs up
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("behaviour", ["silent", "banner"])
def test_a_program_that_keeps_the_connection_passes(behaviour: str) -> None:
    async def run() -> None:
        server, port = await _served(behaviour)
        async with server:
            await _tcp("127.0.0.1", port)

    asyncio.run(run())


@pytest.mark.parametrize("behaviour", ["close", "reset"])
def test_a_port_that_accepts_and_closes_at_once_fails_saying_so(behaviour: str) -> None:
    """Was: passed (a bare connect), so a crash-looping container behind rootlessport counted as healthy."""

    async def run() -> None:
        server, port = await _served(behaviour)
        async with server:
            with pytest.raises(ConnectionError, match=f"port {port} accepted the connection and closed it at once"):
                await _tcp("127.0.0.1", port)

    asyncio.run(run())


def test_a_closed_port_fails() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(OSError):
            asyncio.run(_tcp("127.0.0.1", port))
