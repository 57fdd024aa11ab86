"""The SSH transport against real sshd processes (loopback nodes)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.fleet.first_use import key_file
from mcfleet.fleet.load import HostEntry, load_fleet
from mcfleet.fleet.sshfiles import write_ssh_files
from mcfleet.transport.base import CommandTimeout, HostKeyMismatch, Unreachable
from mcfleet.transport.ssh import SshOptions, SshPool
from tests.integration import plan_nodes

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def node_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[plan_nodes.Node]]]:
    reason = plan_nodes.can_run()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("transport")
    nodes, key = plan_nodes.make_nodes(base / "nodes", ["tp1", "tp2"])
    try:
        for node in nodes:
            node.start()
        yield plan_nodes.write_fleet(base / "fleet", nodes, key), nodes
    finally:
        plan_nodes.cleanup(nodes)


def _entry(root: Path, name: str, **ssh: object) -> HostEntry:
    """The host entry, with host.json's ssh/addresses overridden (written to disk and re-loaded)."""
    path = root / "hosts" / name / "host.json"
    data = json.loads(path.read_text())
    data["addresses"] = ssh.pop("addresses", data["addresses"])
    data["ssh"] = {**data["ssh"], **ssh}
    copy = root.parent / f"fleet-{name}-{abs(hash(json.dumps(data, sort_keys=True)))}"
    (copy / "hosts" / name).mkdir(parents=True, exist_ok=True)
    (copy / "fleet.json").write_text((root / "fleet.json").read_text())
    (copy / "hosts" / name / "host.json").write_text(json.dumps(data))
    return load_fleet(copy).hosts[name]


def test_run_argv_script_input_and_exit_status(node_fleet: tuple[Path, list[plan_nodes.Node]]) -> None:
    root, _nodes = node_fleet
    entry = load_fleet(root).hosts["tp1"]

    async def go() -> None:
        async with SshPool() as pool:
            conn = await pool.connect(entry)
            assert await pool.connect(entry) is conn  # one connection per host, reused
            res = await conn.run(["printf", "%s|", "a b", "$HOME", "it's"])
            assert res.stdout == "a b|$HOME|it's|"
            res = await conn.run("hostname; read x; echo got-$x; exit 3", input="hello\n")
            assert res.exit_status == 3 and res.stdout == "tp1\ngot-hello\n"
            with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5 s"):
                await conn.run(["sleep", "5"], timeout=0.5)
            assert (await conn.run(["true"])).ok  # the connection survives a timed-out command

    asyncio.run(go())


def test_sftp_and_unix_socket_forwarding(node_fleet: tuple[Path, list[plan_nodes.Node]], tmp_path: Path) -> None:
    root, _nodes = node_fleet
    entry = load_fleet(root).hosts["tp2"]
    sock = tmp_path / "echo.sock"  # /tmp is shared with the loopback nodes: the remote end sees it

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    async def go() -> None:
        server = await asyncio.start_unix_server(echo, path=str(sock))
        async with server, SshPool() as pool:
            conn = await pool.connect(entry)
            sftp = await conn.sftp()
            async with sftp.open("/srv/probe.txt", "w") as f:
                await f.write("written over sftp\n")
            assert (await conn.run(["cat", "/srv/probe.txt"])).stdout == "written over sftp\n"
            local = await conn.forward_unix(str(sock))
            reader, writer = await asyncio.open_unix_connection(local)
            writer.write(b"ping\n")
            await writer.drain()
            assert await reader.read() == b"echo:ping\n"
            writer.close()

    asyncio.run(go())


def test_wrong_pinned_key_is_a_mismatch_not_a_traceback(node_fleet: tuple[Path, list[plan_nodes.Node]]) -> None:
    root, nodes = node_fleet
    entry = _entry(root, "tp1", host_key=nodes[1].host_key)  # tp2's key pinned for tp1

    async def go() -> None:
        async with SshPool() as pool:
            await pool.connect(entry)

    with pytest.raises(HostKeyMismatch) as err:
        asyncio.run(go())
    assert "does not match the pinned one" in err.value.message
    assert err.value.hint and "verify its new key out of band" in err.value.hint


