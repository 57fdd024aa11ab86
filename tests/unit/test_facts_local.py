"""The facts script run for real by `sh` on this machine (local transport), then parsed."""

from __future__ import annotations

import asyncio
import os
import platform
import select
import subprocess
from pathlib import Path

from mcfleet.observe.parse import parse_facts, read_framed
from mcfleet.observe.script import ScriptInputs, facts_script
from mcfleet.transport.local import LocalNode


def test_local_facts_round_trip() -> None:
    inp = ScriptInputs(
        users=("root",), uids=(0,), gids=(0,), agent_path="/nonexistent/agent", agent_unit="none.service"
    )
    result = asyncio.run(LocalNode().run(facts_script(inp), timeout=30))
    assert result.exit_status == 0, result.stderr
    assert read_framed(result.stdout).complete
    facts = parse_facts("local", result.stdout, agent_path=inp.agent_path)
    assert facts.arch_raw == platform.machine()
    assert facts.hostname == platform.node()
    assert facts.euid == os.geteuid()
    root = facts.account("root")
    assert root is not None and root.uid == 0
    assert facts.agent is not None and not facts.agent.present
    assert facts.os_id is not None


def test_the_nodes_addresses_are_read_only_when_asked() -> None:
    """A service publishing on one of the node's addresses makes the script ask for them (`ip -o addr`);
    otherwise the probe says `absent` and the facts hold None (not "no address")."""
    base = {"users": ("root",), "uids": (0,), "gids": (0,), "agent_path": "/nonexistent/agent",
            "agent_unit": "none.service"}  # fmt: skip
    asked = asyncio.run(LocalNode().run(facts_script(ScriptInputs(**base, addresses=True)), timeout=30))  # type: ignore[arg-type]
    facts = parse_facts("local", asked.stdout, agent_path="/nonexistent/agent")
    assert facts.addresses is not None and "127.0.0.1" in facts.addresses
    plain = asyncio.run(LocalNode().run(facts_script(ScriptInputs(**base)), timeout=30))  # type: ignore[arg-type]
    assert parse_facts("local", plain.stdout, agent_path="/nonexistent/agent").addresses is None


def test_the_records_leave_the_node_at_once_after_the_last_probe(tmp_path: Path) -> None:
    """Nothing is printed until every probe has run: the records go out together (a few SSH packets,
    not one or more per probe). A FIFO as the manifest holds the script at that probe, after the
    others have run; printed probe by probe, their records would be readable by then."""
    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)
    inp = ScriptInputs(users=("root",), uids=(0,), gids=(0,), agent_path="/nonexistent/agent",
                       agent_unit="none.service", manifest_path=str(fifo))  # fmt: skip
    proc = subprocess.Popen(["sh", "-c", facts_script(inp)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        printed_early, _, _ = select.select([proc.stdout], [], [], 1.0)
        assert not printed_early, "the script printed records before its manifest probe had run"
        with fifo.open("w") as manifest:  # lets the probe (and the script) go on
            manifest.write('{"services": {}}')
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    framed = read_framed(out.decode())
    assert framed.complete
    assert parse_facts("local", out.decode(), agent_path=inp.agent_path).os_id is not None


def test_a_base64_without_the_wrap_option_gives_the_same_facts(tmp_path: Path) -> None:
    """The script encodes with `base64 -w 0` where base64 takes it, else with `base64 | tr -d '\\n'`:
    the same records either way (a base64 refusing -w is put first on PATH here)."""
    real = subprocess.run(["sh", "-c", "command -v base64"], capture_output=True, text=True, check=True).stdout.strip()
    bare = tmp_path / "base64"
    bare.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -w ] && exit 1; done\nexec {real} "$@"\n')
    bare.chmod(0o755)
    inp = ScriptInputs(
        users=("root",), uids=(0,), gids=(0,), agent_path="/nonexistent/agent", agent_unit="none.service"
    )
    script = facts_script(inp)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def facts_text(env: dict[str, str]) -> str:
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=True)
        assert read_framed(done.stdout).complete
        assert len(done.stdout.splitlines()) > 20  # one record per probe: no value wrapped onto a line of its own
        return done.stdout

    assert facts_text(env) == facts_text(dict(os.environ))
    assert parse_facts("local", facts_text(env), agent_path=inp.agent_path).os_id is not None


def test_the_listeners_on_the_services_ports_are_read_from_the_kernels_tables() -> None:
    """Sockets listening on the asked ports show, with their address (IPv4, IPv6 and UDP decoded from
    /proc/net/*); a port not asked does not; nothing is asked without ports (None, not "none")."""
    import socket

    base = {"users": ("root",), "uids": (0,), "gids": (0,), "agent_path": "/nonexistent/agent",
            "agent_unit": "none.service"}  # fmt: skip
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, socket.socket(type=socket.SOCK_DGRAM) as udp:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        udp.bind(("127.0.0.1", 0))
        unasked = socket.create_server(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in (v4, v6, udp)]
        asked = ScriptInputs(**base, ports=tuple(f"{p:04X}" for p in ports))  # type: ignore[arg-type]
        out = asyncio.run(LocalNode().run(facts_script(asked), timeout=30))
        unasked.close()
    listening = parse_facts("local", out.stdout, agent_path="/nonexistent/agent").listening
    assert listening is not None
    # the machine is shared (tests run in parallel): another process may listen on the same port number on
    # another address or protocol, and that listener is reported too, as it would be on a node
    assert {("tcp", "127.0.0.1", ports[0]), ("tcp", "::1", ports[1]), ("udp", "127.0.0.1", ports[2])} <= set(listening)
    assert all(e[2] in ports for e in listening)  # only the asked ports come back (not the unasked server's)
    plain = asyncio.run(LocalNode().run(facts_script(ScriptInputs(**base)), timeout=30))  # type: ignore[arg-type]
    assert parse_facts("local", plain.stdout, agent_path="/nonexistent/agent").listening is None
