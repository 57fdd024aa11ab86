"""Boot stages across hosts, on two systemd lab nodes: a foundation service that fails its health
check on one node stops the sequence, and the core service on the other node (the master:
core services live there) is reported `skipped` with that reason and never started.

The failing check is a command the image does not have: the agent ends the wait at once
with that reason instead of after the stage timeout.  Real programs: two systemd-nspawn nodes,
sshd, mcp-agent.service, rootless podman as mcp, images from the lab registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401
from tests.integration.test_deploy_lab import containers, service, write_service

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def test_a_failed_foundation_on_one_host_skips_core_on_another_with_the_reason(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(2, "gate")
    master, other = fleet.names  # the lab gives the first node the master role
    root = str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    db = service("db", "foundation", f"{registry.address}/demo/db:1")
    db["components"][0]["health"] = {"kind": "command", "command": ["no-such-probe"], "timeout_s": 5}
    write_service(fleet, other, db)
    write_service(fleet, master, service("api", "core", f"{registry.address}/demo/api:1"))

    run = cli("apply", root, "--on", master, "--on", other, "--yes", "--bundle", str(agent_bundle), "--json")
    assert run.code != 0, run.stdout + run.stderr
    failed, skipped = run.phase(other, "deploy"), run.phase(master, "deploy")
    assert failed["status"] == "failed", failed
    assert (
        failed["message"].startswith("stage foundation did not get healthy: ") and "no-such-probe" in failed["message"]
    ), failed
    assert skipped["status"] == "skipped", skipped
    assert skipped["message"].startswith(f"api skipped: stage foundation failed on {other}: "), skipped
    assert "no-such-probe" in skipped["message"], skipped
    # the core service never started; the foundation container exists but is not healthy
    assert containers(fleet, master) == {}
    assert "db" in containers(fleet, other)
