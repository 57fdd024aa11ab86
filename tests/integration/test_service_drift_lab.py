"""Service drift on a deployed systemd lab node: what someone did by hand shows in the plan, with
the values, and `apply` converges it (a re-plan exits 0 after each).

  - a container removed by hand (`podman rm`): `~ service … drift: one is missing`
  - a container stopped by hand (`podman stop`): `~ service … drift: two is exited`
  - the service file changes a container's spec (an env value): `-/+ service …` naming the
    value old → new, and apply recreates that container only, with the new value

The plan reads the containers from the agent (`Facts` over the forwarded socket), not root
`podman ps`.  Real programs: systemd-nspawn node, sshd, mcp-agent.service, rootless podman
as mcp, images from the lab registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import MakeNodes, Nodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401
from tests.integration.test_deploy_lab import AS_MCP, containers, plan, service, write_service

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def deploy_actions(root: str) -> list[dict[str, Any]]:
    code, data = plan(root, "--detailed-exitcode")
    acts = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert code == 2, data["actions"]
    return acts


def converge(fleet: Nodes, host: str, root: str, bundle: Path, *, records: bool) -> None:
    """Apply, then a clean re-plan.  `records`: whether the apply changes what the manifest records (a
    new or changed service) or only repairs drift; the plan lists `~ manifest` exactly when the apply
    then writes it, so plan and apply agree."""
    _, before = plan(root)
    listed = [a["kind"] for a in before["actions"] if a["phase"] == "manifest"]
    assert bool(listed) == records, before["actions"]
    run = cli("apply", root, "--on", host, "--bundle", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.phase(host, "manifest")["status"] == ("changed" if records else "unchanged"), run.stdout
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]


def env_of(fleet: Nodes, host: str, name: str) -> list[str]:
    out = fleet.sh(host, f"{AS_MCP} inspect --format '{{{{json .Config.Env}}}}' {name}").stdout
    env: list[str] = json.loads(out)
    return env


def test_plan_shows_a_removed_a_stopped_and_a_changed_container_and_apply_converges_each(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "drift")
    host, root = fleet.names[0], str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    image = f"{registry.address}/demo/hello:1"
    one = service("one", "services", image)
    one["components"][0]["env"] = ["GREETING=hi"]
    write_service(fleet, host, one)
    write_service(fleet, host, service("two", "services", image))
    converge(fleet, host, root, agent_bundle, records=True)
    deployed = containers(fleet, host)
    assert {n: c["state"] for n, c in deployed.items()} == {"one": "running", "two": "running"}

    # (a) removed by hand
    fleet.sh(host, f"{AS_MCP} rm -f one")
    [act] = deploy_actions(root)
    assert (act["kind"], act["subject"], act["reason"]) == ("update", "service one", "drift: one is missing")
    converge(fleet, host, root, agent_bundle, records=False)
    assert containers(fleet, host)["one"]["state"] == "running"

    # (b) stopped by hand
    fleet.sh(host, f"{AS_MCP} stop two")
    [act] = deploy_actions(root)
    assert (act["kind"], act["subject"], act["reason"]) == ("update", "service two", "drift: two is exited")
    two_id = containers(fleet, host)["two"]["id"]
    converge(fleet, host, root, agent_bundle, records=False)
    assert containers(fleet, host)["two"] == {
        "id": two_id,
        "image": image,
        "state": "running",
    }  # started, not recreated

    # (c) the service file changes one container's spec: -/+ with the value old -> new
    before = containers(fleet, host)
    one["components"][0]["env"] = ["GREETING=hey"]
    write_service(fleet, host, one)
    [act] = deploy_actions(root)
    assert act["kind"] == "replace" and act["subject"] == "service one", act
    assert act["reason"] == (
        'the service definition changed: components[0].env[0]: "GREETING=hi" → "GREETING=hey" (recreates one)'
    )
    shown = cli("plan", root)
    assert "-/+" in shown.stdout and '"GREETING=hi" → "GREETING=hey"' in shown.stdout, shown.stdout
    converge(fleet, host, root, agent_bundle, records=True)
    after = containers(fleet, host)
    assert after["one"]["id"] != before["one"]["id"] and "GREETING=hey" in env_of(fleet, host, "one")
    assert after["two"]["id"] == before["two"]["id"]

    # (d) mcp's user manager stopped by hand: it takes the containers and podman's socket with it, and the
    # agent (a system unit) stays.  The plan cannot see the containers (podman does not answer): it starts
    # the socket in the host phase and brings every deployed service up in the deploy, in one apply (was:
    # every container "missing" and apply failing on podman; then, two applies)
    fleet.sh(host, "systemctl stop user@850.service")
    code, data = plan(root, "--detailed-exitcode")
    assert code == 2, data
    kinds = {a["subject"]: (a["kind"], a["reason"]) for a in data["actions"] if a["phase"] in ("host", "deploy")}
    assert kinds["podman.socket mcp"][0] == "update", kinds
    unknown = "podman did not answer the agent, so what runs is unknown: apply brings it up once podman answers"
    assert kinds["service one"] == kinds["service two"] == ("update", unknown)
    converge(fleet, host, root, agent_bundle, records=False)
    assert {n: c["state"] for n, c in containers(fleet, host).items()} == {"one": "running", "two": "running"}
