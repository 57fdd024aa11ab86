"""The shared relay's node-side script, run here as it runs on a node (without the escalation): each
connection to its socket is piped to the target socket, both directions and the half-close; at EOF on
its stdin it removes its socket and folder and exits."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.transport.relay import FOLDER, PER_CONNECTION, PYTHON, READY, SHARED, start_shared


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


def _relayed(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", PER_CONNECTION, str(path)], input=b"x", capture_output=True,
                          timeout=10, check=False)  # fmt: skip


def test_a_link_on_the_way_is_followed_only_in_a_folder_only_root_can_write(tmp_path: Path, target: Path) -> None:
    """A socket configured deeper (/srv/mcp/run/agent.sock): the agent account may replace `run` with a link
    to a folder holding another root-only socket.  A link in a root-only folder (root put it there, as
    /var/run -> /run) is followed."""
    assert tmp_path.stat().st_uid == 0 and not tmp_path.stat().st_mode & 0o022  # root's 0700 test folder
    theirs = tmp_path / "srv-mcp"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # the agent account's folder, played by nobody
    (theirs / "run").symlink_to(target.parent)
    refused = _relayed(theirs / "run" / target.name)
    assert refused.returncode != 0 and refused.stdout == b"" and b"a link is not followed" in refused.stderr

    os.chmod(theirs, 0o777)
    os.chown(theirs, 0, 0)  # root's, but every account may write it: the same
    assert _relayed(theirs / "run" / target.name).stdout == b""

    (tmp_path / "var-run").symlink_to(target.parent)  # in root's own 0700 folder
    assert _relayed(tmp_path / "var-run" / target.name).stdout == b"X"

    # root's link whose target passes through the agent account's folder: that part is walked by the same
    # rule, so the account's own link there is still not followed
    os.chmod(theirs, 0o755)
    os.chown(theirs, 65534, 65534)
    (tmp_path / "deep").symlink_to(theirs / "run")
    through = _relayed(tmp_path / "deep" / target.name)
    assert through.returncode != 0 and through.stdout == b"" and b"a link is not followed" in through.stderr
    (tmp_path / "rel").symlink_to("var-run")  # a relative target, itself a link in root's folder
    assert _relayed(tmp_path / "rel" / target.name).stdout == b"X"


def test_the_folder_of_a_relay_that_died_is_swept_and_a_live_relays_is_kept(tmp_path: Path, target: Path) -> None:
    """A relay killed on the node (SIGKILL, a reboot) cannot remove its folder; the next relay's start
    removes it: only this user's folders, older than a minute, that no live relay holds locked."""
    home = tmp_path / "home"
    home.mkdir()
    live = home / ".mcfleet-fwd.live0001"
    live.mkdir(mode=0o700)
    with subprocess.Popen([sys.executable, "-c", SHARED, str(target), str(live / "sock")],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as relay:  # fmt: skip
        try:
            assert relay.stdout is not None and relay.stdout.readline() == READY
            dead = home / ".mcfleet-fwd.dead0001"
            dead.mkdir(mode=0o700)
            (dead / "sock").write_bytes(b"")  # stands for the socket a killed relay left
            young = home / ".mcfleet-fwd.young001"  # made a moment ago: its relay may not hold it yet
            young.mkdir(mode=0o700)
            other = home / "keep-me"
            other.mkdir()
            old = time.time() - 600
            for folder in (live, dead, other):
                os.utime(folder, (old, old))
            made = subprocess.run(["sh", "-c", FOLDER + "true"], env={**os.environ, "HOME": str(home)},
                                  capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
            new = Path(made.stdout.strip())
            assert new.parent == home and new.name.startswith(".mcfleet-fwd.") and new.is_dir()
            assert (new.stat().st_mode & 0o777) == 0o700
            assert not dead.exists()
            assert live.is_dir() and young.is_dir() and other.is_dir()
            assert _ask(live / "sock", b"still") == b"STILL"  # the live relay's socket was left alone
        finally:
            relay.kill()


def test_the_relays_run_isolated_from_the_login_folder_they_start_in(tmp_path: Path, target: Path) -> None:
    """Root starts the relays in the login's home: a module put there (or named by PYTHONPATH) must not be
    imported by root in place of the standard library's."""
    planted = tmp_path / "home"
    planted.mkdir()
    marker = tmp_path / "imported"
    for name in ("socket", "threading", "fcntl", "stat"):
        (planted / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    argv = [sys.executable, *PYTHON[1:]]
    env = {**os.environ, "PYTHONPATH": str(planted)}
    per = subprocess.run([*argv, PER_CONNECTION, str(target)], input=b"x", capture_output=True, cwd=planted,
                         env=env, timeout=10, check=False)  # fmt: skip
    assert per.returncode == 0 and per.stdout == b"X", per.stderr
    folder = tmp_path / "relay"
    folder.mkdir(mode=0o700)
    with subprocess.Popen([*argv, SHARED, str(target), str(folder / "sock")], cwd=planted, env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as relay:  # fmt: skip
        _served_then_cleaned(relay, folder / "sock", folder)
    assert not marker.exists()


def test_a_relay_start_cancelled_half_way_closes_its_process() -> None:
    """A read no longer wanted is cancelled while its relay starts: the relay's channel is closed then (the
    relay ends at that EOF), not left open on the node for the rest of the connection."""

    class _Stdout:
        async def readline(self) -> bytes:
            await asyncio.sleep(3600)  # the node has not answered yet
            return b""

    class _Process:
        stdout = _Stdout()
        closed = False

        def close(self) -> None:
            self.closed = True

    process = _Process()

    class _Connection:
        async def create_process(self, *_args: object, **_kwargs: object) -> _Process:
            return process

    async def run() -> None:
        start = asyncio.ensure_future(start_shared(_Connection(), None, "/srv/mcp/mcp-agent.sock", "rift"))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start

    asyncio.run(run())
    assert process.closed
