"""The agent process answers grpc health, Info and Facts over its unix socket (no podman needed)."""

from __future__ import annotations

import asyncio
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mcfleet import __version__
from mcfleet.agent.client import AgentClient
from mcfleet.errors import PeerError
from tests.fixtures_agent import REPO, AgentRunner


def test_health_info_and_facts(agent_runner: AgentRunner) -> None:
    agent = agent_runner.start("--podman", "unix:///nonexistent/podman.sock", "--user", "root", "--user", "nosuchuser")
    assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o660  # the agent's user and group only
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            # The agent's API answers; the node as a whole does not serve while podman is unreachable.
            assert await client.health_status("mcfleet.agent.v1.Agent") == "SERVING"
            assert await client.health_status() == "NOT_SERVING"
            assert await client.health_status("podman") == "NOT_SERVING"
            with pytest.raises(PeerError, match="NOT_FOUND"):
                await client.health_status("no.such.Service")
            info = await client.info()
            assert info.version == __version__
            assert info.arch == platform.machine()
            assert info.boot_id == boot_id
            assert info.os_id == "debian"
            assert info.pid == agent.proc.pid
            assert info.bundle_sha256 == ""  # run from source, not from a bundle
            users = {u.name: u for u in info.users}
            assert users["root"].exists and users["root"].uid == 0 and users["root"].home == "/root"
            assert not users["nosuchuser"].exists
            # Nothing registered: boot finishes at once without touching podman.
            assert info.boot.state == "ok" and info.services == 0
            assert info.health_reason == (
                "podman API not reachable at unix:///nonexistent/podman.sock: No such file or directory"
            )
            facts = await client.facts()
            assert facts["info"]["boot_id"] == info.boot_id
            assert facts["registry"] == [] and facts["containers"] == []
            assert "podman list failed" in facts["podman"]["error"]  # a dead podman is a fact, not a failure
            assert [e["kind"] for e in facts["events"]][:3] == ["listening", "loaded", "boot-start"]
            with pytest.raises(PeerError, match="NOT_FOUND"):
                await client.stop("nope")

    asyncio.run(scenario())
    done = subprocess.run(
        [sys.executable, "-m", "mcfleet.agent.main", "--probe", "--socket", str(agent.socket)],
        env={**os.environ, "PYTHONPATH": str(REPO / "python")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout.strip() == "NOT_SERVING: " + (
        "podman API not reachable at unix:///nonexistent/podman.sock: No such file or directory"
    )
    agent.stop()
    assert agent.proc.returncode == 0
    assert not agent.socket.exists()  # removed on a clean stop


def test_client_names_the_socket_when_no_agent_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AgentClient(str(tmp_path / "none.sock"), timeout=2) as client:
            with pytest.raises(PeerError) as err:
                await client.info()
            assert f"unix:{tmp_path}/none.sock" in err.value.format()
            assert "mcp-agent" in (err.value.hint or "")
            with pytest.raises(PeerError, match=r"agent not serving after 0\.5s"):
                await client.wait_serving(0.5)

    asyncio.run(scenario())


def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    long_path = tmp_path / ("x" * 120) / "a.sock"
    done = subprocess.run(
        [sys.executable, "-m", "mcfleet.agent.main", "--socket", str(long_path), "--registry", str(tmp_path / "r.db")],
        env={**os.environ, "PYTHONPATH": str(REPO / "python")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "socket path is too long for a unix socket" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_agent_api_answers_before_the_agent_loads_its_heavy_modules(agent_runner: AgentRunner) -> None:
    """Started by an apply, the agent's health answer must not wait for podman's client and the
    service models: the server serves first, the rest loads after (and Info waits for it)."""
    agent = agent_runner.start("--podman", "unix:///nonexistent/podman.sock", "--no-boot")

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            assert await client.health_status("mcfleet.agent.v1.Agent") == "SERVING"
            info = await client.info()  # waits for the load: the apply confirms only after it
            assert info.pid == agent.proc.pid
            facts = await client.facts()
        startup = facts["startup"]
        # none of the heavy modules was imported when the server started answering ...
        assert startup["loaded_when_serving"] == [], startup
        # ... which happened after the process started, and before the load ended
        assert 0 < startup["serving_s"] <= startup["loaded_s"], startup
        kinds = [e["kind"] for e in facts["events"]]
        assert kinds.index("listening") < kinds.index("loaded"), kinds

    asyncio.run(scenario())
    agent.stop()
    assert agent.proc.returncode == 0
