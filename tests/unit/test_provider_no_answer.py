"""A change sent to a peer that does not answer is NoAnswer (it may still be carried out, so the steps
record it as unconfirmed); a read that does not answer, or a peer that refuses, is a plain failure."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.fleet.models import CaddyProvider
from mcfleet.providers.base import NoAnswer, ProviderError
from mcfleet.providers.http import http_json, unix_http_json
from mcfleet.providers.route.caddy import CaddyRoutes

ACCEPTED: dict[str, list[socket.socket]] = {}  # the connections each silent socket took


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and reads requests, and never answers (a hung proxy)."""
    path = str(tmp_path / "admin.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    ACCEPTED[path] = held
    yield path
    server.close()
    for conn in held:
        conn.close()


def test_a_change_that_gets_no_answer_is_no_answer_and_a_read_is_a_plain_failure(silent_socket: str) -> None:
    with pytest.raises(NoAnswer, match=r"did not answer POST /config/x within 0\.3 s"):
        unix_http_json(silent_socket, "POST", "/config/x", what="Caddy", where="s", body={}, timeout=0.3)
    with pytest.raises(ProviderError, match="did not answer GET /config/x") as read:
        unix_http_json(silent_socket, "GET", "/config/x", what="Caddy", where="s", timeout=0.3)
    assert not isinstance(read.value, NoAnswer)


def test_a_peer_that_is_not_there_is_a_plain_failure(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="is unreachable") as gone:
        unix_http_json(str(tmp_path / "none.sock"), "POST", "/x", what="Caddy", where="s", body={}, timeout=0.3)
    assert not isinstance(gone.value, NoAnswer)


def test_over_tcp_a_silent_peer_is_named_with_the_call_and_the_wait_never_with_the_tls_module() -> None:
    """A peer that takes the connection and never answers (here: not even the TLS handshake, as a stopped ACME
    server): 'did not answer GET /dir within 0.3 s', not '_ssl.c:975: The handshake operation timed out'.
    A read is a plain failure; a change is NoAnswer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()  # the kernel completes the TCP handshake; nobody ever reads
    port = server.getsockname()[1]
    try:
        with pytest.raises(ProviderError) as read:
            http_json("GET", f"https://127.0.0.1:{port}/dir", what="the ACME server", timeout=0.3)
        assert read.value.message == f"the ACME server at 127.0.0.1:{port} did not answer GET /dir within 0.3 s"
        assert not isinstance(read.value, NoAnswer)
        with pytest.raises(NoAnswer, match=r"did not answer POST /new within 0\.3 s"):
            http_json("POST", f"https://127.0.0.1:{port}/new", what="the ACME server", body={}, timeout=0.3)
    finally:
        server.close()


def test_a_caddy_that_does_not_answer_costs_one_wait_not_one_per_call(silent_socket: str) -> None:
    """The route read asks Caddy several things (certificate entries, servers, each server's routes): when
    the first gets no answer the read ends there, so a hung Caddy costs the plan one timeout, not two."""
    caddy = CaddyRoutes(CaddyProvider(kind="caddy", admin_url="unix:/srv/mc-proxy/caddy-admin.sock"),
                        local_socket=silent_socket)  # fmt: skip
    caddy.timeout = 0.3
    with pytest.raises(ProviderError, match=r"Caddy at /srv/mc-proxy/caddy-admin.sock did not answer GET .* 0\.3 s"):
        asyncio.run(caddy.list_routes())
    assert len(ACCEPTED[silent_socket]) == 1  # was 2: the certificate entries' timeout was taken for "none"
