"""Rollback, deadman and crash recovery on full lab nodes (real sshd, systemd, agent PEX).

- a broken bundle is rolled back automatically; the old agent serves again; exit 1, "rolled back";
- the orchestrator SIGKILLed after activation, before it confirms: the node reverts by itself;
- the orchestrator SIGKILLed in the middle of the upload: a re-run converges, no temp file left,
  and the node never held a half-written binary or manifest.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.apply_lab import (  # noqa: F401 (fixtures)
    LOGINS,
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    broken_bundle,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
    sha256,
    variant,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def provisioned(make_nodes: MakeNodes, bundle: Path, prefix: str, login: str = "root") -> tuple[Nodes, str]:
    fleet = make_nodes(1, prefix, login=login)  # type: ignore[arg-type]
    name = fleet.names[0]
    run = cli("provision", name, "--root", str(fleet.fleet_dir), "--bundle", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    return fleet, name


def agent_serving(fleet: Nodes, name: str) -> dict[str, object]:
    status = cli("agent", "status", name, "--root", str(fleet.fleet_dir), "--json")
    rows: list[dict[str, object]] = json.loads(status.stdout)["hosts"]
    return rows[0]


@pytest.mark.parametrize("login", LOGINS)
def test_a_broken_bundle_is_rolled_back_and_the_old_agent_serves_again(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path, login: str
) -> None:
    fleet, name = provisioned(make_nodes, agent_bundle, f"rb{login[0]}", login)
    good = sha256(agent_bundle)
    bad = broken_bundle(tmp_path / "broken.pex")

    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(bad), "--health-timeout", "30")
    assert run.code == 1, run.stdout + run.stderr
    assert f"{name}: rolled back" in run.stdout
    assert "activate  rolled back" in run.stdout
    assert "previous agent serves again" in run.stdout
    assert "its last log lines:" in run.stdout and "this agent is broken on purpose" in run.stdout  # why it failed

    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == good
    row = agent_serving(fleet, name)
    assert row["health"] == "SERVING" and row["running_sha256"] == good
    assert fleet.manifest(name)["agent"]["sha256"] == good  # the manifest still names the confirmed agent
    assert fleet.temp_files(name) == []
    journal = (fleet.fleet_dir / ".mcfleet" / "journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["result"]["hosts"][name]["status"] == "rolled back"


@pytest.mark.parametrize("login", LOGINS)
def test_the_deadman_reverts_a_node_whose_orchestrator_vanished(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path, login: str
) -> None:
    fleet, name = provisioned(make_nodes, agent_bundle, f"dm{login[0]}", login)
    good = sha256(agent_bundle)
    v2 = variant(agent_bundle, tmp_path / "v2.pex", "dm")
    argv = [*mcfleet_argv(), "agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2),
            "--health-timeout", "40", "--confirm-timeout", "45"]  # fmt: skip
    env = {**os.environ, "MCFLEET_TEST_HOLD_BEFORE_CONFIRM": "300"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 180
        seen = ""
        while "holding before confirm" not in seen:
            assert time.monotonic() < deadline, f"the upgrade never got healthy: {seen}"
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline()
                assert line, f"the upgrade ended early ({proc.wait()}): {seen}"
                seen += line
        # the new agent is active and healthy, and nobody will ever confirm it
        assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == sha256(v2)
        assert fleet.sh(name, "ls /var/lib/mcfleet/deadman-token.* | wc -l").stdout.strip() == "1"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    # The script restores the binary, restarts the unit, then logs: wait for the log line (the
    # end of the rollback), not for the binary (its start), or a loaded machine races the check.
    deadline = time.monotonic() + 120
    logged = "deadman: no confirmation within 45 s, rolled back"
    while logged not in fleet.sh(name, "cat /var/lib/mcfleet/deadman.log 2>/dev/null; true").stdout:
        assert time.monotonic() < deadline, "the node did not roll back by itself"
        time.sleep(1)
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == good
    assert fleet.sh(name, "ls /var/lib/mcfleet/deadman-token.* 2>/dev/null | wc -l").stdout.strip() == "0"
    deadline = time.monotonic() + 60
    while (row := agent_serving(fleet, name))["health"] != "SERVING":
        assert time.monotonic() < deadline, f"the old agent does not serve again: {row}"
        time.sleep(1)
    assert row["running_sha256"] == good

    # the next apply sees a node as applied: nothing to send, nothing to restart
    again = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(agent_bundle), "--json")
    assert again.code == 0, again.stdout + again.stderr
    assert again.phase(name, "push")["status"] == "unchanged"
    assert again.phase(name, "activate")["status"] == "unchanged"


@pytest.mark.parametrize("login", ["root", "sudo"])
def test_sigkill_mid_upload_then_rerun_converges_without_temp_files(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path, login: str
) -> None:
    """The upload goes to the login's own staging folder (/root or /home/kyle), never where mcp writes."""
    fleet, name = provisioned(make_nodes, agent_bundle, f"kill{login[0]}", login)
    home = "/root" if login == "root" else "/home/kyle"
    good = sha256(agent_bundle)
    v2 = variant(agent_bundle, tmp_path / "v2.pex", "kill")
    argv = [*mcfleet_argv(), "agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("phase") == "push" and event.get("status") == "start":
                break
        # wait until the upload's temp file exists on the node, then kill mid-transfer
        deadline = time.monotonic() + 30
        while not fleet.sh(name, f"ls {home}/.mcfleet-upload.*/mcp-agent 2>/dev/null", check=False).stdout.strip():
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    # never a half-written binary or manifest: each is the old one or the new one, whole
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") in (good, sha256(v2))
    assert fleet.manifest(name)["agent"]["sha256"] == good

    rerun = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2), "--json")
    assert rerun.code == 0, rerun.stdout + rerun.stderr
    assert rerun.phase(name, "activate")["status"] == "changed"
    assert fleet.temp_files(name) == []
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == sha256(v2)
    assert fleet.file_sha(name, "/var/lib/mcfleet/agent/prev") == good
    assert fleet.manifest(name)["agent"]["sha256"] == sha256(v2)
    assert agent_serving(fleet, name)["running_sha256"] == sha256(v2)
