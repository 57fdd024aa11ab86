"""`mcfleet apply` deploys the services on a systemd lab node: rootless podman as mcp, images
from the lab registry, the agent's registry filled by apply.

Real programs only: systemd-nspawn node, sshd, the agent bundle run by mcp-agent.service,
rootless podman, Debian's docker-registry with the demo images (each answers HTTP with
`<name> <version> port=<$PORT>`).  The fleet has no providers here (cert/dns/route show as
blocked lines in the plan): this test is about the containers.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.lab.fleetdir import volume_service
from mcfleet.lab.images import START
from mcfleet.lab.login import Login
from mcfleet.lab.peers.registry import RegistryInfo
from mcfleet.lab.podman import PODMAN_AS_MCP
from tests.integration.apply_lab import (  # noqa: F401
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
)
from tests.integration.logs_lab import check_logs, check_push_progress

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

AS_MCP = PODMAN_AS_MCP
service = volume_service  # the other deploy lab tests import both from here


def write_service(fleet: Nodes, host: str, svc: dict[str, Any]) -> None:
    folder = fleet.fleet_dir / "hosts" / host / "services"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{svc['name']}.json").write_text(json.dumps(svc, indent=2))


def host_port(fleet: Nodes, host: str, svc: str) -> int:
    ports = desired_state(load_fleet(fleet.fleet_dir))[host].services[svc].ports
    [port] = ports.values()
    return port


def answer(fleet: Nodes, host: str, port: int, within_s: float = 60) -> str:
    deadline = time.monotonic() + within_s
    out = ""
    while time.monotonic() < deadline:
        out = fleet.sh(host, f"curl -sf http://127.0.0.1:{port}/", check=False).stdout
        if out:
            return out
        time.sleep(0.5)
    raise AssertionError(f"nothing answered on {host}:{port} within {within_s:g}s")


def containers(fleet: Nodes, host: str) -> dict[str, dict[str, str]]:
    out = fleet.sh(host, f"{AS_MCP} ps -a --format json").stdout
    return {c["Names"][0]: {"id": c["Id"], "image": c["Image"], "state": c["State"]} for c in json.loads(out or "[]")}


def plan(root: str, *args: str) -> tuple[int, dict[str, Any]]:
    run = cli("plan", root, "--json", *args)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    return run.code, json.loads(run.stdout)


def test_apply_deploys_replans_clean_bumps_one_image_and_removes_a_service_keeping_its_volume(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "dep")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    hello1, hello2 = f"{registry.address}/demo/hello:1", f"{registry.address}/demo/hello:2"
    write_service(fleet, name, service("db", "foundation", f"{registry.address}/demo/db:1"))
    write_service(fleet, name, service("hello", "services", hello1))

    first = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    deploy = first.phase(name, "deploy")
    assert deploy["status"] == "changed", deploy
    assert "foundation: create db" in deploy["message"] and "services: create hello" in deploy["message"]
    # each service answers on the port fleet.derive assigned it, and its program got $PORT (the container port)
    assert answer(fleet, name, host_port(fleet, name, "db")) == "db 1 port=8080\n"
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 1 port=8080\n"
    check_push_progress(first, name, agent_bundle)  # ux: the push's bytes as progress events
    check_logs(fleet, name, root, "hello", host_port(fleet, name, "hello"))  # ux: `mcfleet logs` of a container
    manifest = fleet.manifest(name)
    assert sorted(manifest["services"]) == ["db", "hello"]
    assert manifest["services"]["hello"]["images"] == {"hello": hello1}
    # the agent's registry holds what apply sent (so a restart or Recover brings them back)
    status = cli("agent", "status", "--on", name, "--json", "-C", root)
    assert status.code == 0, status.stdout + status.stderr

    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, [a for a in data["actions"]]  # the ports db and hello hold are theirs, not a conflict
    a_port_another_program_holds_is_refused_by_the_plan(fleet, name, root, agent_bundle, hello1)

    # an image bump: `~` with old -> new, and apply replaces only that container
    before = containers(fleet, name)
    write_service(fleet, name, service("hello", "services", hello2))
    code, data = plan(root, "--detailed-exitcode")
    assert code == 2
    [bump] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert bump["kind"] == "update" and bump["subject"] == "service hello"
    assert bump["reason"] == f"image hello: {hello1} → {hello2}"
    assert bump["before"]["images"] == {"hello": hello1} and bump["after"]["images"] == {"hello": hello2}
    second = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert second.code == 0, second.stdout + second.stderr
    after = containers(fleet, name)
    assert after["db"]["id"] == before["db"]["id"]  # untouched
    assert after["hello"]["id"] != before["hello"]["id"] and after["hello"]["image"] == hello2
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 2 port=8080\n"
    a_definition_that_cannot_start_or_get_healthy_keeps_the_previous_one(fleet, name, root, agent_bundle, hello2)

    remove_db_keeping_its_volume(fleet, name, root, agent_bundle)
    recover_hello(fleet, name, root)


SQUATTED = 28181


def a_port_another_program_holds_is_refused_by_the_plan(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, image: str
) -> None:
    """A program outside mcfleet listens on the port a new service publishes: the plan refuses the service,
    saying where and what to do, and apply changes nothing (was: `+ service extra` in the plan, then
    podman's "address already in use" in the middle of the apply's stage).  Once the program is gone,
    the plan creates it."""
    extra = service("extra", "services", image)
    extra["components"][0]["routes"][0]["host_port"] = SQUATTED
    write_service(fleet, name, extra)
    hold = f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {SQUATTED})); s.listen(); time.sleep(300)"
    pid = fleet.sh(name, f'setsid python3 -c "{hold}" </dev/null >/dev/null 2>&1 & echo $!').stdout.strip()
    try:
        deadline = time.monotonic() + 10
        while f":{SQUATTED} " not in fleet.sh(name, "ss -ltnH", check=False).stdout:
            assert time.monotonic() < deadline, "the squatting program did not listen"
            time.sleep(0.2)
        code, data = plan(root, "--detailed-exitcode")
        assert code != 0, data
        [refused] = [a for a in data["actions"] if a["phase"] == "deploy"]
        assert (refused["kind"], refused["subject"]) == ("refuse", "service extra"), refused
        assert refused["reason"] == (f"service extra publishes on a port another program on {name} listens on "
                                     f"(127.0.0.1:{SQUATTED}): podman could not start its container")  # fmt: skip
        assert f"ss -tulpn '( sport = :{SQUATTED} )'" in refused["hint"], refused
        run = cli("apply", root, "--on", name, "--yes", "--bundle", str(agent_bundle), "--json")
        assert run.code != 0 and "refuse" in run.stdout + run.stderr, run.stdout + run.stderr
        assert "extra" not in containers(fleet, name)
        the_override_runs_the_rest_never_the_refused_service(fleet, name, root, agent_bundle)
    finally:
        fleet.sh(name, f"kill {pid}", check=False)
    deadline = time.monotonic() + 10
    while True:
        _, data = plan(root)
        kinds = {a["subject"]: a["kind"] for a in data["actions"] if a["phase"] == "deploy"}
        if kinds == {"service extra": "create"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert kinds == {"service extra": "create"}, kinds
    (fleet.fleet_dir / "hosts" / name / "services" / "extra.json").unlink()


def the_override_runs_the_rest_never_the_refused_service(
    fleet: Nodes, name: str, root: str, agent_bundle: Path
) -> None:
    """`--override HOST:service extra` lets another service's change run; extra's refused definition is never
    sent to the agent (was: sent with the others, podman failed on the held port, and the other change was
    put back with it)."""
    db = service("db", "foundation", containers(fleet, name)["db"]["image"])
    db["components"][0]["env"] = ["OVERRIDE_TEST=1"]
    write_service(fleet, name, db)
    run = cli("apply", root, "--on", name, "--yes", "--bundle", str(agent_bundle), "--json",
              "--override", f"{name}:service extra")  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    assert "extra" not in containers(fleet, name)
    shown = fleet.sh(name, f"{AS_MCP} container inspect --format '{{{{.Config.Env}}}}' db").stdout
    assert "OVERRIDE_TEST=1" in shown, shown
    _code, data = plan(root)
    assert [(a["kind"], a["subject"]) for a in data["actions"] if a["phase"] == "deploy"] == [
        ("refuse", "service extra")
    ]


def a_definition_that_cannot_start_or_get_healthy_keeps_the_previous_one(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, image: str
) -> None:
    """An unknown user: podman cannot start the new container; the old one is put back and answers (was:
    removed first, hello down until the next good deploy).  Rootless podman's port forwarder of the failed
    start outlives it for seconds: the put-back start waits for the port.  A definition that starts and
    never gets healthy is put back too, after `--stage-timeout`."""
    running = containers(fleet, name)["hello"]["id"]
    bad = service("hello", "services", image)
    bad["components"][0]["user"] = "nosuchuser"
    write_service(fleet, name, bad)
    failed = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert failed.code == 1, failed.stdout + failed.stderr
    deploy = failed.phase(name, "deploy")
    assert deploy["status"] == "failed" and "unable to find user nosuchuser" in deploy["message"], deploy
    assert deploy["message"].endswith("hello keeps running on its previous definition"), deploy
    assert containers(fleet, name)["hello"] == {"id": running, "image": image, "state": "running"}
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 2 port=8080\n"
    _code, data = plan(root)  # the agent's registry holds what runs: the plan names the change
    [again] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert again["kind"] == "replace" and 'components[0].user: null → "nosuchuser"' in again["reason"], again
    # started, never healthy (it listens nowhere): with --stage-timeout 5 (the agent's own is 120 s) the
    # apply fails in seconds, and hello is put back on its previous definition once more
    asleep = service("hello", "services", image)
    asleep["components"][0]["cmd"] = ["sleep", "600"]
    write_service(fleet, name, asleep)
    began = time.monotonic()
    unhealthy = cli("apply", root, "--on", name, "--stage-timeout", "5", "--bundle", str(agent_bundle), "--json")
    took = time.monotonic() - began
    assert unhealthy.code == 1 and took < 60, (took, unhealthy.stdout + unhealthy.stderr)
    deploy = unhealthy.phase(name, "deploy")
    assert deploy["message"].startswith("stage services did not get healthy: hello not healthy (http check)"), deploy
    assert deploy["message"].endswith(
        f"hello keeps running on its previous definition (see `mcfleet logs {name} hello`)"
    ), deploy
    assert containers(fleet, name)["hello"] == {"id": running, "image": image, "state": "running"}
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 2 port=8080\n"
    # exits at once: podman restarts it again and again; the deploy stops waiting after a few seconds (not the
    # stage timeout: the default 120 s here), puts hello back, and says where its output is
    exiting = service("hello", "services", image)
    exiting["components"][0]["cmd"] = ["sh", "-c", "echo cannot start; exit 3"]
    write_service(fleet, name, exiting)
    began = time.monotonic()
    looping = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    took = time.monotonic() - began
    deploy = looping.phase(name, "deploy")
    assert looping.code == 1 and took < 60, (took, deploy)
    assert "hello cannot get healthy: its container keeps stopping (restarted " in deploy["message"], deploy
    assert deploy["message"].endswith(
        f"hello keeps running on its previous definition (see `mcfleet logs {name} hello`)"
    ), deploy
    assert containers(fleet, name)["hello"] == {"id": running, "image": image, "state": "running"}
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 2 port=8080\n"
    a_changed_health_check_alone_is_kept_or_sent(fleet, name, root, agent_bundle, image)


def a_changed_health_check_alone_is_kept_or_sent(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, image: str
) -> None:
    """Only the health check changes, to a 404: no container is touched; the apply fails and the agent keeps
    the previous definition (was: the failing one, so the plan could not say what changed)."""
    running = containers(fleet, name)["hello"]["id"]
    wrong = service("hello", "services", image)
    wrong["components"][0]["health"]["path"] = "/missing"
    write_service(fleet, name, wrong)
    failed = cli("apply", root, "--on", name, "--stage-timeout", "5", "--bundle", str(agent_bundle), "--json")
    deploy = failed.phase(name, "deploy")
    assert failed.code == 1 and deploy["message"].endswith(
        f"hello keeps its previous definition (see `mcfleet logs {name} hello`)"
    ), deploy
    assert containers(fleet, name)["hello"] == {"id": running, "image": image, "state": "running"}
    _code, data = plan(root)
    [again] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert again["kind"] == "update" and 'components[0].health.path: "/" → "/missing"' in again["reason"], again
    # a check that passes changes no container either: the apply sends it and says so
    slower = service("hello", "services", image)
    slower["components"][0]["health"]["timeout_s"] = 3
    write_service(fleet, name, slower)
    sent = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    deploy = sent.phase(name, "deploy")
    assert sent.code == 0 and deploy["status"] == "changed", deploy
    assert "hello updated (containers as they were)" in deploy["message"], deploy
    assert containers(fleet, name)["hello"]["id"] == running
    write_service(fleet, name, service("hello", "services", image))
    code, data = plan(root, "--detailed-exitcode")
    assert code == 2 and [a["reason"] for a in data["actions"] if a["phase"] == "deploy"] == [
        "the service definition changed: components[0].health.timeout_s: 3.0 → 2.0"
    ], data["actions"]
    assert cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json").code == 0
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]
    an_interrupted_deploy_is_finished_by_the_agent(fleet, name, root, agent_bundle, image)


def an_interrupted_deploy_is_finished_by_the_agent(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, image: str
) -> None:
    """Ctrl-C while the agent waits for a replacement that never gets healthy: apply stops (130) and says the
    agent finishes the stage; the agent does, and puts hello back on its previous definition (was: the call
    was cancelled amid the replace, hello.old left stopped and the new definition running unchecked).  The
    next apply waits for that and says so (was: silent, or "waiting for their health checks")."""
    running = containers(fleet, name)["hello"]["id"]
    asleep = service("hello", "services", image)
    asleep["components"][0]["cmd"] = ["sleep", "600"]
    write_service(fleet, name, asleep)
    argv = [*mcfleet_argv(), "apply", root, "--on", name, "--stage-timeout", "20", "--bundle", str(agent_bundle)]
    # as from a terminal: SIGINT at its default (a test runner's worker may ignore it, and children inherit that)
    undo_ignore = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    )
    apply = subprocess.Popen([sys.executable, "-c", undo_ignore, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert apply.stderr is not None
    seen = []
    for line in apply.stderr:  # the heartbeat: the stage is waiting on the agent's health checks
        seen.append(line)
        if "waiting for their health checks" in line:
            break
    apply.send_signal(signal.SIGINT)
    _out, rest = apply.communicate(timeout=60)
    said = "".join(seen) + rest
    assert apply.returncode == 130, said
    assert "stage services: interrupted here; if the call reached the agent, it finishes it" in said, said
    # the file put right at once: the next apply sends it (the agent holds the sleeping definition until
    # its stage ends), waits for the agent to end the interrupted stage, and says that is what it waits for
    write_service(fleet, name, service("hello", "services", image))
    _code, data = plan(root)  # the plan says the agent is still at it
    [drift] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert drift["reason"].startswith("drift: the container spec on the node differs (hello); the agent is still "
                                      "finishing a deploy of db, hello ("), drift  # fmt: skip
    began = time.monotonic()
    fixed = cli("apply", root, "--on", name, "--bundle", str(agent_bundle))
    assert fixed.code == 0, fixed.stdout + fixed.stderr
    # its first stage (foundation: db) is the call that waits; the interrupted call had asked for both
    assert "stage foundation: checking db: waiting for the agent to finish an earlier deploy of db, hello (" in (
        fixed.stderr
    ), fixed.stderr
    assert time.monotonic() - began < 90  # the 20 s stage timeout, then the put-back, then this deploy
    # the put-back container has the definition sent, so it is left as it is
    assert containers(fleet, name).get("hello") == {"id": running, "image": image, "state": "running"}
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 2 port=8080\n"
    assert "hello.old" not in containers(fleet, name)
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]


def remove_db_keeping_its_volume(fleet: Nodes, name: str, root: str, agent_bundle: Path) -> None:
    # a service file deleted: `-` (volumes kept), its container stopped and removed, its data still there
    starts = fleet.sh(name, "cat /srv/db/starts").stdout
    assert starts.strip()
    (fleet.fleet_dir / "hosts" / name / "services" / "db.json").unlink()
    code, data = plan(root, "--detailed-exitcode")
    [gone] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert gone["kind"] == "delete" and gone["subject"] == "service db" and "volumes are kept" in gone["reason"]
    third = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert third.code == 0, third.stdout + third.stderr
    assert "db" not in containers(fleet, name) and "hello" in containers(fleet, name)
    assert fleet.sh(name, "cat /srv/db/starts").stdout == starts
    assert sorted(fleet.manifest(name)["services"]) == ["hello"]
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]


def recover_hello(fleet: Nodes, name: str, root: str, version: int = 2) -> None:
    # podman's state lost for hello: `agent recover` recreates it from the agent's registry
    fleet.sh(name, f"{AS_MCP} rm -f hello")
    recovered = cli("agent", "recover", name, "--json", "-C", root)
    assert recovered.code == 0, recovered.stdout + recovered.stderr
    report = json.loads(recovered.stdout)
    assert [(s["stage"], s["healthy"]) for s in report["stages"]] == [("services", True)]
    assert any(c.endswith(" hello") for c in report["stages"][0]["containers"])
    assert answer(fleet, name, host_port(fleet, name, "hello")) == f"hello {version} port=8080\n"


def test_a_failed_first_deploy_whose_file_is_then_deleted_is_removed_from_the_agent(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    """The node's only service fails its first deploy (its image does not exist): the agent has it in its
    registry (it would start it again at every boot), the manifest does not. Its file deleted, the plan
    must still see it (the host then declares no service and records none) and apply remove it."""
    fleet = make_nodes(1, "ghost")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    write_service(fleet, name, service("ghost", "services", f"{registry.address}/demo/no-such-image:1"))
    first = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert first.code == 1 and first.phase(name, "deploy")["status"] == "failed", first.stdout + first.stderr
    assert fleet.manifest(name).get("services", {}) == {}

    (fleet.fleet_dir / "hosts" / name / "services" / "ghost.json").unlink()
    code, data = plan(root, "--detailed-exitcode")
    assert code == 2, data
    [gone] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert (gone["kind"], gone["subject"]) == ("delete", "service ghost"), gone
    assert gone["reason"].startswith("registered with the agent, not declared in the files")
    second = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert second.code == 0, second.stdout + second.stderr
    assert second.phase(name, "deploy")["status"] == "changed"
    assert "ghost" not in containers(fleet, name)
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]  # the agent, asked again, no longer holds it


@pytest.mark.parametrize("login", ["sudo", "doas"])
def test_deploy_and_recover_through_a_non_root_login(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo, login: Login
) -> None:
    # the real fleet logs in as a user with sudo (orion, svc) or doas (rift): deploy, the
    # converged re-plan and `agent recover` all go through that escalation
    fleet = make_nodes(1, f"dep{login[0]}", login=login)
    name, root = fleet.names[0], str(fleet.fleet_dir)
    host = json.loads((fleet.fleet_dir / "hosts" / name / "host.json").read_text())
    assert host["ssh"]["user"] != "root", host["ssh"]
    fleet_json = json.loads((fleet.fleet_dir / "fleet.json").read_text())
    fleet_json["providers"] = {}
    (fleet.fleet_dir / "fleet.json").write_text(json.dumps(fleet_json, indent=2))
    write_service(fleet, name, service("hello", "services", f"{registry.address}/demo/hello:1"))

    first = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    assert first.phase(name, "deploy")["status"] == "changed"
    assert answer(fleet, name, host_port(fleet, name, "hello")) == "hello 1 port=8080\n"
    code, data = plan(root, "--detailed-exitcode")
    assert code == 0, data["actions"]
    recover_hello(fleet, name, root, version=1)
    agent_ops_logs_and_exec(fleet, name, root)
    a_lost_port_forwarder_is_brought_back(fleet, name, root, agent_bundle, registry)


def agent_ops_logs_and_exec(fleet: Nodes, name: str, root: str) -> None:
    """`status`, `agent stop|start|restart`, `logs` and `exec --as-root` through the host's escalation."""
    port = host_port(fleet, name, "hello")
    status = cli("status", "--json", "-C", root)  # the agent's socket is mcp's: reached through sudo/doas
    [row] = json.loads(status.stdout)["hosts"]
    assert status.code == 0 and row["agent_health"] == "SERVING" and row["services_up"] == 1, row
    stopped = cli("agent", "stop", name, "hello", "--json", "-C", root)
    assert stopped.code == 0, stopped.stdout + stopped.stderr
    assert containers(fleet, name)["hello"]["state"] != "running"
    _code, data = plan(root)  # the files still say it runs: the drift says who stopped it
    [drift] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert "(stopped with `mcfleet agent stop`: apply starts it again" in drift["reason"], drift
    started = cli("agent", "start", name, "hello", "--json", "-C", root)
    assert started.code == 0, started.stdout + started.stderr
    assert answer(fleet, name, port) == "hello 1 port=8080\n"
    before = fleet.sh(name, f"{AS_MCP} inspect --format '{{{{.State.StartedAt}}}}' hello").stdout
    restarted = cli("agent", "restart", name, "hello", "--json", "-C", root)
    assert restarted.code == 0, restarted.stdout + restarted.stderr
    assert fleet.sh(name, f"{AS_MCP} inspect --format '{{{{.State.StartedAt}}}}' hello").stdout != before
    assert answer(fleet, name, port) == "hello 1 port=8080\n"

    agent_log = cli("logs", name, "agent", "-n", "50", "-C", root)
    assert agent_log.code == 0 and "mcp-agent" in agent_log.stdout, agent_log.stdout + agent_log.stderr
    # a line on the container's stdout (podman's journald log driver: read as root by container id)
    fleet.sh(name, f"{AS_MCP} exec hello sh -c 'echo mcfleet-logs-marker > /proc/1/fd/1'")
    hello_log = cli("logs", name, "hello", "-n", "20", "-C", root)
    assert hello_log.code == 0 and "mcfleet-logs-marker" in hello_log.stdout, hello_log.stdout + hello_log.stderr

    as_login = cli("exec", "--on", name, "--json", "-C", root, "--", "id -un")
    assert json.loads(as_login.stdout)["hosts"][0]["stdout"] == "kyle\n", as_login.stdout + as_login.stderr
    as_root = cli(
        "exec", "--on", name, "--as-root", "--json", "-C", root, "--", "id -un; cat /var/lib/mcfleet/manifest.json"
    )
    said = json.loads(as_root.stdout)["hosts"][0]
    assert as_root.code == 0 and said["stdout"].startswith("root\n{"), said


