"""Saved plans, refusals and `deploy HOST` on full lab nodes (real sshd, systemd, agent PEX)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def test_a_saved_plan_runs_exactly_and_is_refused_once_the_node_changed(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    fleet = make_nodes(2, "plan", login=["sudo", "root"])  # the applied node is reached as kyle with sudo
    first, second = fleet.names
    root = str(fleet.fleet_dir)
    plan_file = tmp_path / "plan.json"
    made = cli("plan", root, "--on", first, "-o", str(plan_file))
    assert made.code == 0, made.stdout + made.stderr
    assert json.loads(plan_file.read_text())["hosts"] == [first]

    stale_file = tmp_path / "stale.json"
    assert cli("plan", root, "--on", second, "-o", str(stale_file)).code == 0
    fleet.sh(second, "echo 'nameserver 10.9.9.9' > /etc/resolv.conf")  # the node changes after planning

    # the same plan, edited: an action no file calls for, and the agent's taken out
    edited = json.loads(plan_file.read_text())
    agent = next(a for a in edited["actions"] if a["phase"] == "agent")
    edited["actions"] = [a for a in edited["actions"] if a is not agent]
    edited["actions"].append({**agent, "phase": "deploy", "kind": "create", "subject": "service evil"})
    edited_file = tmp_path / "edited.json"
    edited_file.write_text(json.dumps(edited))
    refused = cli("apply", str(edited_file), "--bundle", str(agent_bundle))
    assert refused.code == 1, refused.stdout + refused.stderr
    assert "the plan's actions are not the ones its fleet files and the nodes give now" in refused.stderr
    assert f"in the file only: {first} deploy: create service evil" in refused.stderr
    assert f"planned now only: {first} agent: {agent['kind']} agent" in refused.stderr
    assert fleet.sh(first, "test -e /srv/mcp/mcp-agent", check=False).returncode == 1  # nothing was done

    run = cli("apply", str(plan_file), "--bundle", str(agent_bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert set(run.summary["hosts"]) == {first}  # exactly the plan's hosts
    assert fleet.sh(first, "systemctl is-active mcp-agent").stdout.strip() == "active"
    assert fleet.sh(second, "test -e /srv/mcp/mcp-agent", check=False).returncode == 1

    refused = cli("apply", str(stale_file), "--bundle", str(agent_bundle))
    assert refused.code == 1  # a refusal
    assert "stale plan: what the nodes show changed since the plan was made" in refused.stderr
    assert second in refused.stderr
    assert fleet.sh(second, "test -e /srv/mcp", check=False).returncode == 1  # nothing was done


def test_a_plan_with_a_refusal_is_refused_unless_overridden_and_the_uid_is_never_changed(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    fleet = make_nodes(1, "ref")
    name = fleet.names[0]
    fleet.sh(name, "groupadd -g 1850 legacy && useradd -u 850 -g 1850 -M legacy")
    root = str(fleet.fleet_dir)

    refused = cli("apply", root, "--on", name, "--bundle", str(agent_bundle))
    assert refused.code == 1  # a refusal
    assert "the plan contains a refusal" in refused.stderr
    assert "UID 850" in refused.stderr and "legacy" in refused.stderr
    assert f"--override '{name}:user mcp'" in refused.stderr
    assert fleet.sh(name, "test -e /srv/mcp/mcp-agent", check=False).returncode == 1
    journal = (fleet.fleet_dir / ".mcfleet" / "journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["error"]["kind"] == "refused"  # a refused apply is journalled too

    # the agent's folder would be 850's, which is legacy here: refused with the user, so an override of the
    # user alone does not let it through (was: /srv/mcp made and handed to legacy)
    user_only = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--override", f"{name}:user mcp")
    assert user_only.code == 1 and f"--override '{name}:dir /srv/mcp'" in user_only.stderr, user_only.stderr
    assert "refused with `user mcp`" in user_only.stderr and "held by account legacy" in user_only.stderr
    assert fleet.sh(name, "test -e /srv/mcp", check=False).returncode == 1

    both = ("--override", f"{name}:user mcp", "--override", f"{name}:dir /srv/mcp")
    overridden = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), *both)
    # the rest of the plan ran (the agent cannot start without its user, so this host fails: exit 1) ...
    assert overridden.code == 1, overridden.stdout + overridden.stderr
    assert f"{name}:" in overridden.stdout
    # ... and the refused actions themselves were never done
    assert fleet.sh(name, "id -u legacy").stdout.strip() == "850"
    assert fleet.sh(name, "getent passwd mcp", check=False).returncode == 2
    assert fleet.sh(name, "stat -c %U /srv/mcp 2>/dev/null || echo absent").stdout.strip() != "legacy"


def test_deploy_one_host_validates_plans_and_applies_it(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    fleet = make_nodes(2, "dep", login=["doas", "root"])  # the deployed node is reached as kyle with doas
    name, other = fleet.names
    # no --bundle: the real path, the bundle builder (cached by its inputs hash, so no rebuild here)
    run = cli("deploy", name, "--root", str(fleet.fleet_dir), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert set(run.summary["hosts"]) == {name}
    assert run.phase(name, "build")["message"].startswith("pex ")
    assert run.phase(name, "activate")["status"] == "changed"
    assert fleet.sh(name, "systemctl is-active mcp-agent").stdout.strip() == "active"
    assert fleet.sh(other, "test -e /srv/mcp", check=False).returncode == 1
    records = (fleet.fleet_dir / ".mcfleet" / "journal.jsonl").read_text().splitlines()
    last = json.loads(records[-1])
    assert last["command"] == f"deploy {name}" and last["result"]["ok"] is True
