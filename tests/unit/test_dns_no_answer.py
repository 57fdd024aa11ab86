"""What the plan says when the authoritative DNS server gives no answer: the server, the name and why, in words."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dnslib import RR, DNSRecord

from mcfleet.observe import dns as observe_dns
from mcfleet.observe import plan_notes
from mcfleet.observe.dns import query_names
from mcfleet.observe.plan_notes import one_plan


@contextlib.contextmanager
def udp_dns(answer: Callable[[DNSRecord], DNSRecord | None]) -> Iterator[int]:
    """A UDP DNS server on a loopback port (yielded) that replies `answer(query)` to each query (None: silence)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))

        def serve() -> None:
            while True:
                try:
                    query, peer = server.recvfrom(512)
                except OSError:  # closed
                    return
                reply = answer(DNSRecord.parse(query))
                if reply is not None:
                    server.sendto(reply.pack(), peer)

        threading.Thread(target=serve, daemon=True).start()
        yield int(server.getsockname()[1])


def test_a_server_that_keeps_silent_or_answers_garbage_is_named_with_the_name_it_was_asked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes the query, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        read = asyncio.run(query_names(["web.example.test"], "127.0.0.1", port, wait=0.2))
    assert read.values == {}
    assert read.error == f"127.0.0.1:{port} gave no answer for web.example.test within 0.2 s"  # was "TimeoutError: …"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as garbage:  # answers, but not DNS
        garbage.bind(("127.0.0.1", 0))
        port = garbage.getsockname()[1]

        def answer() -> None:
            _query, peer = garbage.recvfrom(512)
            garbage.sendto(b"\x00", peer)

        threading.Thread(target=answer, daemon=True).start()
        read = asyncio.run(query_names(["web.example.test"], "127.0.0.1", port, wait=2))
    assert read.error is not None
    assert read.error.startswith(f"127.0.0.1:{port} answered for web.example.test with what is not a DNS reply")


def test_the_key_check_after_a_read_that_got_no_answer_does_not_wait_again(tmp_path: Path) -> None:
    """A plan with record changes checks the TSIG key with a signed query right after its read of the server:
    when the read got no answer, the check would wait for nothing once more (10 s).  It asks nothing."""
    from mcfleet.fleet.models import Rfc2136Provider
    from mcfleet.providers.dns.rfc2136 import Rfc2136Dns

    key = tmp_path / "tsig.secret"
    key.write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n")
    key.chmod(0o600)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent, socket.socket() as tcp:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        tcp.bind(("127.0.0.1", port))  # where the signed check would go (DNS over TCP): it counts who comes
        tcp.listen()
        tcp.settimeout(0.1)
        provider = Rfc2136Provider(kind="rfc2136", server="127.0.0.1", port=port, key_name="k", key_file=str(key))
        with one_plan():
            asyncio.run(query_names(["web.example.test"], "127.0.0.1", port, wait=0.2))
            assert asyncio.run(Rfc2136Dns(provider, "example.test").key_refusal()) is None
        with pytest.raises(TimeoutError):
            tcp.accept()  # nobody came
        # That plan is over: a check after it (or by a caller that is not planning) asks the server.
        asyncio.run(query_names(["web.example.test"], "127.0.0.1", port, wait=0.2))
        done = threading.Event()

        def hang_up() -> None:  # takes the signed query's connection and closes it: the check asked
            tcp.settimeout(5)
            conn, _ = tcp.accept()
            conn.close()
            done.set()

        threading.Thread(target=hang_up, daemon=True).start()
        assert asyncio.run(Rfc2136Dns(provider, "example.test").key_refusal()) is None  # no answer: not the key
        assert done.wait(5)  # was: the note an earlier read left made it ask nothing