def _forwarder_pids(fleet: Nodes, name: str, port: int) -> list[str]:
    """The rootlessport processes listening on a published port of the node."""
    listening = fleet.sh(name, f"ss -Hltnp 'sport = :{port}'").stdout
    return sorted(set(re.findall(r'"rootlessport",pid=(\d+)', listening)))


def _kill_forwarder(fleet: Nodes, name: str, port: int) -> None:
    forwarders = _forwarder_pids(fleet, name, port)
    assert forwarders, f"nothing forwards port {port} on {name}"
    fleet.sh(name, f"kill {' '.join(forwarders)}")
    deadline = time.monotonic() + 10
    while (refused := fleet.sh(name, f"curl -s -o /dev/null http://127.0.0.1:{port}/", check=False)).returncode != 7:
        assert time.monotonic() < deadline, refused  # curl's 7: "failed to connect"
        time.sleep(0.1)


def a_lost_port_forwarder_is_brought_back(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, registry: RegistryInfo
) -> None:
    """Rootless podman's forwarder of a published port ends while its container runs (seen after podman had
    restarted a crash-looping container: hello ran, its port refused every connection, and apply failed at
    the stage timeout and left it so).  The plan and `status` say so, and apply restarts it."""
    port = host_port(fleet, name, "hello")
    _kill_forwarder(fleet, name, port)
    assert containers(fleet, name)["hello"]["state"] == "running"
    code, data = plan(root, "--detailed-exitcode")
    assert code == 2, data["actions"]
    [drift] = [a for a in data["actions"] if a["phase"] == "deploy"]
    assert drift["subject"] == "service hello" and drift["reason"].startswith(
        f"drift: nothing listens on the published port of hello (127.0.0.1:{port}"
    ), drift
    assert drift["reason"].endswith("(podman's port forwarder is gone): apply restarts it"), drift
    status = cli("status", "--json", "-C", root)
    [row] = json.loads(status.stdout)["hosts"]
    assert row["services_up"] == 0 and any(
        n.startswith(f"hello: nothing listens on 127.0.0.1:{port}") for n in row["not_up"]
    ), row

    applied = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert applied.code == 0, applied.stdout + applied.stderr
    deploy = applied.phase(name, "deploy")
    assert deploy["message"] == "services: restart hello", deploy
    assert answer(fleet, name, port, within_s=5) == "hello 1 port=8080\n"
    assert plan(root, "--detailed-exitcode")[0] == 0
    a_forwarder_lost_while_a_restart_waits_is_brought_back(fleet, name, root, agent_bundle, registry)
    a_restart_says_which_check_fails_while_it_waits(fleet, name, root, agent_bundle, registry)


