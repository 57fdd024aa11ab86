"""The agent's folder (mcp's home, /srv/mcp) given to root by hand on a provisioned full node: the plan
shows that folder's owner as the drift and nothing else.  mcp's user manager and its podman.socket run
on under mcp's uid whoever owns the folder (mcp still reads it through its group), so the socket is not
drifted: the facts script looked for it under /run/user/<uid of the folder's owner>, i.e. root's, and
the plan said `~ podman.socket mcp stopped → listening` while the socket served.  A socket really
stopped while the folder is root's is still seen.  Apply gives the folder back; the plan is clean."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

AS_MCP = "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850"
LISTENS = 'awk \'$4 == "00010000" && $8 == "/run/user/850/podman/podman.sock"\' /proc/net/unix'


def _plan(root: str, name: str) -> dict[str, dict[str, Any]]:
    run = cli("plan", root, "--on", name, "--json")
    assert run.code == 0, run.stdout + run.stderr
    return {f"{a['phase']} {a['subject']}": a for a in json.loads(run.stdout)["actions"]}


def _apply_and_clean(root: str, name: str, bundle: Path) -> None:
    run = cli("apply", root, "--on", name, "--bundle", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    clean = cli("plan", root, "--on", name, "--detailed-exitcode")
    assert clean.code == 0, f"the plan is not clean after apply:\n{clean.stdout}{clean.stderr}"


def test_a_root_owned_agent_folder_is_its_own_drift_not_the_podman_sockets(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    fleet = make_nodes(1, "home")
    name = fleet.names[0]
    root = str(fleet.fleet_dir)
    _apply_and_clean(root, name, agent_bundle)

    fleet.sh(name, "chown root /srv/mcp")
    # what the plan must agree with: mcp's socket is enabled and serves
    assert fleet.sh(name, f"{AS_MCP} systemctl --user is-active podman.socket").stdout.strip() == "active"
    assert fleet.sh(name, LISTENS).stdout.strip()
    drift = _plan(root, name)
    folder = drift["host dir /srv/mcp"]
    assert (folder["kind"], folder["before"], folder["after"]) == ("update", "0:850 750", "850:850 750"), folder
    assert "host podman.socket mcp" not in drift, drift["host podman.socket mcp"]
    assert sorted(drift) == ["host dir /srv/mcp"], sorted(drift)

    # stopped by hand while the folder is root's: still seen as stopped (its listener gone; podman's worker
    # holds the inherited socket until its idle timeout, 5 s)
    fleet.sh(name, f"{AS_MCP} systemctl --user stop podman.socket podman.service")
    deadline = time.monotonic() + 30
    while fleet.sh(name, LISTENS).stdout.strip():
        assert time.monotonic() < deadline, "podman's worker still listens 30 s after podman.service stopped"
        time.sleep(0.2)
    stopped = _plan(root, name)
    socket = stopped["host podman.socket mcp"]
    assert (socket["kind"], socket["before"], socket["after"]) == ("update", "stopped", "listening"), socket
    assert "host dir /srv/mcp" in stopped

    _apply_and_clean(root, name, agent_bundle)
    assert fleet.sh(name, "stat -c '%U %a' /srv/mcp").stdout.split() == ["mcp", "750"]
    assert fleet.sh(name, f"{AS_MCP} systemctl --user is-active podman.socket").stdout.strip() == "active"