def test_known_hosts_file_is_strict_too(node_fleet: tuple[Path, list[plan_nodes.Node]], tmp_path: Path) -> None:
    root, nodes = node_fleet
    n = nodes[0]
    good = tmp_path / "known_hosts"
    good.write_text(f"[{n.address}]:{n.port} {n.host_key}\n")
    bad = tmp_path / "known_hosts_bad"
    bad.write_text(f"[{n.address}]:{n.port} {nodes[1].host_key}\n")

    async def go(path: Path) -> str:
        entry = _entry(root, "tp1", host_key=None, known_hosts=str(path))
        async with SshPool() as pool:
            return (await (await pool.connect(entry)).run(["hostname"])).stdout.strip()

    assert asyncio.run(go(good)) == "tp1"
    with pytest.raises(HostKeyMismatch):
        asyncio.run(go(bad))


def test_addresses_are_tried_in_order(node_fleet: tuple[Path, list[plan_nodes.Node]]) -> None:
    root, nodes = node_fleet
    dead = "127.0.0.254"  # nothing listens on that port there: refused, then the next address
    entry = _entry(root, "tp1", addresses=[dead, nodes[0].address])

    async def go() -> str:
        async with SshPool() as pool:
            return (await pool.connect(entry)).address

    assert asyncio.run(go()) == nodes[0].address

    only_dead = _entry(root, "tp1", addresses=[dead, "127.0.0.253"])

    async def fail() -> None:
        async with SshPool() as pool:
            await pool.connect(only_dead)

    with pytest.raises(Unreachable) as err:
        asyncio.run(fail())
    assert "127.0.0.254: connection refused; 127.0.0.253: connection refused" in err.value.message


class _DroppingRelay:
    """A TCP relay to a node's sshd that closes the first `drop` connections at once, as an sshd
    past MaxStartups (or restarting) does; later ones are relayed byte for byte."""

    def __init__(self, target: plan_nodes.Node, drop: int) -> None:
        self.target, self.drop, self.accepted = target, drop, 0
        self.writers: list[asyncio.StreamWriter] = []

    async def closed(self) -> None:
        """Every accepted connection closed for good: the loop must not end while a close is
        still pending (its transport would be collected unclosed: a ResourceWarning)."""
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        if self.accepted <= self.drop:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.target.address, self.target.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


@pytest.mark.parametrize("drop", [3, 4])
def test_a_connection_dropped_before_the_handshake_is_tried_again(
    node_fleet: tuple[Path, list[plan_nodes.Node]], drop: int
) -> None:
    root, nodes = node_fleet
    relay = _DroppingRelay(nodes[0], drop)
    address, port = "127.0.0.1", plan_nodes.free_port("127.0.0.1")
    entry = _entry(root, "tp1", addresses=[address], port=port)

    async def go() -> str:
        server = await asyncio.start_server(relay.handle, address, port)
        try:
            async with server, SshPool() as pool:
                conn = await pool.connect(entry)
                return (await conn.run(["hostname"])).stdout.strip()
        finally:
            await relay.closed()

    if drop == 3:  # dropped three times: the fourth try reaches the node
        assert asyncio.run(go()) == "tp1" and relay.accepted == 4
        return
    with pytest.raises(Unreachable) as err:  # dropped four times: the node is reported, not tried forever
        asyncio.run(go())
    assert relay.accepted == 4
    assert "4 times: sshd closed the connection before login completed" in err.value.message
    assert "/run/nologin" in err.value.hint  # what to look for on the node


def _seen_key(target: HostEntry) -> str | None:
    """The host key a connection to `target` saw."""

    async def go() -> str | None:
        async with SshPool() as pool:
            return (await pool.connect(target)).seen_host_key

    return asyncio.run(go())


def test_trust_on_first_use_only_when_asked_and_the_key_is_reported(
    node_fleet: tuple[Path, list[plan_nodes.Node]],
) -> None:
    root, nodes = node_fleet
    entry = _entry(root, "tp2", host_key=None, trust_on_first_use=True)
    key_file(entry).unlink(missing_ok=True)

    assert _seen_key(entry) == nodes[1].host_key  # what to pin in host.json afterwards
    assert key_file(entry).read_text() == nodes[1].host_key + "\n"  # the first key, kept
    assert _seen_key(entry) == nodes[1].host_key  # the same key again: fine


