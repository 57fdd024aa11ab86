"""mcfleet's SSH login against a real sshd: no "none" request, and a key file signs its first request.

The node's sshd logs at DEBUG1, where each user authentication request is a line naming its method
("userauth-request for user root service ssh-connection method none") and a public key offered
unsigned and found acceptable is "Postponed publickey" (OpenSSH's probe answer).  Both exchanges
cost a round trip each; these tests fail when asyncssh's private auth classes change under
transport/ssh_login.py and mcfleet's logins fall back to the default.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.fleet.load import HostEntry, load_fleet
from mcfleet.transport.ssh import SshOptions, SshPool
from tests.integration import plan_nodes

pytestmark = pytest.mark.lab

REQUEST = re.compile(r"userauth-request for user (\S+) service ssh-connection method (\S+)")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[plan_nodes.Node, Path, Path]]:
    reason = plan_nodes.can_run()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("login")
    nodes, key = plan_nodes.make_nodes(base / "nodes", ["login1"])
    config = nodes[0].dir / "sshd_config"
    config.write_text(config.read_text().replace("LogLevel ERROR", "LogLevel DEBUG1"))
    try:
        nodes[0].start()
        yield nodes[0], plan_nodes.write_fleet(base / "fleet", nodes, key), key
    finally:
        plan_nodes.cleanup(nodes)


def _login(entry: HostEntry, options: SshOptions | None = None) -> tuple[str, int]:
    """Log in with mcfleet's pool, run `hostname`; its output and the local port (names the lines in the log)."""

    async def go() -> tuple[str, int]:
        async with SshPool(options) as pool:
            conn = await pool.connect(entry)
            port = conn.conn.get_extra_info("sockname")[1]
            return (await conn.run(["hostname"])).stdout.strip(), int(port)

    return asyncio.run(go())


def _session(node: plan_nodes.Node, port: int) -> list[str]:
    """The log lines of the connection from `port`: sshd's child logs from 'Connection from' to its end."""
    lines = (node.dir / "sshd.log").read_text(errors="replace").splitlines()
    start = next(i for i, line in enumerate(lines) if "Connection from 127." in line and f" port {port} " in line)
    session: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("Connection from "):  # the next connection
            break
        session.append(line)
    return session


def test_a_key_file_logs_in_with_one_signed_request(node: tuple[plan_nodes.Node, Path, Path]) -> None:
    sshd, fleet, _key = node
    hostname, port = _login(load_fleet(fleet).hosts["login1"])
    assert hostname == "login1"
    session = _session(sshd, port)
    assert [m.group(2) for line in session if (m := REQUEST.search(line))] == ["publickey"], session
    assert not [line for line in session if "Postponed publickey" in line], session
    assert [line for line in session if "Accepted publickey for root" in line], session


def test_a_refused_key_file_moves_on_to_the_next(node: tuple[plan_nodes.Node, Path, Path], tmp_path: Path) -> None:
    sshd, fleet, key = node
    stranger = tmp_path / "stranger_ed25519"
    plan_nodes.keygen(stranger)
    # the pool's own keys: the stranger's first (refused: not in authorized_keys), then the node's
    options = SshOptions(client_keys=(str(stranger), str(key)))
    entry = load_fleet(fleet).hosts["login1"]
    hostname, port = _login(entry, options)
    assert hostname == "login1"
    session = _session(sshd, port)
    assert [m.group(2) for line in session if (m := REQUEST.search(line))] == ["publickey", "publickey"], session
    assert [line for line in session if "Accepted publickey for root" in line], session


def test_an_agent_key_is_still_offered_unsigned_first(
    node: tuple[plan_nodes.Node, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key in ssh-agent may live on a token that asks for a touch per signature: it is asked about first."""
    sshd, fleet, key = node
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)  # no key files: the agent's key is the only one
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if agent_socket.exists():
                break
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(agent_socket)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
        host = fleet / "hosts" / "login1" / "host.json"
        text = host.read_text()
        without_file = fleet.parent / "fleet-agent"
        (without_file / "hosts" / "login1").mkdir(parents=True, exist_ok=True)
        (without_file / "fleet.json").write_text((fleet / "fleet.json").read_text())
        (without_file / "hosts" / "login1" / "host.json").write_text(re.sub(r',\s*"identity_file": "[^"]*"', "", text))
        entry = load_fleet(without_file).hosts["login1"]
        assert entry.host.ssh.identity_file is None
        hostname, port = _login(entry)
    finally:
        agent.terminate()
        agent.wait(5)
    assert hostname == "login1"
    session = _session(sshd, port)
    assert [m.group(2) for line in session if (m := REQUEST.search(line))] == ["publickey", "publickey"], session
    assert [line for line in session if "Postponed publickey" in line], session
