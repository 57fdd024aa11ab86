"""NixOS-mechanics tier: the real NixOS deploy path against a lab node with its own nix store.

No nixpkgs: the node's system is a tiny closure built with builtins.derivation (see
tests/nix/nixos_lab.py).  Everything else is real: `nix build` of the fleet flake's
`nixosConfigurations.<node>.config.system.build.toplevel`, `nix copy --to ssh-ng://root@…`
into the node's store over SSH with the pinned host key, `nix-env -p …/system --set`,
`switch-to-configuration switch`, the agent's gRPC health check, the confirmation over a
fresh SSH connection, and the node-side deadman that switches back by itself.

Logins, as the real fleet's hosts are reached: the whole apply / idempotent re-apply / rollback /
plan test runs as root, as kyle with `sudo -n` and as kyle with `doas -n` (`nix copy` then runs the
node's store as root through `remote-program=sudo -n nix-daemon`); the deadman after a kill runs as
root and sudo, the goals as root and doas; the signed push as root, and as kyle WITHOUT escalation
for the copy (the node's daemon checks the signatures of an untrusted user, then trusts kyle as a
trusted-user) with the switch through doas.
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

from mcfleet.lab.login import LOGINS, Login
from mcfleet.nix.argv import nix_env
from tests.integration.apply_lab import (  # noqa: F401 (fixtures)
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
)
from tests.nix.nixos_lab import current_system, make_nixos_node, set_variant, switch_log

pytestmark = [pytest.mark.nixos_mechanics, pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def _nix_build(root: Path, name: str) -> str:
    """The toplevel path the flake gives `name` now (evaluated only: apply builds it)."""
    run = subprocess.run(
        ["nix", "eval", "--raw", f"{root}#nixosConfigurations.{name}.config.system.build.toplevel.outPath"],
        capture_output=True,
        text=True,
        env=nix_env(),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def _serving(fleet: Nodes, name: str) -> bool:
    """The agent answers (this node has no rootless podman for mcp, so its health is NOT_SERVING
    with that reason; the version it reports shows the agent itself is up)."""
    # asked a few times: on a loaded machine the first `agent status` can time out while the
    # freshly (re)started agent still imports its modules
    for _ in range(5):
        status = cli("agent", "status", name, "--root", str(fleet.fleet_dir), "--json")
        rows = json.loads(status.stdout or "{}").get("hosts", []) if status.stdout.startswith("{") else []
        if rows and rows[0].get("version"):
            return True
        time.sleep(3)
    print(f"agent status never answered with a version: {status.stdout} {status.stderr}")
    return False


def _deployed(make_nodes: MakeNodes, agent_bundle: Path, prefix: str, login: Login = "root") -> tuple[Nodes, str, str]:
    fleet = make_nodes(1, prefix, login=login)
    name = fleet.names[0]
    root = make_nixos_node(fleet, name, agent_bundle)
    first = cli("apply", str(root), "--on", name, "--json", "--health-timeout", "60")
    assert first.code == 0, first.stdout + first.stderr
    assert first.phase(name, "push")["status"] == "changed"
    assert first.phase(name, "activate")["status"] == "changed"
    assert first.phase(name, "activate")["message"].startswith("system none → ")  # first deploy: no old system
    v1 = _nix_build(root, name)
    assert current_system(fleet, name) == v1
    print(f"first apply {first.seconds:.1f} s: push: {first.phase(name, 'push')['message']}; "
          f"activate: {first.phase(name, 'activate')['message']}")  # fmt: skip
    return fleet, name, v1


def _saved_plan_of_a_system_built_differently_now_is_refused(fleet: Nodes, name: str, v1: str, v2: str) -> None:
    """A plan saved with `~ system v1 → v2`, then the flake's Nix files change outside hosts/ (which a
    plan's inputs do not list): apply of the saved plan would switch to a third system; refused."""
    root = fleet.fleet_dir
    saved = root / "plan.json"
    assert cli("plan", "-C", str(root), "--on", name, "-o", str(saved)).code == 0
    set_variant(root, name, "good-3")
    stale = cli("apply", "-C", str(root), str(saved), "--yes")
    assert stale.code == 1, stale.stdout + stale.stderr
    assert f"stale plan: it switches {name} to {v2.rsplit('/', maxsplit=1)[-1][:8]}" in stale.stderr, stale.stderr
    assert current_system(fleet, name) == v1
    set_variant(root, name, "good-2")
    saved.unlink()


