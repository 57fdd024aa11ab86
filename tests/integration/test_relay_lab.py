"""A root-only unix socket on a node reached through a sudo login (how every real host is reached):
one escalated relay per forwarded socket for the whole run, sshd forwarding each connection to it;
a relay per connection where sshd does not forward unix sockets; nothing left on the node after,
and the folder of a relay killed on the node removed by the next relay.  A root login goes through the
same relay, so a link another account puts at a socket's path is not followed by root."""

from __future__ import annotations

import asyncio
import time

import pytest

from mcfleet.transport.base import CommandFailed
from tests.integration.apply_lab import MakeNodes, Nodes, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

TARGET = "/run/mcfleet-test-echo.sock"
# Root's socket (0600): each connection is answered with what it sent, upper-cased, after the half-close.
# The path comes from the environment, so that only the relays name it on their command line.
ECHO = """
import os, socket, threading
server = socket.socket(socket.AF_UNIX)
os.umask(0o077)
server.bind(os.environ["ECHO_AT"])
server.listen(16)
def answer(conn):
    got = b""
    while data := conn.recv(65536):
        got += data
    conn.sendall(got.upper())
    conn.close()
while True:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
"""


def _relays(nodes: Nodes, name: str) -> int:
    """The relay processes running on the node: Python processes running the relay's code (not the sudo
    processes that started them)."""
    listed = nodes.sh(name, "ps -ww -eo args=", check=False).stdout
    return sum(line.startswith("python3 ") and "def reach(path)" in line for line in listed.splitlines())


def _relay_folders(nodes: Nodes, name: str, home: str = "/home/kyle") -> list[str]:
    listed = nodes.sh(name, f"ls -A {home}", check=False).stdout.split()
    return [f for f in listed if f.startswith(".mcfleet-fwd.")]


def _hold_three_and_count(nodes: Nodes, name: str, path: str = TARGET) -> tuple[list[bytes], int]:
    """Through a fresh SSH connection as the node's login: three connections to the forwarded socket `path`
    held open at once (the relays are counted then), each answered; then the connection is closed."""
    from mcfleet.fleet.load import load_fleet
    from mcfleet.transport.ssh import SshPool

    entry = load_fleet(nodes.fleet_dir).hosts[name]

    async def go() -> tuple[list[bytes], int]:
        async with SshPool() as pool:
            conn = await pool.connect(entry)
            local = await conn.forward_unix(path)
            opened = [await asyncio.open_unix_connection(local) for _ in range(3)]
            for i, (_reader, writer) in enumerate(opened):
                writer.write(b"hello %d" % i)
                await writer.drain()
            await asyncio.sleep(0.5)  # every connection reached the node
            running = await asyncio.to_thread(_relays, nodes, name)
            answers = []
            for reader, writer in opened:
                writer.write_eof()
                try:
                    answers.append(await asyncio.wait_for(reader.read(), 10))
                except ConnectionResetError:
                    answers.append(b"")
                writer.close()
            return answers, running

    return asyncio.run(go())


