"""The agent's account must not reach root, and faults must lose nothing: attacks on full lab nodes.

Each test performs the attack for real on a systemd node (real sshd, systemd, agent PEX) as the
agent's account `mcp` would (a compromised agent, a container with /srv/mcp mounted), then checks
that root did not run, write or trust what mcp controls.  Every one of them failed before root's
store (/var/lib/mcfleet) and the link-safe root helper existed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.apply_lab import (  # noqa: F401 (fixtures)
    BROKEN_AGENT,
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
    sha256,
    variant,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

AS_MCP = "setpriv --reuid=850 --regid=850 --clear-groups --"


def provisioned(make_nodes: MakeNodes, bundle: Path, prefix: str, login: str = "root") -> tuple[Nodes, str]:
    fleet = make_nodes(1, prefix, login=login)  # type: ignore[arg-type]
    name = fleet.names[0]
    run = cli("provision", name, "--root", str(fleet.fleet_dir), "--bundle", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    return fleet, name


def as_mcp(fleet: Nodes, name: str, script: str) -> subprocess.CompletedProcess[str]:
    return fleet.sh(name, f"{AS_MCP} sh -c {json.dumps(script)}", check=False)


def upgrade_held(fleet: Nodes, name: str, bundle: Path, confirm_timeout: int) -> subprocess.Popen[str]:
    """`agent upgrade` that stops after its health check, before it confirms (it holds the node lock)."""
    argv = [*mcfleet_argv(), "agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(bundle),
            "--health-timeout", str(confirm_timeout - 5), "--confirm-timeout", str(confirm_timeout)]  # fmt: skip
    env = {**os.environ, "MCFLEET_TEST_HOLD_BEFORE_CONFIRM": "600"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + 240, ""
    while "holding before confirm" not in seen:
        assert time.monotonic() < deadline, f"the upgrade never got healthy: {seen}"
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            assert line, f"the upgrade ended early ({proc.wait()}): {seen}"
            seen += line
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_for(check: object, what: str, limit: float = 150) -> None:
    deadline = time.monotonic() + limit
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(1)


def test_mcp_cannot_replace_what_the_deadman_runs_as_root(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """#12.1: during the confirm window, mcp rewrites every file root's deadman would run."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkrb")
    good = sha256(agent_bundle)
    proc = upgrade_held(fleet, name, variant(agent_bundle, tmp_path / "v2.pex", "atkrb"), confirm_timeout=45)
    try:
        units = fleet.sh(name, "systemctl list-units --all --plain --no-legend 'mcfleet-deadman-*.service'").stdout
        unit = units.split()[0]
        show = fleet.sh(name, f"systemctl show -p ExecStart --value {unit}").stdout
        script = next(arg for arg in show.replace(";", " ").split() if arg.endswith(".sh"))
        evil = "#!/bin/sh\ntouch /pwned-by-mcp\n"
        attempts = [
            as_mcp(fleet, name, f"printf '{evil}' > {script}"),
            as_mcp(fleet, name, f"printf '{evil}' > {script}.new && mv -f {script}.new {script}"),
            as_mcp(fleet, name, f"printf '{evil}' > /srv/mcp/mcfleet-rollback.sh"),  # the old place
        ]
        assert not script.startswith("/srv/mcp/"), f"root's deadman runs {script}, in mcp's folder"
        assert all(a.returncode != 0 for a in attempts[:2]), [a.stderr for a in attempts]
    finally:
        kill(proc)
    wait_for(
        lambda: "rolled back" in fleet.sh(name, "cat /var/lib/mcfleet/deadman.log 2>/dev/null; true").stdout,
        "the deadman did not roll back",
    )
    assert fleet.sh(name, "test -e /pwned-by-mcp", check=False).returncode == 1
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == good


