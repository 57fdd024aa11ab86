"""provision → apply on full lab nodes (real sshd, systemd, agent PEX): install, idempotence, status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mcfleet
from tests.integration.apply_lab import (  # noqa: F401 (fixtures)
    LOGINS,
    MakeNodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


@pytest.mark.parametrize("login", LOGINS)
def test_provision_installs_and_starts_the_agent_and_a_second_run_changes_nothing(
    make_nodes: MakeNodes, agent_bundle: Path, login: str
) -> None:
    fleet = make_nodes(1, f"prov{login[0]}", login=login)  # type: ignore[arg-type]
    name = fleet.names[0]
    root = str(fleet.fleet_dir)
    host_file = fleet.fleet_dir / "hosts" / name / "host.json"
    host = json.loads(host_file.read_text())
    host["users"]["mcp"].update(subuid={"start": 100000, "count": 65536}, subgid={"start": 100000, "count": 65536})
    host_file.write_text(json.dumps(host, indent=2))

    first = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    assert first.phase(name, "provision")["status"] == "changed"
    assert "user mcp created with UID 850" in first.phase(name, "provision")["message"]
    assert first.phase(name, "push")["status"] == "changed"
    assert first.phase(name, "activate")["status"] == "changed"
    assert first.summary["files_sent"] == 1 and first.summary["bytes_sent"] == agent_bundle.stat().st_size

    assert fleet.sh(name, "id -u mcp; id -g mcp").stdout.split() == ["850", "850"]
    assert fleet.sh(name, "systemctl is-active mcp-agent").stdout.strip() == "active"
    assert fleet.sh(name, "systemctl show -p User --value mcp-agent").stdout.strip() == "mcp"
    assert "ExecStart=/srv/mcp/mcp-agent" in fleet.sh(name, "cat /etc/systemd/system/mcp-agent.service").stdout
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == fleet.manifest(name)["agent"]["sha256"]
    # root's own files are root's: the agent's account can neither write nor replace them
    assert fleet.sh(name, "stat -c '%U %a' /var/lib/mcfleet /srv/mcp/mcp-agent").stdout.split("\n")[:2] == [
        "root 700",
        "root 755",
    ]
    assert fleet.sh(name, "grep ^mcp: /etc/subuid /etc/subgid").stdout.split() == [
        "/etc/subuid:mcp:100000:65536",
        "/etc/subgid:mcp:100000:65536",
    ]
    resolv = fleet.sh(name, "grep ^nameserver /etc/resolv.conf").stdout.split("\n")
    assert [line.split()[1] for line in resolv if line] == [*fleet_nameservers(fleet, name), "1.1.1.1", "9.9.9.9"]

    second = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert second.code == 0, second.stdout + second.stderr
    assert second.phase(name, "provision")["status"] == "unchanged"
    assert "nothing to change" in second.phase(name, "provision")["message"]
    for phase in ("push", "activate", "manifest"):
        assert second.phase(name, phase)["status"] == "unchanged", phase
    assert second.summary["files_sent"] == 0 and second.summary["bytes_sent"] == 0
    assert fleet.temp_files(name) == []


def fleet_nameservers(fleet: object, name: str) -> list[str]:
    host = json.loads((fleet.fleet_dir / "hosts" / name / "host.json").read_text())  # type: ignore[attr-defined]
    return list(host["dns"]["nameservers"])


def test_apply_converges_three_fresh_nodes_then_changes_nothing_and_status_shows_every_agent(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    fleet = make_nodes(3, "app", login=["root", "sudo", "doas"])  # one node per way the real fleet logs in
    root = str(fleet.fleet_dir)

    first = cli("apply", root, "--all", "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    for name in fleet.names:
        assert first.phase(name, "provision")["status"] == "changed"  # the plan's user actions on Debian
        assert first.phase(name, "activate")["status"] == "changed"
        assert fleet.sh(name, "systemctl is-active mcp-agent").stdout.strip() == "active"
    assert first.summary["files_sent"] == 3

    second = cli("apply", root, "--all", "--bundle", str(agent_bundle), "--json")
    assert second.code == 0, second.stdout + second.stderr
    assert second.summary["files_sent"] == 0 and second.summary["bytes_sent"] == 0
    assert not [e for e in second.events if e["phase"] == "push"]  # nothing planned, nothing pushed
    assert all(h["status"] in ("unchanged", "skipped") for h in second.summary["hosts"].values())

    status = cli("agent", "status", "--root", root, "--json")
    assert status.code == 0, status.stdout + status.stderr
    rows = {r["host"]: r for r in json.loads(status.stdout)["hosts"]}
    assert set(rows) == set(fleet.names)
    for row in rows.values():
        assert row["version"] == mcfleet.__version__  # the agent reports the release it was built from
        assert row["health"] == "SERVING" and row["unit"] == "active" and not row["skew"]
        assert row["running_sha256"] == row["binary_sha256"] == row["confirmed_sha256"]
    text = cli("agent", "status", "--root", root)
    assert all(name in text.stdout for name in fleet.names) and "SERVING" in text.stdout

    # The agent's account puts a link at the agent's socket path (to the agent's own socket, moved aside):
    # root follows it through no login, and plan and status say what is there and how to end it.
    sock = "/srv/mcp/mcp-agent.sock"
    for name in fleet.names:
        fleet.sh(name, f"runuser -u mcp -- sh -c 'mv {sock} /srv/mcp/moved.sock && ln -s moved.sock {sock}'")
    linked = cli("agent", "status", "--root", root, "--json")
    assert linked.code == 1
    for row in json.loads(linked.stdout)["hosts"]:
        assert row["health"] == (
            f"{sock} is a link, and root does not follow a link to a socket (another account may have put it "
            "there); `systemctl restart mcp-agent.service` on the node makes it again"
        ), row
    plan = cli("-C", root, "plan")
    assert plan.stdout.count(f"not read: the agent did not answer ({sock} is a link") == 3, plan.stdout
    recover = cli("-C", root, "agent", "recover", fleet.names[1])  # the sudo login
    assert recover.code == 1
    assert f"the agent was not reached: {sock} is a link" in recover.stderr, recover.stderr
    assert "`systemctl restart mcp-agent.service` on the node makes it again" in recover.stderr
    for name in fleet.names:
        fleet.sh(name, "systemctl restart mcp-agent && rm /srv/mcp/moved.sock")
    again = cli("agent", "status", "--root", root, "--json")
    assert [r["health"] for r in json.loads(again.stdout)["hosts"]] == ["SERVING"] * 3, again.stdout
    print(f"\nFIGURES apply 3 fresh nodes: {first.seconds:.1f} s; second apply: {second.seconds:.1f} s")


def test_provision_refuses_when_the_pinned_uid_belongs_to_another_account(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    fleet = make_nodes(1, "uid")
    name = fleet.names[0]
    fleet.sh(name, "groupadd -g 1850 other && useradd -u 850 -g 1850 -M other")
    run = cli("provision", name, "--root", str(fleet.fleet_dir), "--bundle", str(agent_bundle), "--json")
    # the plan's refusal gate, as for apply: refused before any change (exit 1), saying who holds the UID
    assert run.code == 1, run.stdout + run.stderr
    assert f"UID 850 pinned for user mcp on {name} is held by account other (UID 850)" in run.stderr
    assert f"--override '{name}:user mcp'" in run.stderr
    # nothing was changed: no mcp group, no folder, no agent
    assert fleet.sh(name, "getent group mcp", check=False).returncode == 2
    assert fleet.sh(name, "test -e /srv/mcp", check=False).returncode == 1
    # `agent upgrade` goes through the same gate: refused, nothing pushed, nothing recorded
    upgrade = cli("agent", "upgrade", "--on", name, "--yes", "--root", str(fleet.fleet_dir), "--bundle",
                  str(agent_bundle), "--json")  # fmt: skip
    assert upgrade.code == 1, upgrade.stdout + upgrade.stderr
    assert f"UID 850 pinned for user mcp on {name} is held by account other" in upgrade.stderr
    assert (
        fleet.sh(name, "test -e /srv/mcp/mcp-agent || test -e /var/lib/mcfleet/manifest.json", check=False).returncode
        == 1
    )
