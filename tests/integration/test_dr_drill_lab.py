"""The DR drill: podman's whole state wiped on a node, one `mcfleet agent recover HOST` brings
every service back from the registry, stage by stage, with its volume data intact.

The wipe is what the incident did: `podman system reset --force` as mcp (containers, images,
networks, podman's database and storage all gone; the services' bind-mounted /srv/<svc>
folders stay).  It also leaves mcp's running podman API service stale (its storage deleted
under it, its user namespace abandoned): the agent must notice and restart it, or recover
hangs.  The wipe and recover run twice in a row, as an operator retrying a drill would.

Real programs only: a systemd-nspawn node, sshd, mcp-agent.service, rootless podman as mcp,
images from the lab registry (docker-registry, TLS).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import pytest

from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import MakeNodes, Nodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401
from tests.integration.test_deploy_lab import AS_MCP, answer, containers, host_port, plan, service, write_service

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

STAGES = {"foundation": ["db0", "db1", "db2"], "core": ["core0", "core1", "core2"],
          "services": ["web0", "web1", "web2", "web3"]}  # fmt: skip
IMAGES = {"foundation": "demo/db:1", "core": "demo/api:1", "services": "demo/hello:1"}
NAMES = [name for names in STAGES.values() for name in names]
WIPE = (
    f"for try in 1 2 3 4 5; do {AS_MCP} system reset --force; "
    f'[ -z "$({AS_MCP} ps -aq 2>&1)" ] && [ -z "$({AS_MCP} images -q 2>&1)" ] && exit 0; sleep 1; done; exit 1'
)
APP = {name: IMAGES[stage].split("/")[1].split(":")[0] for stage, names in STAGES.items() for name in names}


def started_at(fleet: Nodes, host: str, names: list[str] = NAMES) -> dict[str, str]:
    """container -> when its current run started (RFC 3339 with nanoseconds: sortable as text
    within one day and one zone, which one drill on one node is)."""
    out = fleet.sh(host, f"{AS_MCP} inspect --format '{{{{.Name}}}} {{{{.State.StartedAt}}}}' {' '.join(names)}")
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines() if line}


def wipe(fleet: Nodes, host: str) -> None:
    # The reset races the containers' own exit handlers (`podman container cleanup` writes to
    # the database the reset is deleting): it may fail ("unlinkat …/libpod: directory not
    # empty") or leave a container behind whose network namespace is gone ("unknown FS magic").
    # An operator runs it again until podman lists nothing, and so does the drill.
    fleet.sh(host, WIPE)
    assert containers(fleet, host) == {}
    assert fleet.sh(host, f"{AS_MCP} images -q").stdout.strip() == ""


def test_recover_after_podman_system_reset_brings_every_service_back_in_stage_order_with_its_data(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "drill")
    host, root = fleet.names[0], str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    for stage, names in STAGES.items():
        for name in names:
            write_service(fleet, host, service(name, stage, f"{registry.address}/{IMAGES[stage]}"))
    first = cli("apply", root, "--on", host, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    ports = {name: host_port(fleet, host, name) for name in NAMES}
    for name in NAMES:  # what each service wrote into its volume before the disaster
        fleet.sh(host, f"{AS_MCP} exec {name} sh -c 'echo precious {name} > /data/precious'")

    for drill in (1, 2):
        wipe(fleet, host)
        recovered = cli("agent", "recover", host, "--json", "-C", root, timeout=300)
        assert recovered.code == 0, recovered.stdout + recovered.stderr
        report = json.loads(recovered.stdout)
        print(f"drill {drill}: recover of {len(NAMES)} services after podman system reset: "
              f"{recovered.seconds:.1f} s (CLI), {report['seconds']:.1f} s (report)")  # fmt: skip
        assert [(s["stage"], s["healthy"]) for s in report["stages"]] == [(s, True) for s in STAGES]
        for stage in report["stages"]:
            assert sorted(stage["containers"]) == sorted(f"create {n}" for n in STAGES[stage["stage"]])

        running = containers(fleet, host)
        assert sorted(running) == sorted(NAMES) and {c["state"] for c in running.values()} == {"running"}
        # one API service (its main process and worker): no stale worker left hanging from before the wipe
        services = fleet.sh(host, "pgrep -u mcp -f -x '/usr/bin/podman .*system service' || true").stdout.split()
        assert len(services) <= 2, fleet.sh(host, "ps -o pid,lstart,args -u mcp").stdout
        # stage order: every container of a stage started after the whole previous stage
        started = started_at(fleet, host)
        for before, after in itertools.pairwise(STAGES.values()):
            assert max(started[n] for n in before) < min(started[n] for n in after), started
        for name in NAMES:  # the data, read back through the recovered service's own mount
            assert answer(fleet, host, ports[name]) == f"{APP[name]} 1 port=8080\n"  # the image says its name
            read = fleet.sh(host, f"{AS_MCP} exec {name} cat /data/precious").stdout
            assert read == f"precious {name}\n"

    # the node is as the files say: nothing left to do
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]


REBOOTED = {"foundation": "db0", "core": "core0", "services": "web0"}


def deploy_one_per_stage(fleet: Nodes, agent_bundle: Path, registry: RegistryInfo) -> None:
    """REBOOTED's services applied on the fleet's one node (no DNS, cert or route providers)."""
    host, root = fleet.names[0], str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    for stage, name in REBOOTED.items():
        write_service(fleet, host, service(name, stage, f"{registry.address}/{IMAGES[stage]}"))
    first = cli("apply", root, "--on", host, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr


def test_a_rebooted_node_brings_its_services_back_by_itself_in_stage_order_with_its_data(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    """The incident's reboot: /run is new (podman's runtime state and mcp's user session with it), the
    containers are stopped, and nobody runs a command.  The agent's unit starts at boot and its boot
    sequence starts each stage once the one before is healthy; the plan then has nothing to do."""
    fleet = make_nodes(1, "reboot")
    host, root, node = fleet.names[0], str(fleet.fleet_dir), fleet.nodes[0]
    deploy_one_per_stage(fleet, agent_bundle, registry)
    fleet.sh(host, f"{AS_MCP} exec db0 sh -c 'echo precious > /data/precious'")
    fleet.sh(host, "touch /run/before-reboot")  # /run is a new tmpfs at each boot
    before = node.live_pid()

    rebooted = cli("lab", "reboot", host, "--dir", str(fleet.lab.root), "--json")  # `systemctl reboot` inside
    assert rebooted.code == 0 and json.loads(rebooted.stdout)["rebooted"], rebooted.stdout + rebooted.stderr
    assert node.live_pid() != before  # nspawn exited 133 and the node's runner booted it again
    wrong = cli("lab", "reboot", "nosuch", "--dir", str(fleet.lab.root))
    assert wrong.code == 2 and "no lab node named 'nosuch'" in wrong.stderr, wrong.stderr
    assert fleet.sh(host, "test -e /run/before-reboot", check=False).returncode == 1
    for name in REBOOTED.values():
        assert answer(fleet, host, host_port(fleet, host, name), within_s=120).endswith("1 port=8080\n"), name
    assert fleet.sh(host, f"{AS_MCP} exec db0 cat /data/precious").stdout == "precious\n"
    started = started_at(fleet, host, list(REBOOTED.values()))
    assert started["db0"] < started["core0"] < started["web0"], started
    status = cli("agent", "status", "--on", host, "--json", "-C", root)
    [row] = json.loads(status.stdout)["hosts"]
    assert status.code == 0 and row["health"] == "SERVING", row
    log = cli("logs", host, "agent", "-n", "80", "-C", root).stdout
    assert "boot-ok" in log, log
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, [(a["subject"], a["reason"], a.get("before"), a.get("after")) for a in data["actions"]]


def test_a_node_that_boots_before_its_image_registry_brings_its_services_up_once_the_registry_answers(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    """A power cut: the node comes back before the image registry (MCR, on another node), and its images
    are gone (the incident's `podman system reset`).  The boot fails at once at foundation (the pull is
    refused) and core and services are not started; the agent tries the boot again by itself (5 s,
    10 s, ... with the unit's defaults), and once the registry answers every stage comes up, in order,
    with nobody running a command.  Before, the node stayed down until someone applied or recovered."""
    fleet = make_nodes(1, "late")
    host, root, node = fleet.names[0], str(fleet.fleet_dir), fleet.nodes[0]
    deploy_one_per_stage(fleet, agent_bundle, registry)
    wipe(fleet, host)
    address, port = registry.address.rsplit(":", 1)
    # the registry refuses the node's connections (from the node's own network namespace, outside it)
    block = ["OUTPUT", "-p", "tcp", "-d", address, "--dport", port, "-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["ip", "netns", "exec", node.netns, "iptables", "-I", *block], check=True)
    try:
        rebooted = cli("lab", "reboot", host, "--dir", str(fleet.lab.root), "--json")
        assert rebooted.code == 0, rebooted.stdout + rebooted.stderr
        deadline = time.monotonic() + 90
        log = ""
        while "boot-retry" not in log:
            assert time.monotonic() < deadline, f"the failed boot was not tried again:\n{log}"
            time.sleep(1)
            log = cli("logs", host, "agent", "-n", "200", "-C", root).stdout
        assert "boot-failed" in log and containers(fleet, host) == {}, log
        status = cli("status", "--on", host, "--json", "-C", root)
        [row] = json.loads(status.stdout)["hosts"]
        assert status.code == 1 and row["services_up"] == 0, row
        assert row["boot"].startswith("failed at stage foundation") or row["boot"].startswith("running stage"), row
    finally:
        subprocess.run(["ip", "netns", "exec", node.netns, "iptables", "-D", *block], check=True)
    for name in REBOOTED.values():  # the next attempt (at most ~40 s later) pulls and starts every stage
        assert answer(fleet, host, host_port(fleet, host, name), within_s=150).endswith("1 port=8080\n"), name
    started = started_at(fleet, host, list(REBOOTED.values()))
    assert started["db0"] < started["core0"] < started["web0"], started
    assert "boot-ok" in cli("logs", host, "agent", "-n", "200", "-C", root).stdout
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, [(a["subject"], a["reason"], a.get("before"), a.get("after")) for a in data["actions"]]
