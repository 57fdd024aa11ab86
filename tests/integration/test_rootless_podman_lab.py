"""Rootless podman as mcp on a provisioned systemd node, and the lab registry the node pulls from.

Real programs only: systemd-nspawn nodes booted with systemd, sshd, the agent bundle run by
mcp-agent.service, rootless podman (slirp4netns port publishing), Debian's docker-registry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mcfleet.lab.images import DEMO_IMAGES
from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import MakeNodes, Nodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

SOCK = "/run/user/850/podman/podman.sock"
AS_MCP = ("cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850 "
          "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/850/bus")  # fmt: skip


def _until(what: str, probe: object, within_s: float = 60) -> str:
    """Poll `probe()` (returns (text seen, done?)) until done or time runs out."""
    deadline = time.monotonic() + within_s
    seen = ""
    while time.monotonic() < deadline:
        seen, ok = probe()  # type: ignore[operator]
        if ok:
            return str(seen)
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen within {within_s:g}s (last: {seen!r})")


def _health(root: str, name: str) -> str:
    run = cli("agent", "status", "--root", root, name, "--json")
    return str(json.loads(run.stdout)["hosts"][0]["health"])


def test_registry_serves_the_demo_images_and_a_node_pulls_one_only_with_the_lab_ca(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    repos = sorted({name.split(":")[0] for name in DEMO_IMAGES})
    assert registry.catalog() == repos
    assert sorted(registry.tags("demo/hello")) == ["1", "2"]
    assert registry.images == [f"{registry.address}/{name}" for name in DEMO_IMAGES]

    fleet = make_nodes(1, "pull")
    name = fleet.names[0]
    provision = cli("provision", name, "--root", str(fleet.fleet_dir), "--bundle", str(agent_bundle))
    assert provision.code == 0, provision.stdout + provision.stderr  # mcp, its subids and its podman
    ca = f"/etc/containers/certs.d/{registry.address}/ca.crt"
    assert fleet.sh(name, f"cat {ca}").stdout == Path(registry.ca_file).read_text()
    pull = f"{AS_MCP} podman pull -q {registry.address}/demo/api:1"
    # Without the lab CA the registry's certificate is not trusted: TLS is checked for real.
    fleet.sh(name, f"mv {ca} {ca}.off")
    refused = fleet.sh(name, pull, check=False)
    assert refused.returncode != 0 and "certificate signed by unknown authority" in refused.stderr, refused.stderr
    fleet.sh(name, f"mv {ca}.off {ca}")
    fleet.sh(name, pull)
    env = f"{AS_MCP} podman image inspect --format '{{{{.Config.Env}}}}' {registry.address}/demo/api:1"
    shown = fleet.sh(name, env)
    assert "APP=api" in shown.stdout and "VERSION=1" in shown.stdout


def test_provisioned_node_runs_rootless_podman_as_mcp_and_the_agent_follows_its_socket(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "rootless")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    run = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr
    said = run.phase(name, "provision")["message"]
    for step in ("linger enabled for mcp", "podman.socket enabled for mcp", f"{SOCK} listening",
                 "/etc/subuid mcp:100000:65536 added (rootless podman)"):  # fmt: skip
        assert step in said, said

    # linger: mcp's user manager runs without a login, and with it mcp's own podman API socket
    assert fleet.sh(name, "loginctl show-user mcp -p Linger --value").stdout.strip() == "yes"
    assert fleet.sh(name, f"stat -c '%U %F' {SOCK}").stdout.strip() == "mcp socket"
    podman = f"{AS_MCP} podman --url unix://{SOCK}"
    assert fleet.sh(name, f"{podman} info --format '{{{{.Host.Security.Rootless}}}}'").stdout.strip() == "true"

    # A container from the lab registry through mcp's socket, its port published on the node.
    fleet.sh(name, f"{podman} run -d --init --name web -p 127.0.0.1:18080:8080 -e PORT=8080 "
                   f"{registry.address}/demo/hello:2")  # fmt: skip
    answer = _until(
        "GET :18080",
        lambda: ((out := fleet.sh(name, "curl -sf http://127.0.0.1:18080/", check=False).stdout), bool(out)),
    )
    assert answer == "hello 2 port=8080\n"
    # rootless: the service's process belongs to mcp on the node, not to root
    assert fleet.sh(name, "ps -o user= -C httpd").stdout.split() == ["mcp"]

    assert _health(root, name) == "SERVING"
    # podman's socket goes away: the agent says NOT_SERVING, and why
    # (the socket first: while it listens, the agent's next ping would start podman.service again).
    # podman.service has KillMode=process, so stopping it leaves its re-executed API worker running
    # with the inherited listening socket, and each health ping restarts that worker's 5 s idle
    # timer: it answered for over a minute in 1 run of 14.  The socket's file goes too, as when
    # the user manager stops; the agent's kept-alive connection to that worker stays open.
    fleet.sh(name, f"{AS_MCP} systemctl --user stop podman.socket && {AS_MCP} systemctl --user stop podman.service "
                   f"&& rm -f {SOCK}")  # fmt: skip
    try:
        health = _until("NOT_SERVING", lambda: ((h := _health(root, name)), h != "SERVING"))
    except AssertionError as exc:
        state = fleet.sh(name, f"{AS_MCP} systemctl --user status podman.socket podman.service --no-pager; "
                         "ps -ef; journalctl -u mcp-agent --no-pager | tail -20", check=False)  # fmt: skip
        raise AssertionError(f"{exc}\n{state.stdout}") from None
    assert health.startswith(f"health status NOT_SERVING: podman API not reachable at unix://{SOCK}: "), health
    fleet.sh(name, f"{AS_MCP} systemctl --user start podman.socket")
    assert _until("SERVING again", lambda: ((h := _health(root, name)), h == "SERVING")) == "SERVING"


def test_provision_starts_a_lingering_users_manager_that_has_stopped(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    """Linger enabled earlier is not enough: a user manager that stopped since (here: stopped by
    hand) is started again by the next provision, not waited for until it gives up."""
    fleet = make_nodes(1, "relinger")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    first = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.stdout + first.stderr
    fleet.sh(name, "systemctl stop user@850.service")
    # stopped, and podman.sock may stay behind as a file nobody listens on
    assert fleet.sh(name, "systemctl is-active user@850.service", check=False).stdout.strip() != "active"

    again = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert again.code == 0, again.stdout + again.stderr
    said = again.phase(name, "provision")["message"]
    assert f"{SOCK} listening" in said, said
    assert again.seconds < 60, again.seconds  # the old wait gave up after 30 s of polling
    assert fleet.sh(name, "systemctl is-active user@850.service").stdout.strip() == "active"
    assert fleet.sh(name, f"stat -c '%U %F' {SOCK}").stdout.strip() == "mcp socket"
