"""What the node says about a unix socket nothing answered at, run here with the same shell script: a link
(which root's relay does not follow), no socket, a socket nobody listens on, and one that is listened on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.kinds.service import agent_socket_problem
from mcfleet.transport.local import LocalNode
from mcfleet.transport.socket_state import socket_problem


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(1)
        yield path


def _state(path: Path) -> tuple[str, str] | None:
    found = asyncio.run(socket_problem(LocalNode(), str(path), "HAProxy"))
    return (found.state, found.text) if found else None


def test_each_state_is_named_and_a_listened_socket_is_no_problem(tmp_path: Path, listening: Path) -> None:
    assert _state(listening) is None

    link = tmp_path / "link.sock"
    link.symlink_to(listening)  # to a live socket: still refused, root must not follow it
    assert _state(link) == (
        "link",
        f"{link} is a link, and root does not follow a link to a socket (another account may have put it there)",
    )

    assert _state(tmp_path / "nothing.sock") == ("none", f"there is no socket at {tmp_path / 'nothing.sock'}")

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as bound:  # bound, never listened on: what a stopped proxy leaves
        bound.bind(str(stale))
    assert _state(stale) == (
        "idle",
        f"{stale} is there, but no process listens on it (left behind by a HAProxy that stopped)",
    )

    plain = tmp_path / "file.sock"
    plain.write_text("")
    assert _state(plain) == ("none", f"there is no socket at {plain}")


def test_a_listener_bound_under_haproxys_temporary_name_is_listened_on(tmp_path: Path) -> None:
    """HAProxy binds `<path>.<pid>.tmp`, listens, and renames it to `<path>`: the kernel lists the listener
    under the name it was bound to.  A HAProxy stopped with SIGSTOP (hung) answers nobody but still listens:
    not "left behind"."""
    path = tmp_path / "haproxy.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(f"{path}.26497.tmp")
        server.listen(1)
        Path(f"{path}.26497.tmp").rename(path)
        assert _state(path) is None
    assert _state(path) == (
        "idle",
        f"{path} is there, but no process listens on it (left behind by a HAProxy that stopped)",
    )


# /proc/net/unix on a node whose HAProxy listens on /srv/mc-proxy/haproxy.sock (bound as its .tmp name), with
# a client connected to it, a socket of another name that starts alike, and a bound one that does not listen
PROC_NET_UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 1091257 /srv/mc-proxy/haproxy.sock.26497.tmp
0000000000000000: 00000003 00000000 00000000 0001 03 1091301 /srv/mc-proxy/haproxy.sock.26497.tmp
0000000000000000: 00000002 00000000 00010000 0001 01 1091258 /srv/mc-proxy/haproxy.sock2
0000000000000000: 00000002 00000000 00000000 0001 07 1091259 /srv/mc-proxy/stale.sock
0000000000000000: 00000002 00000000 00010000 0001 01 1091260 /srv/mc-proxy/a b.sock
"""


def test_listened_reads_proc_net_unix_as_the_kernel_writes_it() -> None:
    from mcfleet.transport.socket_state import listened

    assert listened("/srv/mc-proxy/haproxy.sock", PROC_NET_UNIX)
    assert listened("/srv/mc-proxy/a b.sock", PROC_NET_UNIX)  # a name with a space is one path
    assert not listened("/srv/mc-proxy/stale.sock", PROC_NET_UNIX)  # bound, never listened on
    assert not listened("/srv/mc-proxy/haproxy", PROC_NET_UNIX)  # only `<path>.<digits>.tmp` is HAProxy's name
    assert not listened("/srv/mc-proxy/haproxy.sock2.26497", PROC_NET_UNIX)
    assert not listened("/srv/mc-proxy/haproxy.sock", PROC_NET_UNIX.replace(".26497.tmp", ".x.tmp"))
    assert not listened("/srv/mc-proxy/haproxy.sock", PROC_NET_UNIX.replace("00010000", "00000000"))


