"""A service's declared files on a systemd node with rootless podman: written before its containers
start, a template change rewrites the file and restarts that service's containers only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import MakeNodes, Nodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

AS_MCP = "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850"


def _started(fleet: Nodes, name: str, container: str) -> str:
    out = fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.StartedAt}}}}' {container}")
    return out.stdout.strip()


def _apply(root: str, bundle: Path) -> None:
    run = cli("apply", "-C", root, "--yes", "--bundle", str(bundle), "--json", timeout=900)
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_template_file_is_deployed_and_a_change_restarts_only_its_service(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "files")
    name = fleet.names[0]
    root = fleet.lab.write_fleet(fleet.fleet_dir, nodes=[name], services=True)
    template = root / "files" / "hello.conf"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text("listen {{ address }}:{{ port.hello/0 }}\nversion 1\n")
    svc_path = root / "hosts" / name / "services" / "hello.json"
    svc = json.loads(svc_path.read_text())
    svc["description"] = "files lab test"  # no longer the lab's demo file: `lab` keeps its hands off it
    svc["files"] = [{"path": "hello.conf", "source": "files/hello.conf", "template": True, "mode": "0640"}]
    svc_path.write_text(json.dumps(svc))

    plan = cli("plan", "-C", str(root), "--json")
    creates = [a for a in json.loads(plan.stdout)["actions"] if a["subject"] == "file /srv/hello/hello.conf"]
    assert [a["kind"] for a in creates] == ["create"], plan.stdout[-2000:]

    _apply(str(root), agent_bundle)
    conf = fleet.sh(name, "cat /srv/hello/hello.conf").stdout
    port = conf.split(":")[-1].split()[0]
    assert conf == f"listen {fleet.nodes[0].address}:{port}\nversion 1\n"
    assert port.isdigit() and int(port) > 0
    assert fleet.sh(name, "stat -c '%U %G %a' /srv/hello/hello.conf").stdout.split() == ["mcp", "mcp", "640"]
    hello, db = _started(fleet, name, "hello"), _started(fleet, name, "db")

    template.write_text("listen {{ address }}:{{ port.hello/0 }}\nversion 2\n")
    plan = cli("plan", "-C", str(root))
    assert "~ file /srv/hello/hello.conf" in plan.stdout and "+version 2" in plan.stdout, plan.stdout
    _apply(str(root), agent_bundle)
    assert fleet.sh(name, "cat /srv/hello/hello.conf").stdout.endswith("version 2\n")
    assert _started(fleet, name, "hello") != hello  # restarted: its file changed
    assert _started(fleet, name, "db") == db  # untouched
    again = cli("plan", "-C", str(root), "--detailed-exitcode")
    assert again.code == 0, again.stdout
    assert fleet.temp_files(name) == []