def test_links_planted_by_mcp_do_not_make_root_overwrite_files(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """#12.2: mcp plants links at every name root writes in /srv/mcp; root must replace, never follow."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkln")
    good = sha256(agent_bundle)
    fleet.sh(name, "printf 'root only\\n' > /etc/victim && chmod 0644 /etc/victim")
    names = ["mcp-agent.prev.tmp", "mcp-agent.prev", "mcp-agent.rollback.tmp", "mcfleet-state.json"]
    plant = "; ".join(f"ln -sf /etc/victim /srv/mcp/{n}" for n in names)
    swap = "ln -sf /etc/victim /srv/mcp/mcp-agent.x && mv -f /srv/mcp/mcp-agent.x /srv/mcp/mcp-agent"
    planted = as_mcp(fleet, name, f"{plant}; {swap}")
    assert planted.returncode == 0, planted.stderr  # mcp can do all of this in its own folder

    v2 = variant(agent_bundle, tmp_path / "v2.pex", "atkln")
    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert fleet.sh(name, "cat /etc/victim").stdout == "root only\n"
    assert fleet.sh(name, "stat -c '%F %U' /srv/mcp/mcp-agent").stdout.strip() == "regular file root"
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == sha256(v2)
    assert fleet.file_sha(name, "/var/lib/mcfleet/agent/prev") == good  # the rollback target is root's copy
    assert [f for f in fleet.temp_files(name) if f.rpartition("/")[2] not in names] == []  # mcp's links stay mcp's


def test_host_file_fields_that_reach_a_root_shell_are_refused(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    """#12.4: a newline in agent.user, `../` in agent.unit, root as the agent user: findings, nothing written."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkfd")
    host_file = fleet.fleet_dir / "hosts" / name / "host.json"
    original = json.loads(host_file.read_text())
    cases = {
        "user": ("mcp\nExecStartPre=+/bin/touch /pwned-by-user", "agent/user"),
        "unit": ("../../../tmp/x.service", "agent/unit"),
        "path": ("/srv/mcp/../../etc/cron.d/x", "agent/path"),
    }
    for field, (value, pointer) in cases.items():
        host = json.loads(json.dumps(original))
        host["agent"] = {**host.get("agent", {}), field: value}
        host_file.write_text(json.dumps(host))
        run = cli("apply", str(fleet.fleet_dir), "--all", "--bundle", str(agent_bundle), "--json")
        assert run.code == 2, (field, run.stdout + run.stderr)
        assert pointer in run.stdout + run.stderr, field
    host = json.loads(json.dumps(original))
    host["agent"] = {"user": "root"}
    host_file.write_text(json.dumps(host))
    run = cli("validate", str(fleet.fleet_dir))
    assert run.code == 2 and "the agent must not run as root" in run.stdout + run.stderr
    host_file.write_text(json.dumps(original))
    assert fleet.sh(name, "test -e /pwned-by-user || test -e /tmp/x.service", check=False).returncode == 1
    assert fleet.sh(name, "systemctl show -p User --value mcp-agent").stdout.strip() == "mcp"


def test_a_second_orchestrator_is_refused_with_who_holds_the_node(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """#12.13: two copies of the fleet apply to one node at once: the second is refused, naming the first."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atklk")
    copy = tmp_path / "second-checkout"
    shutil.copytree(fleet.fleet_dir, copy, ignore=shutil.ignore_patterns(".mcfleet"))
    v2 = variant(agent_bundle, tmp_path / "v2.pex", "atklk")
    first = upgrade_held(fleet, name, v2, confirm_timeout=300)
    try:
        second = cli("agent", "upgrade", name, "--root", str(copy), "--bundle", str(v2), "--json")
        assert second.code == 1, second.stdout + second.stderr
        text = second.stdout + second.stderr
        assert "another orchestrator is applying to this node" in text, text
        assert f"pid {first.pid}" in text, text
    finally:
        kill(first)
    # the first one vanished: its lock went with its connection, and the next apply confirms the node
    again = cli("agent", "upgrade", name, "--root", str(copy), "--bundle", str(v2), "--json")
    assert again.code == 0, again.stdout + again.stderr
    assert fleet.manifest(name)["agent"]["sha256"] == sha256(v2) == fleet.file_sha(name, "/srv/mcp/mcp-agent")
    # and the vanished apply's deadman was cancelled by the confirmation: no rollback to v1 later
    assert fleet.sh(name, "ls /var/lib/mcfleet/deadman-token.* 2>/dev/null | wc -l").stdout.strip() == "0"
    assert "mcfleet-deadman" not in fleet.sh(name, "systemctl list-timers --all --no-legend").stdout


def test_a_good_bundle_is_not_rolled_back_for_the_old_units_crash_loop(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """#12.15: health counts from the new start, not from the crash-looping old process's restarts."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkcl")
    fleet.sh(name, f"printf '%s' {json.dumps(BROKEN_AGENT)} > /srv/mcp/mcp-agent && systemctl restart mcp-agent")
    wait_for(
        lambda: int(fleet.sh(name, "systemctl show -p NRestarts --value mcp-agent").stdout.strip() or 0) >= 2,
        "the old unit did not crash-loop",
        limit=90,
    )
    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(agent_bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert run.phase(name, "activate")["status"] == "changed", run.phase(name, "activate")


def test_no_space_for_the_install_fails_clearly_and_keeps_the_rollback_target(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """#12.16: a full /srv/mcp: the apply fails saying so, no temp file is left, root's prev stays right."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkdf")
    good = sha256(agent_bundle)
    size = agent_bundle.stat().st_size
    # /srv/mcp on its own small filesystem, with room for one more copy of the binary but not two
    # (the old install needed two: the upload beside the binary and the copy kept as .prev)
    used = int(fleet.sh(name, "du -sk /srv/mcp | cut -f1").stdout)
    fleet.sh(
        name,
        "systemctl stop mcp-agent && cp -a /srv/mcp /var/tmp/mcp-keep && "
        f"mount -t tmpfs -o size={used + 3 * size // 1024 + 4096}k,mode=0750,uid=850,gid=850 mcfleet-small /srv/mcp && "
        "cp -a /var/tmp/mcp-keep/. /srv/mcp/ && rm -rf /var/tmp/mcp-keep && systemctl start mcp-agent",
    )
    leave(fleet, name, size * 3 // 2)
    v2 = variant(agent_bundle, tmp_path / "v2.pex", "atkdf2")
    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2), "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert fleet.file_sha(name, "/var/lib/mcfleet/agent/prev") == good  # the confirmed v1, not stale
    assert fleet.temp_files(name) == []

    # now too small for even one more copy: a clear failure, nothing half-done, nothing left
    leave(fleet, name, size // 2)
    v3 = variant(agent_bundle, tmp_path / "v3.pex", "atkdf3")
    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v3), "--json")
    assert run.code == 1, run.stdout + run.stderr
    message = run.phase(name, "push")["message"]
    assert "no space left on /srv/mcp" in message, message
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == sha256(v2)
    assert fleet.temp_files(name) == []


def test_a_full_or_unwritable_upload_folder_is_named_with_the_login_user(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """#12.16/#17: SFTP's bare "Failure" becomes "no space left on …"; a permission error names path and user."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkup", login="sudo")
    good = sha256(agent_bundle)
    fleet.sh(
        name,
        "cp -a /home/kyle /var/tmp/kyle-keep && mount -t tmpfs -o size=2m,mode=0755 mcfleet-home /home/kyle && "
        "cp -a /var/tmp/kyle-keep/. /home/kyle/ && chown kyle:kyle /home/kyle",
    )
    v2 = variant(agent_bundle, tmp_path / "v2.pex", "atkup")
    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2), "--json")
    assert run.code == 1, run.stdout + run.stderr
    message = run.phase(name, "push")["message"]
    assert "no space left on /home/kyle" in message and "as kyle" in message, message
    assert fleet.file_sha(name, "/srv/mcp/mcp-agent") == good
    assert fleet.temp_files(name) == []

    fleet.sh(name, "umount /home/kyle && chmod 0555 /home/kyle")
    run = cli("agent", "upgrade", name, "--root", str(fleet.fleet_dir), "--bundle", str(v2), "--json")
    assert run.code == 1, run.stdout + run.stderr
    message = run.phase(name, "push")["message"]
    assert "/home/kyle" in message and "kyle" in message and "Permission denied" in message, message
    assert "free space" not in message


def leave(fleet: Nodes, name: str, free: int) -> None:
    """Fill /srv/mcp (a filler file of mcp's) so that about `free` bytes stay free."""
    fleet.sh(name, "rm -f /srv/mcp/filler")
    avail = int(fleet.sh(name, "df -Pk /srv/mcp | tail -1 | awk '{print $4}'").stdout) * 1024
    if avail > free:
        fleet.sh(name, f"head -c {avail - free} /dev/zero > /srv/mcp/filler")


def test_provision_refuses_a_lying_getent(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    """#12.7: getent says mcp is 850, /etc/passwd says 851: refused, nothing chowned."""
    fleet = make_nodes(1, "atkge")
    name = fleet.names[0]
    fleet.sh(
        name,
        "groupadd -g 850 mcp && useradd -u 851 -g 850 -M -s /usr/sbin/nologin mcp && "
        "mv /usr/bin/getent /usr/bin/getent.real && "
        "printf '#!/bin/sh\\n/usr/bin/getent.real \"$@\" | sed s/:851:/:850:/\\n' > /usr/bin/getent && "
        "chmod 0755 /usr/bin/getent",
    )
    assert fleet.sh(name, "getent passwd mcp").stdout.split(":")[2] == "850"  # the lie
    run = cli("provision", name, "--root", str(fleet.fleet_dir), "--bundle", str(agent_bundle), "--json")
    assert run.code == 1, run.stdout + run.stderr
    message = run.phase(name, "provision")["message"]
    assert "refused: user mcp: getent answers" in message and "851" in message, message
    assert fleet.sh(name, "test -e /srv/mcp", check=False).returncode == 1


@pytest.mark.parametrize("login", ["root", "sudo"])
def test_a_timed_out_command_is_killed_on_the_node(make_nodes: MakeNodes, login: str) -> None:
    """#12.8: the per-command timeout kills the remote process group, children included."""
    import asyncio

    from mcfleet.fleet.load import load_fleet
    from mcfleet.transport.base import CommandTimeout
    from mcfleet.transport.ssh import SshPool

    fleet = make_nodes(1, f"atkto{login[0]}", login=login)  # type: ignore[arg-type]
    name = fleet.names[0]
    entry = load_fleet(fleet.fleet_dir).hosts[name]

    async def hang() -> str:
        async with SshPool() as pool:
            conn = await pool.connect(entry)
            with pytest.raises(CommandTimeout) as caught:
                await conn.run("sleep 4711 & sleep 4712", timeout=3)
            return caught.value.message

    message = asyncio.run(hang())
    assert "killed on the node" in message
    time.sleep(1)
    assert fleet.sh(name, "pgrep -f 'sleep 471[12]'", check=False).stdout.strip() == ""


def test_sudo_that_wants_a_terminal_is_named_with_the_rule_that_lifts_it(make_nodes: MakeNodes) -> None:
    """`Defaults requiretty` (older RHEL's default): sudo refuses every command mcfleet sends, which opens
    no terminal; plan says so for that host and names the sudoers line that lifts it."""
    fleet = make_nodes(1, "needtty", login="sudo")
    name = fleet.names[0]
    fleet.sh(name, "umask 0227 && echo 'Defaults:kyle requiretty' > /etc/sudoers.d/zz-tty && visudo -c -q")
    plan = cli("plan", str(fleet.fleet_dir))
    lines = (plan.stdout + plan.stderr).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: "))
    assert lines[at].startswith(f"{name}: cannot run as root: ") and "(requiretty)" in lines[at], lines[at]
    assert (
        lines[at + 1].strip() == "hint: add the rule: Defaults:kyle !requiretty   (in /etc/sudoers.d/kyle, mode 0440)"
    )


def test_a_missing_sudo_or_doas_rule_fails_that_host_only_and_names_the_rule(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    """#17: plan says which host lacks its rule; apply fails that host with the rule and goes on.

    Three nodes reached as kyle: one with its sudo rule, one whose sudo rule is gone, one whose doas
    rule is gone.  `logs` and `exec --as-root` (which escalate) name the missing rule too.
    """
    fleet = make_nodes(3, "norule", login=["sudo", "sudo", "doas"])
    ok, no_sudo, no_doas = fleet.names
    fleet.sh(no_sudo, "rm /etc/sudoers.d/kyle")
    fleet.sh(no_doas, "rm /etc/doas.conf")
    rules = {no_sudo: "kyle ALL=(ALL) NOPASSWD: ALL", no_doas: "permit nopass kyle as root"}

    plan = cli("plan", str(fleet.fleet_dir))
    lines = (plan.stdout + plan.stderr).splitlines()
    for host, rule in rules.items():  # the host's own entry: what refused, then its hint with the rule
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{host}: "))
        assert lines[at].startswith(f"{host}: cannot run as root: "), lines[at]
        assert "refuses to run commands as root for kyle" in lines[at], lines[at]
        assert rule in lines[at + 1] and lines[at + 1].lstrip().startswith("hint: add the rule"), lines[at + 1]
    assert not [line for line in lines if ok in line and "NOPASSWD" in line]
    assert f"; 2 hosts without a sudo/doas rule ({no_sudo}, {no_doas})." in plan.stdout, plan.stdout

    run = cli("apply", str(fleet.fleet_dir), "--all", "--bundle", str(agent_bundle), "--json")
    assert run.code == 1, run.stdout + run.stderr
    hosts = run.summary["hosts"]
    assert hosts[ok]["status"] in ("changed", "ok"), hosts[ok]
    for host, rule in rules.items():
        failed = json.dumps(hosts[host])
        assert hosts[host]["status"] == "failed" and rule in failed and "check free space" not in failed, failed
    assert fleet.sh(ok, "systemctl is-active mcp-agent").stdout.strip() == "active"

    for host, rule in rules.items():
        logs = cli("logs", host, "agent", "-C", str(fleet.fleet_dir))
        assert logs.code == 1 and rule in logs.stderr and host in logs.stderr, logs.stderr
        run_as_root = cli("exec", "--on", host, "--as-root", "--json", "-C", str(fleet.fleet_dir), "--", "id -u")
        said = json.loads(run_as_root.stdout)["hosts"][0]
        assert run_as_root.code == 1 and rule in (said["error"] or ""), said


def test_the_agent_unit_security_score(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    """#12.5: `systemd-analyze security` of the agent's unit on a provisioned node (printed)."""
    fleet, name = provisioned(make_nodes, agent_bundle, "atkhd")
    out = fleet.sh(name, "systemd-analyze security --no-pager mcp-agent.service", check=False).stdout
    overall = [line for line in out.splitlines() if "Overall exposure level" in line]
    assert overall, out[-2000:]
    score = float(overall[0].split("level for mcp-agent.service:")[1].split()[0])
    print(f"\nFIGURES systemd-analyze security mcp-agent: {score}")
    assert fleet.sh(name, "systemctl is-active mcp-agent").stdout.strip() == "active"