def test_a_ca_bundle_under_the_home_folder_is_found_and_one_that_is_not_pem_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fleet.json keeps `~/…` as written: the plan's requests to a provider (the ACME directory, MCNS) load it
    from the operator's home (was: an OSError out of the plan); a file that is not PEM is an error naming it."""
    from mcfleet.providers.base import ProviderError
    from mcfleet.providers.http import tls_context
    from tests.certs import self_signed

    monkeypatch.setenv("HOME", str(tmp_path))
    self_signed("ca.example.test", tmp_path, stem="ca")
    assert tls_context("~/ca.pem").cert_store_stats()["x509_ca"] == 1
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ProviderError, match=r"cannot load the CA bundle ~/junk.pem \(ca_file in fleet.json"):
        tls_context("~/junk.pem")


def test_one_lost_query_is_not_a_server_down(tmp_path: Path) -> None:
    """Only a read where no name got an answer notes the server as down for the key check: one lost UDP query
    among answered ones leaves the check to ask (and name a key the server rejects)."""

    def a_only(query: DNSRecord) -> DNSRecord | None:  # answers for a.example.test only
        reply = query.reply()
        if not str(reply.q.qname).startswith("a."):
            return None
        reply.add_answer(*RR.fromZone(f"{reply.q.qname} 60 A 10.0.0.1"))
        return reply

    with udp_dns(a_only) as port, one_plan():
        read = asyncio.run(query_names(["a.example.test", "b.example.test"], "127.0.0.1", port, wait=0.3))
        assert read.error is not None and read.values == {"a.example.test": ["10.0.0.1"]}
        assert not plan_notes.take(observe_dns.unanswered("127.0.0.1", port))


def test_a_server_that_closes_the_tcp_connection_is_named_not_a_traceback(tmp_path: Path) -> None:
    """Something at providers.dns.server/port that takes the TCP connection and closes it (not a DNS server,
    or one restarting): the update is a NoAnswer naming the server (it was sent: the server may have carried it
    out; was: dnspython's EOFError out of apply), and the key check says nothing against the key."""
    from mcfleet.fleet.models import Rfc2136Provider
    from mcfleet.providers.base import NoAnswer
    from mcfleet.providers.dns.rfc2136 import Rfc2136Dns

    key = tmp_path / "tsig.secret"
    key.write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n")
    key.chmod(0o600)
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]

        def hang_up() -> None:
            while True:
                try:
                    conn, _ = tcp.accept()
                except OSError:  # closed
                    return
                with conn:  # reads the whole message first: a close with unread data would be a reset
                    size = int.from_bytes(conn.recv(2, socket.MSG_WAITALL), "big")
                    conn.recv(size, socket.MSG_WAITALL)

        threading.Thread(target=hang_up, daemon=True).start()
        provider = Rfc2136Provider(kind="rfc2136", server="127.0.0.1", port=port, key_name="k", key_file=str(key))
        dns = Rfc2136Dns(provider, "example.test")
        with pytest.raises(NoAnswer, match=rf"127.0.0.1:{port} closed the connection without answering"):
            asyncio.run(dns.set_a("web.example.test", "10.0.0.1"))  # sent: the server may have carried it out
        assert asyncio.run(dns.key_refusal()) is None


def test_an_answer_without_authority_is_not_read_as_the_zones_records() -> None:
    """A resolver at providers.dns.server/port answers from its cache (no AA flag): what it says is not what
    the zone holds, and the read fails naming that (was: its cached A record read as the zone's)."""

    def from_cache(query: DNSRecord) -> DNSRecord:
        reply = query.reply(aa=0)
        reply.add_answer(*RR.fromZone(f"{reply.q.qname} 60 A 10.0.0.1"))
        return reply

    with udp_dns(from_cache) as port, one_plan():
        read = asyncio.run(query_names(["web.example.test"], "127.0.0.1", port, wait=2))
        assert not plan_notes.take(observe_dns.unanswered("127.0.0.1", port))  # it answered: the key is asked
    assert read.values == {}
    assert read.error == (
        f"127.0.0.1:{port} is not authoritative for web.example.test (its answer lacks the AA flag): "
        "providers.dns.server/port must name the zone's primary server, and fleet.json `zone` a zone it serves"
    )
