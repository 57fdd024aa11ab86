"""`"active": false` on a deployed systemd lab node: apply stops the service's containers through the
agent and keeps them (and the agent keeps it registered, stopped); the plan after it has no changes;
`"active": true` again starts the same containers (not re-created).

Real programs: systemd-nspawn node, sshd, mcp-agent.service, rootless podman as mcp, images from the
lab registry.  No providers: routes and DNS are not part of this test (the fleet's are blocked lines).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401
from tests.integration.test_deploy_lab import answer, containers, host_port, plan, service, write_service
from tests.integration.test_service_drift_lab import converge, deploy_actions

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def test_active_false_keeps_the_containers_stopped_and_active_true_starts_the_same_ones(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "inact")
    host, root = fleet.names[0], str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    image = f"{registry.address}/demo/hello:1"
    web, other = service("web", "services", image), service("other", "services", image)
    write_service(fleet, host, web)
    write_service(fleet, host, other)
    converge(fleet, host, root, agent_bundle, records=True)
    first = containers(fleet, host)
    assert {n: c["state"] for n, c in first.items()} == {"web": "running", "other": "running"}
    port = host_port(fleet, host, "web")
    assert answer(fleet, host, port) == "hello 1 port=8080\n"

    # "active": false: one update, then the containers are kept, stopped, and the plan is clean
    web["active"] = False
    write_service(fleet, host, web)
    [act] = deploy_actions(root)
    assert (act["kind"], act["subject"], act["reason"]) == (
        "update",
        "service web",
        '"active": false in web.json: its containers are stopped (kept, with their volumes); start it again with '
        '"active": true',
    ), act
    converge(fleet, host, root, agent_bundle, records=True)
    stopped = containers(fleet, host)
    assert stopped["web"]["id"] == first["web"]["id"] and stopped["web"]["state"] in ("exited", "stopped"), stopped
    assert stopped["other"] == first["other"]  # untouched
    manifest = fleet.manifest(host)
    assert sorted(manifest["services"]) == ["other", "web"]
    status = cli("agent", "status", "--on", host, "--json", "-C", root)
    assert status.code == 0, status.stdout + status.stderr
    again = cli("apply", root, "--on", host, "--bundle", str(agent_bundle), "--json")  # converged: stays stopped
    assert again.code == 0, again.stdout + again.stderr
    assert containers(fleet, host)["web"]["state"] in ("exited", "stopped")
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]

    # "active": true again: one update that starts the same container
    web["active"] = True
    write_service(fleet, host, web)
    [act] = deploy_actions(root)
    assert (act["kind"], act["subject"], act["reason"]) == (
        "update",
        "service web",
        '"active": true in web.json: its stopped containers are started again',
    ), act
    converge(fleet, host, root, agent_bundle, records=True)
    started = containers(fleet, host)
    assert started["web"]["id"] == first["web"]["id"] and started["web"]["state"] == "running", started
    assert answer(fleet, host, port) == "hello 1 port=8080\n"