def a_forwarder_lost_while_a_restart_waits_is_brought_back(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, registry: RegistryInfo
) -> None:
    """The forwarder ends after the restart that made it, while the agent waits for the service's health
    check: after FORWARDER_GONE_AFTER_S of refused connections the agent restarts it once more (was: the
    wait ran to the stage timeout, 120 s, and the service stayed unreachable)."""
    slow = service("slow", "services", f"{registry.address}/demo/hello:1")
    slow["components"][0]["cmd"] = ["sh", "-c", f"sleep 4; {START}"]  # healthy 4 s after each start
    write_service(fleet, name, slow)
    first = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    port = host_port(fleet, name, "slow")
    before = _forwarder_pids(fleet, name, port)
    restart = subprocess.Popen(
        [*mcfleet_argv(), "agent", "restart", name, "slow", "--json", "-C", root], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while (now := _forwarder_pids(fleet, name, port)) in ([], before):  # the restart's own forwarder
        assert time.monotonic() < deadline and restart.poll() is None, "the restart made no new forwarder"
        time.sleep(0.1)
    _kill_forwarder(fleet, name, port)
    out, _ = restart.communicate(timeout=120)
    report = json.loads(out)
    assert restart.returncode == 0, report
    assert any(a.startswith("restart slow") for a in report["actions"]), report
    assert report["seconds"] < 60, report  # not the stage timeout (120 s); ~10 s on a quiet machine
    assert answer(fleet, name, port, within_s=5) == "hello 1 port=8080\n"
    agent_log = cli("logs", name, "agent", "-n", "30", "-C", root)
    assert "restart [services/slow/slow]: nothing listened on its published port while it ran (podman's port " \
        "forwarder was gone) (its port refused connections)" in agent_log.stdout, agent_log.stdout  # fmt: skip
    assert now != before


def a_restart_says_which_check_fails_while_it_waits(
    fleet: Nodes, name: str, root: str, agent_bundle: Path, registry: RegistryInfo
) -> None:
    """`agent restart` waits for the service's health check in one call to the agent (up to its stage
    timeout, 120 s): a line every 10 s says which check fails so far and why (was: nothing until the
    answer)."""
    late = service("late", "services", f"{registry.address}/demo/hello:1")
    late["components"][0]["cmd"] = ["sh", "-c", f"sleep 13; {START}"]  # healthy 13 s after each start
    write_service(fleet, name, late)
    first = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    restarted = cli("agent", "restart", name, "late", "-C", root)
    assert restarted.code == 0, restarted.stdout + restarted.stderr
    assert "restart late, waiting for their health checks (1" in restarted.stderr, restarted.stderr
    assert "; failing so far: late: " in restarted.stderr, restarted.stderr
