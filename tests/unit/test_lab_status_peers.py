"""`lab status` of a peer: where it listens and whether it answers there (the registry gives host:port)."""

from __future__ import annotations

import asyncio
import os
import socket

from mcfleet.lab.status import _peer_status


def test_a_peer_with_an_address_is_shown_and_probed_there() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        up = asyncio.run(_peer_status("registry", {"pid": os.getpid(), "address": f"127.0.0.1:{port}"}))
    assert up["endpoint"] == f"127.0.0.1:{port}" and up["healthy"] is True  # was "127.0.0.1:None", never probed
    down = asyncio.run(_peer_status("registry", {"pid": os.getpid(), "address": f"127.0.0.1:{port}"}))
    assert down["running"] is True and down["healthy"] is False  # the process runs, nothing listens


def test_a_peer_with_a_port_or_a_url() -> None:
    knot = asyncio.run(_peer_status("knot", {"pid": os.getpid(), "server": "127.0.0.1", "port": 1}))
    assert knot["endpoint"] == "127.0.0.1:1" and knot["healthy"] is False
    pebble = asyncio.run(_peer_status("pebble", {"pid": os.getpid(), "directory": "https://localhost:1/dir"}))
    assert pebble["endpoint"] == "https://localhost:1/dir" and pebble["healthy"] is True  # the process runs
