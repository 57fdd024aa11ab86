"""The agent starts warm after a push: the bundle is unpacked before the restart (full lab node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def test_push_unpacks_the_bundle_before_the_agent_starts(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    fleet = make_nodes(1, "warm")
    name = fleet.names[0]
    run = cli("apply", "-C", str(fleet.fleet_dir), "--on", name, "--bundle", str(agent_bundle), "--json", "--yes")
    assert run.code == 0, run.stdout + run.stderr
    assert "unpacked in" in run.phase(name, "push")["message"]
    # the summary times each phase: activation (restart to the new agent healthy and confirmed) among them
    activate = run.phase(name, "activate")
    assert activate["status"] == "changed" and 0 < activate["seconds"] < run.seconds, activate
    assert activate["message"].startswith("agent 0.1.0 serving (restarted: "), activate  # what is true after it
    # the agent runs the venv's python under mcp's ~/.cache/pex (a --venv PEX) ...
    pid = fleet.sh(name, "systemctl show -p MainPID --value mcp-agent").stdout.strip()
    exe = fleet.sh(name, f"readlink /proc/{pid}/exe; tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert "/srv/mcp/.cache/pex/venvs/" in exe, exe
    # ... made by mcp before the restart: the venv is older than the agent's process
    venv_time = fleet.sh(name, "stat -c %Y /srv/mcp/.cache/pex/venvs/*/*/* | sort -n | head -1").stdout
    owner = fleet.sh(name, "stat -c %U /srv/mcp/.cache/pex/venvs").stdout.strip()
    start = fleet.sh(name, f"echo $(( $(date +%s) - $(ps -o etimes= -p {pid}) ))").stdout
    assert owner == "mcp"
    assert int(venv_time) <= int(start), (venv_time, start)