def _killed_relay_leaves(nodes: Nodes, name: str) -> str:
    """Kills the relay (SIGKILL, as root on the node) while a run uses it: its folder stays behind."""
    from mcfleet.fleet.load import load_fleet
    from mcfleet.transport.ssh import SshPool

    entry = load_fleet(nodes.fleet_dir).hosts[name]

    async def go() -> None:
        async with SshPool() as pool:
            conn = await pool.connect(entry)
            await conn.forward_unix(TARGET)
            listed = await asyncio.to_thread(nodes.sh, name, "ps -ww -eo pid=,args=", check=False)
            pids = [line.split()[0] for line in listed.stdout.splitlines()
                    if line.split()[1:2] == ["python3"] and TARGET in line]  # fmt: skip
            assert len(pids) == 1, listed.stdout
            await asyncio.to_thread(nodes.sh, name, f"kill -KILL {pids[0]}")

    asyncio.run(go())
    deadline = time.monotonic() + 10
    while _relays(nodes, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    folders = _relay_folders(nodes, name)
    assert len(folders) == 1, folders
    return folders[0]


def _nothing_left(nodes: Nodes, name: str, home: str = "/home/kyle") -> None:
    deadline = time.monotonic() + 10
    while (_relays(nodes, name) or _relay_folders(nodes, name, home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _relays(nodes, name) == 0, nodes.sh(name, "ps -ww -eo pid,args", check=False).stdout
    assert _relay_folders(nodes, name, home) == []


def _start_echo(nodes: Nodes, name: str) -> None:
    nodes.sh(
        name, f"ECHO_AT={TARGET} setsid python3 -c '{ECHO}' </dev/null >/dev/null 2>&1 & sleep 0.5; test -S {TARGET}"
    )


def test_a_root_login_does_not_follow_a_link_another_account_put_at_the_socket_path(make_nodes: MakeNodes) -> None:
    """The agent's socket lies in the agent account's folder.  That account replaces the socket with a link
    to a socket only root may open: sshd's own forward, as root, would connect through it; the relay
    closes each connection without reaching the target."""
    nodes = make_nodes(1, "rootlink", login="root")
    name = nodes.names[0]
    _start_echo(nodes, name)
    folder = "/srv/someone"  # the agent account's folder, played by `nobody`
    link = f"{folder}/agent.sock"
    nodes.sh(name, f"mkdir -p {folder} && chown nobody {folder} && runuser -u nobody -- ln -s {TARGET} {link}")

    answers, running = _hold_three_and_count(nodes, name, link)
    assert answers == [b"", b"", b""]  # nothing reached through the link
    assert running == 1  # a relay closed them (not sshd refusing the forward)
    _nothing_left(nodes, name, home="/root")

    answers, running = _hold_three_and_count(nodes, name)  # the real socket: reached, through one relay
    assert answers == [b"HELLO 0", b"HELLO 1", b"HELLO 2"] and running == 1
    _nothing_left(nodes, name, home="/root")

    # sshd that forwards no unix socket (which once failed every root connection): a relay per connection
    _no_unix_forwarding(nodes, name)
    answers, running = _hold_three_and_count(nodes, name)
    assert answers == [b"HELLO 0", b"HELLO 1", b"HELLO 2"] and running == 3
    answers, _ = _hold_three_and_count(nodes, name, link)  # each relay refused the link and ended
    assert answers == [b"", b"", b""]
    _nothing_left(nodes, name, home="/root")


def _no_unix_forwarding(nodes: Nodes, name: str) -> None:
    nodes.sh(name, "printf 'AllowStreamLocalForwarding no\\n' > /etc/ssh/sshd_config.d/00-no-unix-forwarding.conf"
                   " && sshd -t && systemctl reload ssh && sleep 0.3"
                   " && for i in $(seq 100); do ss -ltn | grep -q ':22 ' && break; sleep 0.1; done")  # fmt: skip


def test_one_relay_serves_every_connection_and_sshd_without_unix_forwarding_gets_one_each(
    make_nodes: MakeNodes,
) -> None:
    nodes = make_nodes(1, "relay", login="sudo")
    name = nodes.names[0]
    _start_echo(nodes, name)

    answers, running = _hold_three_and_count(nodes, name)
    assert answers == [b"HELLO 0", b"HELLO 1", b"HELLO 2"]
    assert running == 1  # one escalated relay for the three connections
    _nothing_left(nodes, name)  # the SSH connection closed: the relay removed its socket and folder

    # A relay killed on the node cannot remove its folder; the next relay's start removes it once it is
    # older than a minute (aged here) and no relay holds it.
    left = _killed_relay_leaves(nodes, name)
    nodes.sh(name, f"touch -d '10 minutes ago' /home/kyle/{left}")
    answers, running = _hold_three_and_count(nodes, name)
    assert answers == [b"HELLO 0", b"HELLO 1", b"HELLO 2"] and running == 1
    _nothing_left(nodes, name)

    # sudo that finds no python3 (NixOS puts none on PATH by default): the relay could not start per
    # connection either, so the forward fails naming the missing program instead of falling back to
    # connections that would only close
    no_python = "printf 'Defaults secure_path=/nonexistent\\n' > /etc/sudoers.d/zz-no-python"
    nodes.sh(name, f"umask 0227 && {no_python} && visudo -c -q")
    with pytest.raises(CommandFailed) as err:
        _hold_three_and_count(nodes, name)
    assert "python3: command not found" in err.value.format() and "not installed on the host" in err.value.format()
    nodes.sh(name, "rm /etc/sudoers.d/zz-no-python")
    _nothing_left(nodes, name)

    _no_unix_forwarding(nodes, name)
    answers, running = _hold_three_and_count(nodes, name)
    assert answers == [b"HELLO 0", b"HELLO 1", b"HELLO 2"]
    assert running == 3  # sshd would not forward to a relay's socket: one relay per connection
    _nothing_left(nodes, name)  # nor is the relay that was tried first left behind
