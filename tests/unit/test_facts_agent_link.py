"""The root-run facts read never follows a link planted in the agent's mcp-writable folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mcfleet.observe.script import ScriptInputs, probes


def agent_probe(path: Path) -> str:
    inp = ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path=str(path), agent_unit="mcp-agent.service")
    body = next(p.body for p in probes(inp) if p.name == "agent")
    return subprocess.run(["sh", "-c", body], capture_output=True, text=True, check=True).stdout


def test_a_regular_agent_binary_is_hashed(tmp_path: Path) -> None:
    (tmp_path / "mcp-agent").write_bytes(b"bin")
    (tmp_path / "mcp-agent.version").write_text("0.1.0\n")
    out = agent_probe(tmp_path / "mcp-agent")
    assert out.startswith("sha256 51a1f05af85e342e3c849b47d387086476282d5f50dc240c19216d6edfb1eb5a\n")
    assert "version 0.1.0" in out


def test_a_link_in_place_of_the_agent_reads_as_absent(tmp_path: Path) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("not mcp's to read\n")
    (tmp_path / "mcp-agent").symlink_to(secret)  # what mcp could plant in /srv/mcp
    assert agent_probe(tmp_path / "mcp-agent") == "absent\n"