def test_trust_on_first_use_refuses_another_key_afterwards(node_fleet: tuple[Path, list[plan_nodes.Node]]) -> None:
    """As OpenSSH's accept-new: the first key is taken, then only that one (a node answering at the host's
    address with another key later is refused, as an attacker in the middle would be)."""
    root, nodes = node_fleet
    entry = _entry(root, "tp2", host_key=None, trust_on_first_use=True)
    key_file(entry).unlink(missing_ok=True)

    assert _seen_key(entry) == nodes[1].host_key
    # tp1's sshd (another host key) now answers at the address and port the host's files name
    other = dataclasses.replace(entry, host=entry.host.model_copy(
        update={"addresses": [nodes[0].address], "ssh": entry.host.ssh.model_copy(update={"port": nodes[0].port})}
    ))  # fmt: skip
    with pytest.raises(HostKeyMismatch) as err:
        _seen_key(other)
    assert "does not match the one it showed the first time" in err.value.message
    assert ": first seen SHA256:" in err.value.message and "the node presented SHA256:" in err.value.message
    assert str(key_file(entry)) in (err.value.hint or "")
    assert key_file(entry).read_text() == nodes[1].host_key + "\n"  # the refused key is not recorded
    # ssh_config / known_hosts for plain OpenSSH check the recorded key strictly too
    write_ssh_files(load_fleet(entry.dir.parent.parent))
    state = entry.dir.parent.parent / ".mcfleet"
    assert nodes[1].host_key in (state / "known_hosts").read_text()
    assert "StrictHostKeyChecking yes" in (state / "ssh_config").read_text()
    key_file(entry).unlink()  # verified out of band: the next connection takes the key it sees
    assert _seen_key(other) == nodes[0].host_key


def test_aes128_gcm_is_negotiated_although_sshd_prefers_chacha20(
    node_fleet: tuple[Path, list[plan_nodes.Node]],
) -> None:
    """OpenSSH lists chacha20-poly1305 first; the client's order decides, and ours puts aes128-gcm
    first (cheaper per packet in asyncssh).  Both directions use it."""
    root, _nodes = node_fleet
    entry = load_fleet(root).hosts["tp1"]

    async def go() -> tuple[str, str]:
        async with SshPool() as pool:
            conn = await pool.connect(entry)
            return conn.conn.get_extra_info("send_cipher"), conn.conn.get_extra_info("recv_cipher")

    assert asyncio.run(go()) == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")


def test_default_options_keep_chacha20_as_a_fallback() -> None:
    """A server without AES-GCM still connects: chacha20 and the CTR modes stay offered, after aes128-gcm."""
    algs = SshOptions().encryption_algs
    assert algs[0] == "aes128-gcm@openssh.com"
    assert "chacha20-poly1305@openssh.com" in algs and "aes128-ctr" in algs


def test_a_key_the_node_refuses_and_a_file_that_is_no_key_say_which_and_what_to_fix(
    node_fleet: tuple[Path, list[plan_nodes.Node]], tmp_path: Path
) -> None:
    """Real sshd: another key (not in authorized_keys) is refused, and the hint is about the key and the
    user, not "check that the node is up".  A .pub given as the identity, or a key with a passphrase,
    is this machine's setup error with its path (was: an internal KeyImportError)."""
    import subprocess

    from mcfleet.transport.base import LocalSshConfigError

    root, _nodes = node_fleet
    for name, passphrase in (("other", ""), ("locked", "secret")):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(tmp_path / name)], check=True)

    async def go(entry: HostEntry) -> None:
        async with SshPool() as pool:
            await pool.connect(entry)

    with pytest.raises(Unreachable) as refused:
        asyncio.run(go(_entry(root, "tp1", identity_file=str(tmp_path / "other"))))
    assert "authentication refused for user" in refused.value.message
    assert refused.value.hint == (
        f"check ssh.user (root), and that the public key of {tmp_path / 'other'} is in its "
        "~/.ssh/authorized_keys on the node"
    )
    cases = [("other.pub", "Invalid private key", "not its .pub"), ("locked", "Passphrase", "ssh-agent")]
    for file, said, hint in cases:
        with pytest.raises(LocalSshConfigError) as bad:
            asyncio.run(go(_entry(root, "tp1", identity_file=str(tmp_path / file))))
        assert bad.value.message.startswith(f"the identity file {tmp_path / file} is not a private key")
        assert said in bad.value.message and bad.value.hint and hint in bad.value.hint
