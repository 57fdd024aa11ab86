"""What the plan says when the authoritative DNS server gives no answer: the server, the name and why, in words."""

from __future__ import annotations

import asyncio
import socket
import threading

from mcfleet.observe.dns import query_names


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