@pytest.mark.parametrize("login", LOGINS)
def test_apply_copies_switches_is_idempotent_and_rolls_back_an_unhealthy_generation(
    make_nodes: MakeNodes, agent_bundle: Path, login: Login
) -> None:
    fleet, name, v1 = _deployed(make_nodes, agent_bundle, f"nx{login[0]}", login)
    root = fleet.fleet_dir
    assert switch_log(fleet, name)[-1].endswith(f"switch {v1}")
    assert fleet.sh(name, "readlink -f /nix/var/nix/profiles/system").stdout.strip() == v1
    assert fleet.sh(name, "readlink -f /srv/mcp/mcp-agent").stdout.strip().startswith("/nix/store/")
    assert _serving(fleet, name)

    # Second apply: the store has it, the system is current: nothing copied, nothing switched.
    again = cli("apply", str(root), "--on", name, "--json")
    assert again.code == 0, again.stdout + again.stderr
    print(f"second apply (nothing to do): {again.seconds:.1f} s")
    assert again.summary["hosts"][name]["status"] in ("unchanged", "ok"), again.stdout
    assert not [e for e in again.events if e.get("phase") in ("push", "activate") and e["status"] == "changed"]
    assert len(switch_log(fleet, name)) == 1

    # A generation whose agent never becomes healthy: rolled back to v1, exit 1, "rolled back".
    set_variant(root, name, "broken")
    broken = _nix_build(root, name)
    bad = cli("apply", str(root), "--on", name, "--health-timeout", "30", "--json")
    assert bad.code == 1, bad.stdout + bad.stderr
    print(f"unhealthy generation: {bad.seconds:.1f} s: {bad.phase(name, 'activate')['message']}")
    assert bad.phase(name, "activate")["status"] == "rolled back"
    bad = cli("apply", str(root), "--on", name, "--health-timeout", "30")  # the text view says it too
    assert bad.code == 1, bad.stdout + bad.stderr
    assert "rolled back" in bad.stdout
    assert current_system(fleet, name) == v1
    assert fleet.sh(name, "readlink -f /nix/var/nix/profiles/system").stdout.strip() == v1
    generations = fleet.sh(name, "ls /nix/var/nix/profiles/").stdout
    assert generations.count("system-") == 1, generations  # the failed generation is deleted
    assert switch_log(fleet, name)[-2:] == [
        switch_log(fleet, name)[-2].split(" ", 1)[0] + f" switch {broken}",
        switch_log(fleet, name)[-1].split(" ", 1)[0] + f" switch {v1}",
    ]
    assert _serving(fleet, name)
    assert fleet.sh(name, "stat -c '%U %a' /var/lib/mcfleet /var/lib/mcfleet/nixos-rollback.sh").stdout.split() == [
        "root", "700", "root", "700",
    ]  # fmt: skip

    # The plan: /run/current-system vs the toplevel the flake evaluates to, with the package
    # changes from `nix store diff-closures` once both closures are in the local store.
    set_variant(root, name, "good-2")
    v2 = _nix_build(root, name)
    subprocess.run(["nix", "build", "--no-link", f"{root}#nixosConfigurations.{name}.config.system.build.toplevel"],
                   env=nix_env(), check=True, capture_output=True)  # fmt: skip
    planned = cli("plan", "-C", str(root), "--on", name, "--json")
    assert planned.code == 0, planned.stdout + planned.stderr
    (system,) = [a for a in json.loads(planned.stdout)["actions"] if a["subject"] == "system"]
    assert system["before"]["system"] == v1 and system["after"]["system"] == v2
    assert system["reason"].startswith("system ") and "→" in system["reason"]
    assert system["after"]["packages"], system  # diff-closures lines
    text = cli("plan", "-C", str(root), "--on", name)
    assert "system" in text.stdout and "→" in text.stdout, text.stdout

    if login == "root":
        _saved_plan_of_a_system_built_differently_now_is_refused(fleet, name, v1, v2)

    # `nix run .#deploy -- <node>` is `mcfleet deploy <node>`: the same path, from the flake.
    ran = subprocess.run(["nix", "run", ".#deploy", "--", name, "--json"], cwd=root, capture_output=True,
                         text=True, env=nix_env(), timeout=600, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"phase": "activate", "status": "changed"' in ran.stdout.replace('"phase":"activate"', '"phase": "activate"')
    assert current_system(fleet, name) == v2
    assert fleet.sh(name, "ls /nix/var/nix/profiles/").stdout.count("system-") == 2


@pytest.mark.parametrize("login", ["root", "sudo"])
def test_killing_mcfleet_after_the_switch_leaves_the_node_on_the_previous_generation(
    make_nodes: MakeNodes, agent_bundle: Path, login: Login
) -> None:
    fleet, name, v1 = _deployed(make_nodes, agent_bundle, f"nk{login[0]}", login)
    root = fleet.fleet_dir
    set_variant(root, name, "good-3")
    v3 = _nix_build(root, name)
    argv = [*mcfleet_argv(), "apply", str(root), "--on", name, "--health-timeout", "40", "--confirm-timeout", "45"]
    env = {**os.environ, "MCFLEET_TEST_HOLD_BEFORE_CONFIRM": "300"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 300
        seen = ""
        while "holding before confirm" not in seen:
            assert time.monotonic() < deadline, f"the apply never got healthy: {seen}"
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline()
                assert line, f"the apply ended early ({proc.wait()}): {seen}"
                seen += line
        assert current_system(fleet, name) == v3  # switched and healthy, never confirmed
        assert fleet.sh(name, "ls /var/lib/mcfleet/.nixos-deadman.* | wc -l").stdout.strip() == "1"
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    logged = "deadman: no confirmation, rolled back to " + v1
    deadline = time.monotonic() + 150
    while logged not in fleet.sh(name, "cat /var/lib/mcfleet/nixos-deadman.log 2>/dev/null; true").stdout:
        assert time.monotonic() < deadline, "the node did not switch back by itself"
        time.sleep(1)
    print(f"node back on the previous generation {time.monotonic() - killed_at:.1f} s after the kill")
    assert current_system(fleet, name) == v1
    assert fleet.sh(name, "readlink -f /nix/var/nix/profiles/system").stdout.strip() == v1
    assert fleet.sh(name, "ls /var/lib/mcfleet/.nixos-deadman.* 2>/dev/null | wc -l").stdout.strip() == "0"
    deadline = time.monotonic() + 60
    while not _serving(fleet, name):
        assert time.monotonic() < deadline, "the previous agent does not serve again"
        time.sleep(1)


@pytest.mark.parametrize("login", ["root", "doas"])
def test_goals_dry_activate_and_boot_do_not_activate(make_nodes: MakeNodes, agent_bundle: Path, login: Login) -> None:
    fleet, name, v1 = _deployed(make_nodes, agent_bundle, f"ng{login[0]}", login)
    root = fleet.fleet_dir
    set_variant(root, name, "good-4")
    v4 = _nix_build(root, name)
    dry = cli("apply", str(root), "--on", name, "--goal", "dry-activate", "--json")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert dry.phase(name, "activate")["message"].startswith("dry-activate: would activate " + v4)
    assert switch_log(fleet, name)[-1].endswith(f"dry-activate {v4}")
    assert current_system(fleet, name) == v1
    assert fleet.sh(name, "readlink -f /nix/var/nix/profiles/system").stdout.strip() == v1
    # nothing after the switch runs: the manifest would record a system the node does not run
    assert dry.phase(name, "manifest") == {
        "status": "skipped",
        "message": "--goal dry-activate: a dry run, nothing else is changed",
    }
    boot = cli("apply", str(root), "--on", name, "--goal", "boot", "--json")
    assert boot.code == 0, boot.stdout + boot.stderr
    assert switch_log(fleet, name)[-1].endswith(f"boot {v4}")
    assert fleet.sh(name, "readlink -f /nix/var/nix/profiles/system").stdout.strip() == v4  # the next boot's
    assert current_system(fleet, name) == v1  # nothing activated now
    assert boot.phase(name, "manifest")["status"] == "skipped"
    assert boot.phase(name, "manifest")["message"].startswith("--goal boot: the new system starts at the next boot")
    bad = cli("apply", str(root), "--on", name, "--goal", "reboot")
    assert bad.code == 2 and "--goal 'reboot' is not one of switch, test, boot, dry-activate" in bad.stderr


@pytest.mark.parametrize("login", ["root", "doas"])
def test_a_signed_push_is_checked_by_the_node_against_the_key_it_trusts(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path, login: Login
) -> None:
    """trust=signed: mcfleet signs the closure (`nix store sign`) and copies WITHOUT --no-check-sigs, so the
    node's nix verifies every path against its trusted-public-keys (what the NixOS module declares).

    root: the copy reaches the node's store as root.  doas: kyle with "sudo": false, so `nix copy` talks to
    the node's nix daemon as kyle, an untrusted user, with no escalation at all (only the switch runs
    through `doas -n`); afterwards trust=trusted-user (kyle in the node's trusted-users) takes an unsigned
    system the same way."""
    fleet = make_nodes(1, f"ns{login[0]}", login=login)
    name = fleet.names[0]
    root = make_nixos_node(fleet, name, agent_bundle)
    secret, public = tmp_path / "lab-signing.sec", tmp_path / "lab-signing.pub"
    key_name = f"mcfleet-lab-{os.getpid()}-{time.time_ns()}"  # fresh per run: the local store keeps old signatures
    made = subprocess.run(["nix", "key", "generate-secret", "--key-name", key_name], capture_output=True,
                          text=True, env=nix_env(), check=True)  # fmt: skip
    secret.write_text(made.stdout)
    secret.chmod(0o600)  # mcfleet refuses a signing key others can read
    pub = subprocess.run(["nix", "key", "convert-secret-to-public"], input=made.stdout, capture_output=True,
                         text=True, env=nix_env(), check=True).stdout.strip()  # fmt: skip
    public.write_text(pub)
    host_file = root / "hosts" / name / "host.json"
    data = json.loads(host_file.read_text())
    data["nix"] = {"trust": "signed", "public_keys": [pub], "signing_key_file": str(secret)}
    if login != "root":
        data["ssh"]["sudo"] = False  # the copy runs as kyle; commands still escalate through ssh.become
    host_file.write_text(json.dumps(data, indent=2) + "\n")

    # A node that does not trust the key refuses the unsigned-for-it paths: nix's own check, on the node.
    refused = cli("apply", str(root), "--on", name, "--json")
    assert refused.code == 1, refused.stdout + refused.stderr
    assert "lacks a valid signature" in refused.phase(name, "push")["message"]
    assert f"extra-trusted-public-keys = {pub}" in refused.stdout, refused.stdout
    assert current_system(fleet, name) == ""

    # as the NixOS module would: the key in nix.conf, and the daemon restarted to read it
    fleet.sh(name, f"mkdir -p /etc/nix && echo 'trusted-public-keys = {pub}' >> /etc/nix/nix.conf && "
                   "systemctl restart nix-daemon && sleep 1")  # fmt: skip
    ok = cli("apply", str(root), "--on", name, "--json")
    assert ok.code == 0, ok.stdout + ok.stderr
    v1 = _nix_build(root, name)
    assert current_system(fleet, name) == v1
    sigs = fleet.sh(name, f"nix-store --query --requisites {v1} | xargs nix path-info --sigs "
                          "--extra-experimental-features nix-command").stdout  # fmt: skip
    assert sigs.count(f"{key_name}:") == 2, sigs  # the system and the agent, each signed with our key
    if login == "root":
        return

    # trust=trusted-user: the node's nix trusts kyle, so an unsigned system is taken as it is (--no-check-sigs)
    set_variant(root, name, "good-5")
    data["nix"] = {"trust": "trusted-user"}
    host_file.write_text(json.dumps(data, indent=2) + "\n")
    untrusted = cli("apply", str(root), "--on", name, "--json")
    assert untrusted.code == 1, untrusted.stdout + untrusted.stderr
    said = untrusted.stdout  # the message, and the hint naming the line the node's nix.conf lacks
    assert "lacks a valid signature" in said and "extra-trusted-users = kyle" in said, said
    fleet.sh(name, "echo 'trusted-users = root kyle' >> /etc/nix/nix.conf && systemctl restart nix-daemon")
    trusted = cli("apply", str(root), "--on", name, "--json")
    assert trusted.code == 0, trusted.stdout + trusted.stderr
    assert current_system(fleet, name) == _nix_build(root, name)
