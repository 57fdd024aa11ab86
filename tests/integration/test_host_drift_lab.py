"""Host-level drift on a full lab node: a fresh node's plan lists what apply does; a hand edit
of each managed host fact shows as `~` with old -> new, apply converges it, and the plan is clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def _plan(root: str, name: str) -> dict[str, dict[str, Any]]:
    run = cli("plan", root, "--on", name, "--json")
    assert run.code == 0, run.stdout + run.stderr
    return {f"{a['phase']} {a['subject']}": a for a in json.loads(run.stdout)["actions"]}


def _apply(root: str, name: str, bundle: Path) -> None:
    run = cli("apply", root, "--on", name, "--bundle", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr


def _clean(root: str, name: str) -> None:
    run = cli("plan", root, "--on", name, "--detailed-exitcode")
    assert run.code == 0, f"the plan is not clean after apply:\n{run.stdout}{run.stderr}"


def test_host_level_drift_is_planned_as_changes_and_apply_converges_it(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    fleet = make_nodes(1, "drift")
    name = fleet.names[0]
    root = str(fleet.fleet_dir)

    # a fresh node: the plan names every host-level change provisioning then makes
    fresh = _plan(root, name)
    assert fresh["host user mcp"]["kind"] == "create"
    assert fresh["host resolvers"]["kind"] == "update"  # the node's own resolv.conf is rewritten
    assert fresh["host resolvers"]["after"][-1] == "options timeout:1 attempts:2"
    assert fresh["host dir /srv/mcp"]["kind"] == "create"
    assert fresh["agent agent"]["kind"] == "create"
    _apply(root, name, agent_bundle)
    _clean(root, name)

    # hand edits: resolvers, the agent's folder, the unit disabled at boot
    fleet.sh(name, "echo 'nameserver 10.9.9.9' > /etc/resolv.conf")
    fleet.sh(name, "chmod 0755 /srv/mcp && chown root /srv/mcp")
    fleet.sh(name, "systemctl disable --quiet mcp-agent.service")
    drift = _plan(root, name)
    assert drift["host resolvers"]["kind"] == "update"
    assert drift["host resolvers"]["before"] == ["nameserver 10.9.9.9"]
    assert drift["host dir /srv/mcp"]["kind"] == "update"
    assert drift["host dir /srv/mcp"]["before"] == "0:850 755"
    assert drift["host dir /srv/mcp"]["after"] == "850:850 750"
    agent = drift["agent agent"]
    assert agent["kind"] == "update" and "disabled" in agent["reason"]
    assert (agent["before"]["enabled"], agent["after"]["enabled"]) == ("disabled", "enabled")
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, "systemctl is-enabled mcp-agent.service").stdout.strip() == "enabled"
    assert fleet.sh(name, "stat -c '%U %a' /srv/mcp").stdout.split() == ["mcp", "750"]

    # the unit's content edited by hand
    fleet.sh(name, "sed -i 's/^RestartSec=.*/RestartSec=30/' /etc/systemd/system/mcp-agent.service")
    unit = _plan(root, name)["agent agent"]
    assert unit["kind"] == "update" and "unit file changed" in unit["reason"]
    assert unit["before"]["unit_sha256"] != unit["after"]["unit_sha256"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert "RestartSec=30" not in fleet.sh(name, "cat /etc/systemd/system/mcp-agent.service").stdout
