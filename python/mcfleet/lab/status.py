"""`mcfleet lab status`: every node and peer with its PID and whether it is healthy."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from mcfleet.lab import proc
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.state import LabState

# How long a peer has to answer.  The kernel accepts a TCP connection (and queues a unix one) for a process
# that is stopped (SIGSTOP) or hung: only its first answer says that the program itself runs.
ANSWER_S = 2.0
HTTP_GET = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"


async def _first_answer(
    host: str, port: int, hello: bytes = b"", *, tls: bool = False, unix: str | None = None
) -> bytes:
    """The first bytes the program at host:port (or the unix socket `unix`) sends, after `hello` (with
    `tls`, once its handshake is done: the handshake is an answer too); b"" when it refuses, or accepts and
    says nothing within ANSWER_S."""

    async def talk() -> bytes:
        if unix is not None:
            reader, writer = await asyncio.open_unix_connection(unix)
        else:
            context = None
            if tls:  # whether it answers, not whom it is: the lab CA is not asked for
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            if hello:
                writer.write(hello)
                await writer.drain()
            return await reader.read(256)
        finally:
            writer.transport.abort()  # no goodbye to wait for from a peer that may stop answering

    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        return await asyncio.wait_for(talk(), ANSWER_S)
    return b""


async def _dns_answers(server: str, port: int, zone: str) -> bool:
    """Whether the DNS server answers a query for the zone's SOA over UDP (any answer: it runs)."""
    import dns.asyncquery
    import dns.exception
    import dns.message

    query = dns.message.make_query(zone or ".", "SOA")
    try:
        await dns.asyncquery.udp(query, server, port=port, timeout=ANSWER_S)
    except (dns.exception.DNSException, OSError, ValueError):
        return False
    return True


async def _sshd_answers(host: str, port: int) -> bool:
    """Whether sshd sends its banner (`SSH-2.0-…`), which it does first on every connection."""
    return (await _first_answer(host, port)).startswith(b"SSH-")


async def _node_status(node: LabNode) -> dict[str, Any]:
    running = proc.alive(node.main_pid)
    ssh_ok = running and await _sshd_answers(node.address, node.ssh_port)
    return {
        "name": node.name,
        "kind": node.kind,
        "address": node.address,
        "netns": node.netns,
        "pid": node.main_pid,
        "sshd_pid": node.sshd_pid,
        "running": running,
        "ssh": ssh_ok,
        "healthy": running and ssh_ok,
    }


def _host_port(url: str) -> tuple[str, int] | None:
    """host and port of an http(s) URL (the scheme's port when it names none); None for any other."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is no number
        return None


async def _peer_answers(name: str, info: dict[str, Any], host: str, port: str) -> bool:
    """Whether the peer's program answers in its protocol: Knot a DNS query, HAProxy its runtime API, Caddy
    and Pebble HTTP(S), the registry a TLS handshake; any other a TCP connection that is accepted."""
    if name == "knot" and port.isdecimal():
        return await _dns_answers(str(info.get("server") or host), int(port), str(info.get("zone") or ""))
    if name == "haproxy" and info.get("admin_socket"):
        said = await _first_answer("", 0, b"show info\n", unix=str(info["admin_socket"]))
        return b"Name:" in said
    url = str(info.get("admin_url") or info.get("directory") or "")
    if url and (where := _host_port(url)) is not None:
        said = await _first_answer(*where, HTTP_GET, tls=url.startswith("https:"))
        return said.startswith(b"HTTP/")
    if name == "registry" and port.isdecimal():
        said = await _first_answer(host, int(port), HTTP_GET, tls=True)
        return said.startswith(b"HTTP/")
    if port.isdecimal():  # a peer whose protocol is not known here: the connection alone
        with contextlib.suppress(OSError, TimeoutError):
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), ANSWER_S)
            writer.transport.abort()
            return True
        return False
    return True  # nowhere to ask: its process runs


async def _peer_status(name: str, info: dict[str, Any]) -> dict[str, Any]:
    running = proc.alive(int(info["pid"]))
    # where it listens: a port on 127.0.0.1 (Knot, HAProxy) or a host:port (the registry, on the bridge)
    if "port" in info:
        host, port = "127.0.0.1", str(info["port"])
    else:
        host, _, port = str(info.get("address", "")).rpartition(":")
    where = info.get("directory") or info.get("admin_url") or info.get("admin_socket")
    endpoint = where or (f"{host}:{port}" if port else "-")
    answers = running and await _peer_answers(name, info, host, port)
    return {"name": name, "pid": info["pid"], "endpoint": endpoint, "running": running, "healthy": answers}


async def lab_status(state: LabState) -> dict[str, Any]:
    nodes = [LabNode.from_dict(d) for d in state.info.get("nodes", {}).values()]
    peers = state.info.get("peers", {})
    node_rows = await asyncio.gather(*(_node_status(n) for n in sorted(nodes, key=lambda n: n.index)))
    peer_rows = await asyncio.gather(*(_peer_status(n, i) for n, i in sorted(peers.items())))
    net = state.info.get("network")
    return {
        "up": bool(state.resources),
        "network": net,
        "nodes": list(node_rows),
        "peers": list(peer_rows),
        "healthy": bool(state.resources) and all(r["healthy"] for r in [*node_rows, *peer_rows]),
    }
