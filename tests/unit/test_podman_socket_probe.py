"""The agent's podman health opens a new connection to the socket first (its client's kept-alive
connection can outlive the socket: a stopped podman.service leaves a worker answering on it)."""

from __future__ import annotations

import socket
from pathlib import Path

from mcfleet.agent.podman_ops import _socket_refuses


def test_a_listening_socket_is_accepted_and_a_removed_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "podman.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        assert _socket_refuses(f"unix://{path}") == ""
    finally:
        server.close()
    assert _socket_refuses(f"unix://{path}") == "Connection refused"  # the file stays, nobody listens
    path.unlink()
    assert _socket_refuses(f"unix://{path}") == "No such file or directory"


def test_a_tcp_url_is_left_to_the_client() -> None:
    assert _socket_refuses("tcp://127.0.0.1:1") == ""
