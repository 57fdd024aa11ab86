"""The shared relay's node-side script, run here as it runs on a node (without the escalation): each
connection to its socket is piped to the target socket, both directions and the half-close; at EOF on
its stdin it removes its socket and folder and exits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.transport.relay import PER_CONNECTION, READY, SHARED


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    """A unix socket server that answers each connection with what it read, upper-cased, once the client
    half-closes (so a relay that loses the half-close would hang the test instead of passing it)."""
    path = tmp_path / "target.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)

    def answer(conn: socket.socket) -> None:
        got = b""
        while data := conn.recv(65536):
            got += data
        conn.sendall(got.upper())
        conn.close()

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    yield path
    server.close()


def _ask(path: Path, text: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(text)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while data := s.recv(65536):
            got += data
        return got


def test_each_connection_is_piped_whole_and_eof_on_stdin_cleans_up(tmp_path: Path, target: Path) -> None:
    folder = tmp_path / "relay"
    folder.mkdir(mode=0o700)
    listen = folder / "sock"
    with subprocess.Popen([sys.executable, "-c", SHARED, str(target), str(listen)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as relay:  # fmt: skip
        _served_then_cleaned(relay, listen, folder)


def _served_then_cleaned(relay: subprocess.Popen[bytes], listen: Path, folder: Path) -> None:
    try:
        assert relay.stdout is not None and relay.stdout.readline() == READY
        assert _ask(listen, b"one") == b"ONE"
        big = os.urandom(300_000).hex().encode()  # several reads and writes each way
        assert _ask(listen, big) == big.upper()
        answers: dict[int, bytes] = {}
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, _ask(listen, b"n%d" % i)))
                   for i in range(8)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert answers == {i: b"N%d" % i for i in range(8)}
        assert relay.poll() is None  # one relay served them all
        assert relay.stdin is not None
        relay.stdin.close()  # the SSH channel closed
        assert relay.wait(10) == 0
        assert not folder.exists()
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()


def test_a_target_that_is_not_there_closes_that_connection_only(tmp_path: Path) -> None:
    folder = tmp_path / "relay"
    folder.mkdir(mode=0o700)
    listen = folder / "sock"
    with subprocess.Popen([sys.executable, "-c", SHARED, str(tmp_path / "nothing.sock"), str(listen)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as relay:  # fmt: skip
        try:
            assert relay.stdout is not None and relay.stdout.readline() == READY
            started = time.monotonic()
            for _ in range(2):  # closed at once without an answer, and the relay still serves the next one
                try:
                    answer = _ask(listen, b"x")
                except (BrokenPipeError, ConnectionResetError):
                    answer = b""
                assert answer == b""
            assert time.monotonic() - started < 5 and relay.poll() is None
        finally:
            relay.kill()


def test_a_link_at_the_target_path_is_not_followed_by_either_relay(tmp_path: Path, target: Path) -> None:
    """The target's folder may be the agent account's: a link it puts there (to another root-only socket)
    is refused, as is anything but a socket; the real socket behind the same path works."""
    link = tmp_path / "agent.sock"
    link.symlink_to(target)
    per = subprocess.run([sys.executable, "-c", PER_CONNECTION, str(link)], input=b"x", capture_output=True,
                         timeout=10, check=False)  # fmt: skip
    assert per.returncode != 0 and per.stdout == b"" and b"not a socket" in per.stderr
    per = subprocess.run([sys.executable, "-c", PER_CONNECTION, str(target)], input=b"x", capture_output=True,
                         timeout=10, check=False)  # fmt: skip
    assert per.returncode == 0 and per.stdout == b"X"

    folder = tmp_path / "relay"
    folder.mkdir(mode=0o700)
    listen = folder / "sock"
    with subprocess.Popen([sys.executable, "-c", SHARED, str(link), str(listen)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as relay:  # fmt: skip
        try:
            assert relay.stdout is not None and relay.stdout.readline() == READY
            try:
                answer = _ask(listen, b"x")
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
            assert answer == b""  # the echo server behind the link never answered
        finally:
            relay.kill()
