"""The facts script run for real by `sh` on this machine (local transport), then parsed."""

from __future__ import annotations

import asyncio
import os
import platform

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