def test_a_path_with_shell_characters_is_one_argument(tmp_path: Path) -> None:
    odd = tmp_path / "a b;touch pwned"
    assert _state(odd) == ("none", f"there is no socket at {odd}")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


class _ForwardingNode(LocalNode):
    async def forward_unix(self, remote_path: str) -> str:  # a node reached through SSH
        return remote_path


def test_the_agents_problem_says_how_to_make_its_socket_again(tmp_path: Path, listening: Path) -> None:
    link = tmp_path / "mcp-agent.sock"
    link.symlink_to(listening)
    found = asyncio.run(agent_socket_problem(_ForwardingNode(), str(link), "mcp-agent.service"))
    assert found is not None and found.state == "link"
    assert found.fix == "`systemctl restart mcp-agent.service` on the node makes it again"
    assert found.said == f"{found.text}; {found.fix}" and found.text.startswith(f"{link} is a link")
    assert asyncio.run(agent_socket_problem(_ForwardingNode(), str(listening), "mcp-agent.service")) is None
    # this machine's own agent (no SSH): its client already names the path
    assert asyncio.run(agent_socket_problem(LocalNode(), str(link), "mcp-agent.service")) is None


def test_an_activation_that_gets_no_health_names_what_is_at_the_agents_socket(tmp_path: Path) -> None:
    """The new agent never answered: rather than gRPC's "failed to connect to all addresses", the node says
    what is at the path host.json names (here nothing: e.g. the agent binds another path)."""
    from mcfleet.apply.health import wait_agent_serving
    from mcfleet.fleet.models import Host

    where = tmp_path / "mcp-agent.sock"
    host = Host.model_validate({
        "name": "rift", "os": "debian", "arch": "amd64", "roles": ["worker"], "addresses": ["127.0.0.1"],
        "ssh": {"host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
        "users": {"mcp": {"uid": 850, "gid": 850}}, "dns": {"nameservers": ["10.0.0.1"], "fallback": ["1.1.1.1"]},
    })  # fmt: skip
    host = host.model_copy(update={"agent": host.agent.model_copy(update={"socket": str(where)})})  # a scratch path
    health = asyncio.run(wait_agent_serving(_ForwardingNode(), host, timeout=0.5, watch_unit=False))
    assert not health.serving
    assert health.error == f"no health within 0.5 s: there is no socket at {where}"
    # on this machine (no SSH) the client's own error names the path already
    local = asyncio.run(wait_agent_serving(LocalNode(), host, timeout=0.5, watch_unit=False))
    assert local.error.startswith("no health within 0.5 s: ") and "there is no socket" not in local.error


def test_an_agent_call_that_reached_no_agent_is_told_as_what_is_at_the_socket(tmp_path: Path, listening: Path) -> None:
    from mcfleet.errors import PeerError
    from mcfleet.kinds.service import agent_unreached

    link = tmp_path / "mcp-agent.sock"
    link.symlink_to(listening)
    grpc_said = PeerError(
        "agent Recover failed: UNAVAILABLE: failed to connect to all addresses; last error: UNAVAILABLE: "
        "unix:/tmp/mcfleet-fwd-1-x/sock: Socket closed",
        location="unix:/tmp/mcfleet-fwd-1-x/sock",
        hint="is mcp-agent running on the node (systemctl status mcp-agent)?",
    )
    told = asyncio.run(agent_unreached(_ForwardingNode(), str(link), "mcp-agent.service", grpc_said))
    assert told.message == (
        f"the agent was not reached: {link} is a link, and root does not follow a link to a socket (another "
        "account may have put it there)"
    )
    assert told.hint == "`systemctl restart mcp-agent.service` on the node makes it again"
    # an agent that was reached and failed, or one whose socket is fine: the error stands as it was
    during = PeerError("agent Recover failed: UNAVAILABLE: Socket closed", location="x")
    assert asyncio.run(agent_unreached(_ForwardingNode(), str(link), "u", during)) is during
    assert asyncio.run(agent_unreached(_ForwardingNode(), str(listening), "u", grpc_said)) is grpc_said
