"""`lab status` of a node and a peer: where it listens and whether its program answers there.  The kernel
accepts a connection for a process that is stopped (`kill -STOP`) or hung: a listening socket that never
says anything is such a peer, and it is not healthy (was: `ok`, exit 0)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, DNSRecord

from mcfleet.lab import status as lab_status_module
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.status import _node_status, _peer_status
from tests.unit.test_dns_no_answer import udp_dns


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_status_module, "ANSWER_S", 0.3, raising=False)


@contextmanager
def stopped_peer(family: int = socket.AF_INET, path: str = "") -> Iterator[socket.socket]:
    """A socket that listens and is never accepted from: the kernel completes the connection, nobody speaks."""
    with socket.socket(family) as listening:
        listening.bind(path or ("127.0.0.1", 0))
        listening.listen()
        yield listening


@contextmanager
def speaking_peer(
    answer: bytes, family: int = socket.AF_INET, path: str = "", context: ssl.SSLContext | None = None
) -> Iterator[socket.socket]:
    """A socket whose program accepts each connection and writes `answer` (after reading the client's first
    bytes, unless `answer` is a banner said first: sshd's), over TLS with `context`."""
    listening = socket.socket(family)
    listening.bind(path or ("127.0.0.1", 0))
    listening.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listening.accept()
            except OSError:  # closed
                return
            try:
                with context.wrap_socket(conn, server_side=True) if context else conn as talk:
                    talk.settimeout(2)
                    if not answer.startswith(b"SSH-"):
                        talk.recv(256)
                    talk.sendall(answer)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listening
    finally:
        listening.close()


def _port(s: socket.socket) -> int:
    return int(s.getsockname()[1])


def _node(port: int) -> LabNode:
    return LabNode(name="node1", kind="fast", index=0, address="127.0.0.1", ssh_port=port, netns="x",
                   host_key="", dir="/nonexistent", ns_pid=os.getpid(), main_pid=os.getpid(),
                   sshd_pid=None)  # fmt: skip


def test_a_node_whose_sshd_does_not_send_its_banner_is_down() -> None:
    with speaking_peer(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n") as sshd:
        up = asyncio.run(_node_status(_node(_port(sshd))))
    assert up["ssh"] is True and up["healthy"] is True
    with stopped_peer() as stopped:
        down = asyncio.run(_node_status(_node(_port(stopped))))
    assert down["running"] is True and down["ssh"] is False and down["healthy"] is False
    with speaking_peer(b"HTTP/1.0 400 Bad Request\r\n\r\n") as other:  # not sshd
        assert asyncio.run(_node_status(_node(_port(other))))["ssh"] is False


def _tls_context(tmp_path: Path) -> ssl.SSLContext:
    from tests.certs import self_signed

    crt, key = self_signed("localhost", tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    return context


def test_the_registry_answers_https_and_a_stopped_one_is_down(tmp_path: Path) -> None:
    with speaking_peer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", context=_tls_context(tmp_path)) as registry:
        where = f"127.0.0.1:{_port(registry)}"
        up = asyncio.run(_peer_status("registry", {"pid": os.getpid(), "address": where}))
    assert up["endpoint"] == where and up["healthy"] is True
    with stopped_peer() as stopped:
        where = f"127.0.0.1:{_port(stopped)}"
        down = asyncio.run(_peer_status("registry", {"pid": os.getpid(), "address": where}))
    assert down["running"] is True and down["healthy"] is False  # accepted, never answered
    gone = asyncio.run(_peer_status("registry", {"pid": os.getpid(), "address": where}))
    assert gone["running"] is True and gone["healthy"] is False  # the process runs, nothing listens


def test_caddy_and_pebble_answer_http_where_their_url_says(tmp_path: Path) -> None:
    with speaking_peer(b"HTTP/1.1 404 Not Found\r\n\r\n") as caddy:
        url = f"http://127.0.0.1:{_port(caddy)}"
        up = asyncio.run(_peer_status("caddy", {"pid": os.getpid(), "admin_url": url}))
    assert up["endpoint"] == url and up["healthy"] is True
    with speaking_peer(b"HTTP/1.1 200 OK\r\n\r\n", context=_tls_context(tmp_path)) as pebble:
        directory = f"https://localhost:{_port(pebble)}/dir"
        assert asyncio.run(_peer_status("pebble", {"pid": os.getpid(), "directory": directory}))["healthy"] is True
    with stopped_peer() as stopped:
        for name, key, url in (("caddy", "admin_url", "http"), ("pebble", "directory", "https")):
            info = {"pid": os.getpid(), key: f"{url}://127.0.0.1:{_port(stopped)}/dir"}
            assert asyncio.run(_peer_status(name, info))["healthy"] is False, name
    pebble_gone = asyncio.run(_peer_status("pebble", {"pid": os.getpid(), "directory": "https://localhost:1/dir"}))
    assert pebble_gone["endpoint"] == "https://localhost:1/dir" and pebble_gone["healthy"] is False


def test_knot_answers_a_dns_query_and_a_silent_one_is_down() -> None:
    def soa(query: DNSRecord) -> DNSRecord:
        reply = query.reply()
        reply.add_answer(*RR.fromZone("lab.test. 60 IN SOA ns.lab.test. admin.lab.test. 1 60 60 60 60"))
        return reply

    with udp_dns(soa) as port:
        info = {"pid": os.getpid(), "server": "127.0.0.1", "port": port, "zone": "lab.test"}
        up = asyncio.run(_peer_status("knot", info))
    assert up["endpoint"] == f"127.0.0.1:{port}" and up["healthy"] is True
    asked: list[str] = []

    def silent(query: DNSRecord) -> None:
        asked.append(f"{query.q.qname} {QTYPE[query.q.qtype]}")

    with udp_dns(silent) as port:
        info = {"pid": os.getpid(), "server": "127.0.0.1", "port": port, "zone": "lab.test"}
        down = asyncio.run(_peer_status("knot", info))
    assert down["running"] is True and down["healthy"] is False
    assert asked and asked[0] == "lab.test. SOA"


def test_haproxy_answers_on_its_runtime_api(tmp_path: Path) -> None:
    path = str(tmp_path / "haproxy.sock")
    with speaking_peer(b"Name: HAProxy\nVersion: 2.6.12\n", socket.AF_UNIX, path):
        info = {"pid": os.getpid(), "admin_socket": path, "port": 1}
        up = asyncio.run(_peer_status("haproxy", info))
    assert up["endpoint"] == path and up["healthy"] is True
    os.unlink(path)
    with stopped_peer(socket.AF_UNIX, path):
        assert asyncio.run(_peer_status("haproxy", info))["healthy"] is False
    os.unlink(path)
    assert asyncio.run(_peer_status("haproxy", info))["healthy"] is False  # no socket


def test_a_peer_whose_process_is_gone_is_down_without_asking() -> None:
    knot = asyncio.run(_peer_status("knot", {"pid": 2**22 + 1, "server": "127.0.0.1", "port": 1}))
    assert knot["endpoint"] == "127.0.0.1:1" and knot["running"] is False and knot["healthy"] is False
