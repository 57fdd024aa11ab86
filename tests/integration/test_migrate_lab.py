"""Moving a service with data to another systemd node (rootless podman, lab registry, Knot, Pebble,
each node's own Caddy as the route provider).

The service is busybox httpd serving its own volume (/srv/web mounted at /data): a file written
into the volume before the move, owned by a container uid and readable only by it (0600), is
read back THROUGH THE SERVICE on the destination.  The two nodes have different subuid ranges,
so the restore must map the file's owner (uid 100999 on A is container uid 1000; on B that is
300999), or the container could not read it.  DNS (Knot) and the service's route (now on B's
Caddy, with a Pebble certificate) point at the destination afterwards.  Then a move whose destination fails its health
check leaves the service serving where it was.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcfleet.lab.login import Login
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.nodeproxy import providers_json, start_node_proxies
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import (  # noqa: F401
    CliRun,
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

AS_MCP = "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850"
DATA = "moved with its service\n"
RANGES = ((100000, 65536), (300000, 65536))  # node A's and node B's mcp subuid/subgid ranges


def _web(registry: str, address: str) -> dict[str, Any]:
    return {
        "name": "web",
        "description": "migrate lab test: httpd serving its /srv volume",
        "stage": "services",
        "components": [
            {
                "name": "web",
                "image": f"{registry}/demo/hello:1",
                "cmd": ["httpd", "-f", "-p", "8080", "-h", "/data"],
                "volumes": ["/srv/web:/data"],
                "routes": [{"port": 8080, "mode": "l7", "bind": ["127.0.0.1", address]}],
                "health": {"kind": "http", "port": 8080, "path": "/index.html", "timeout_s": 2},
            }
        ],
        "files": [{"path": "index.html", "source": "files/index.html", "template": True}],
    }


def _fleet(nodes: Nodes, registry: RegistryInfo, pebble: PebbleInfo, account_key: Path) -> Path:
    """Both nodes run their own Caddy (the route provider, reached over SSH); Pebble issues the certs."""
    for node in nodes.nodes:
        asyncio.run(start_node_proxies(nodes.lab.state, nodes.lab.run_dir, node))
    root = nodes.lab.write_fleet(nodes.fleet_dir, nodes=nodes.names)
    fleet = json.loads((root / "fleet.json").read_text())
    assert "dns" in fleet["providers"], fleet  # Knot runs: the DNS kind acts
    fleet["providers"].update(providers_json())
    fleet["providers"]["cert"] = {"kind": "acme", "directory": pebble.directory,
                                  "account_key_file": str(account_key), "ca_file": pebble.ca_file}  # fmt: skip
    (root / "fleet.json").write_text(json.dumps(fleet, indent=2))
    for name, (start, count) in zip(nodes.names, RANGES, strict=True):
        path = root / "hosts" / name / "host.json"
        host = json.loads(path.read_text())
        host["users"]["mcp"].update({"subuid": {"start": start, "count": count},
                                     "subgid": {"start": start, "count": count}})  # fmt: skip
        path.write_text(json.dumps(host, indent=2))
    (root / "files").mkdir(exist_ok=True)
    (root / "files" / "index.html").write_text("web on {{ host }}\n")
    first = nodes.nodes[0]
    for name in nodes.names:
        (root / "hosts" / name / "services").mkdir(exist_ok=True)
    (root / "hosts" / first.name / "services" / "web.json").write_text(json.dumps(_web(registry.address,
                                                                                       first.address)))  # fmt: skip
    return root


def _move(root: Path, src: str, dst: str, address: str) -> None:
    """The operator's move: the service's file goes to the other host's folder (its bind address too)."""
    old = root / "hosts" / src / "services" / "web.json"
    svc = json.loads(old.read_text())
    svc["components"][0]["routes"][0]["bind"] = ["127.0.0.1", address]
    (root / "hosts" / dst / "services" / "web.json").write_text(json.dumps(svc))
    old.unlink()


def _https(hostname: str, address: str, ca: Path, path: str) -> str:
    """GET through the route: the node's Caddy on 443 (TLS with the Pebble certificate)."""
    done = subprocess.run(["curl", "-sS", "--max-time", "10", "--resolve", f"{hostname}:443:{address}", "--cacert",
                           str(ca), f"https://{hostname}/{path}"], capture_output=True, text=True, timeout=30,
                          check=False)  # fmt: skip
    return done.stdout if done.returncode == 0 else f"curl exit {done.returncode}: {done.stderr.strip()}"


def _get(address: str, port: int, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", f"http://{address}:{port}/{path}"],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


def _port(nodes: Nodes, name: str) -> int:
    ports = nodes.manifest(name)["services"]["web"]["ports"]
    assert len(ports) == 1, ports
    return int(next(iter(ports.values())))


def _running(nodes: Nodes, name: str) -> list[str]:
    return nodes.sh(name, f"{AS_MCP} podman ps --format '{{{{.Names}}}}'").stdout.split()


def _knot(knot: KnotInfo, name: str) -> list[str]:
    from dnslib import DNSRecord

    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(knot.server, knot.port, timeout=5))
    return [str(rr.rdata) for rr in reply.rr]


def _apply(root: Path, bundle: Path, *target: str) -> CliRun:
    return cli("apply", *target, "-C", str(root), "--yes", "--bundle", str(bundle), "--json", timeout=900)


def _migrate_event(run: CliRun, host: str) -> dict[str, Any]:
    ends = [e for e in run.events if e["host"] == host and e["phase"] == "migrate" and e["status"] != "start"]
    assert ends, run.stdout[-3000:]
    return ends[-1]


@pytest.mark.parametrize("login", ["root", "sudo"])
def test_a_moved_service_serves_its_data_from_the_destination_and_a_failed_move_stays_put(  # noqa: PLR0915, PLR0917
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo, knot: KnotInfo, pebble: PebbleInfo,
    tmp_path: Path, login: Login,
) -> None:  # fmt: skip
    """`login`: both nodes reached as root, or as a non-root user through sudo (the copy between the
    nodes then reads and writes root's stores through sudo on each side)."""
    nodes = make_nodes(2, f"mg{login[0]}", login=login)
    a, b = nodes.nodes
    root = _fleet(nodes, registry, pebble, tmp_path / "acme-account.key")
    zone = json.loads((root / "fleet.json").read_text())["zone"]
    ca = tmp_path / "pebble-root.pem"
    ca.write_text(pebble.root_pem())

    first = _apply(root, agent_bundle)
    assert first.code == 0, first.why
    port_a = _port(nodes, a.name)
    assert _get(a.address, port_a, "index.html").stdout == f"web on {a.name}\n"
    # data the service owns, written before the move: container uid 1000 = A's subuid start + 999, 0600
    nodes.sh(a.name, f"printf '{DATA}' > /srv/web/data.txt && chown 100999:100999 /srv/web/data.txt && "
                     "chmod 0600 /srv/web/data.txt && mkdir -p /srv/web/certs && "
                     "echo ca > /srv/web/certs/ca.pem")  # fmt: skip
    assert _get(a.address, port_a, "data.txt").stdout == DATA
    assert _knot(knot, f"web.{zone}") == [a.address]
    assert _https(f"web.{zone}", a.address, ca, "data.txt") == DATA  # through A's route
    nodes.sh(a.name, "head -c 16777216 /dev/urandom > /srv/web/blob.bin")  # streamed in many chunks
    blob_sha = nodes.file_sha(a.name, "/srv/web/blob.bin")

    # --- the move, planned as one action and carried by a saved plan
    _move(root, a.name, b.name, b.address)
    shown = cli("plan", "-C", str(root))
    assert f"> service web  moved {a.name} → {b.name}" in shown.stdout, shown.stdout
    assert "- service web" not in shown.stdout and "+ service web" not in shown.stdout, shown.stdout
    # planned for the destination alone, the move's source is left out: refused, never a start in half
    half = cli("plan", "-C", str(root), "--on", b.name, "--json")
    assert half.code == 1, half.why
    [refused] = [x for x in json.loads(half.stdout)["actions"] if x["kind"] == "refuse"]
    assert (refused["host"], refused["subject"], refused["before"]["host"]) == (b.name, "service web", a.name)
    assert f"--on {a.name} --on {b.name}" in refused["hint"], refused
    plan_file = tmp_path / "move.json"
    saved = cli("plan", "-C", str(root), "--json", "-o", str(plan_file))
    assert saved.code == 0, saved.why
    moves = [x for x in json.loads(plan_file.read_text())["actions"] if x["kind"] == "move"]
    assert [(m["host"], m["phase"], m["before"]["host"]) for m in moves] == [(b.name, "migrate", a.name)]

    moved = _apply(root, agent_bundle, str(plan_file))
    assert moved.code == 0, moved.why
    event = _migrate_event(moved, b.name)
    print(f"migration ({login}): {event['message']}; the whole apply took {moved.seconds:.1f} s")
    assert event["status"] == "changed" and event["data"]["bytes_sent"] > 0
    port_b = _port(nodes, b.name)
    assert _get(b.address, port_b, "data.txt").stdout == DATA  # read back through the service
    assert _get(b.address, port_b, "index.html").stdout == f"web on {b.name}\n"  # its file, rendered for B
    assert nodes.sh(b.name, "stat -c '%u %g %a' /srv/web/data.txt").stdout.split() == ["300999", "300999", "600"]
    assert nodes.sh(b.name, "cat /srv/web/certs/ca.pem").stdout == "ca\n"
    assert nodes.file_sha(b.name, "/srv/web/blob.bin") == blob_sha
    assert event["data"]["bytes_sent"] > 16_000_000  # random data does not compress
    assert "web" in _running(nodes, b.name)
    assert "web" not in _running(nodes, a.name)  # the source no longer runs it
    assert "web" not in nodes.manifest(a.name)["services"]
    assert nodes.manifest(a.name)["files"] == {}  # its file there, no longer declared on A: removed
    assert nodes.sh(a.name, "ls /srv/web/index.html", check=False).returncode != 0
    assert _knot(knot, f"web.{zone}") == [b.address]  # DNS points at the destination
    assert _https(f"web.{zone}", b.address, ca, "data.txt") == DATA  # and its route: B's Caddy
    assert DATA not in _https(f"web.{zone}", a.address, ca, "data.txt")  # A's route is gone
    snapshot = _migrate_event(moved, a.name)["data"]["snapshot"]
    assert nodes.sh(a.name, f"stat -c '%U %a' {snapshot}").stdout.split() == ["root", "600"]  # kept on A
    assert nodes.sh(b.name, "ls /var/lib/mcfleet/snapshots/").stdout.strip() == ""  # B's copy: removed
    listed = cli("snapshots", a.name, "web", "-C", str(root), "--json")
    assert [x["path"] for x in json.loads(listed.stdout)["snapshots"]] == [snapshot], listed.stdout + listed.stderr
    again = cli("plan", "-C", str(root), "--detailed-exitcode")
    assert again.code == 0, again.stdout  # converged
    _a_snapshot_through_a_link_stops_nothing(nodes, root, port_b)

    _a_failed_move_stays_put(nodes, root, agent_bundle, knot, zone=zone, port_b=port_b)


def _a_snapshot_through_a_link_stops_nothing(nodes: Nodes, root: Path, port_b: int) -> None:
    """The agent's account puts a link at the agent's socket on B: the snapshot reaches no agent, stops
    nothing, and says what is at the socket and how to make it again."""
    b = nodes.nodes[1]
    sock = "/srv/mcp/mcp-agent.sock"
    nodes.sh(b.name, f"runuser -u mcp -- sh -c 'mv {sock} /srv/mcp/moved.sock && ln -s moved.sock {sock}'")
    linked = cli("snapshot", b.name, "web", "-C", str(root))
    assert linked.code == 1, linked.stdout + linked.stderr
    assert f"the agent was not reached: {sock} is a link" in linked.stderr, linked.stderr
    assert "`systemctl restart mcp-agent.service` on the node makes it again" in linked.stderr, linked.stderr
    assert _get(b.address, port_b, "data.txt").stdout == DATA  # still served: nothing was stopped
    assert nodes.sh(b.name, "ls /var/lib/mcfleet/snapshots/").stdout.strip() == ""  # and nothing taken
    nodes.sh(b.name, "systemctl restart mcp-agent && rm /srv/mcp/moved.sock")


def _a_failed_move_stays_put(nodes: Nodes, root: Path, bundle: Path, knot: KnotInfo, *, zone: str, port_b: int) -> None:
    """Moving it back with a health check the destination cannot pass (a page the service does not
    have): A's health check fails, so the service is removed from A again and B serves on."""
    a, b = nodes.nodes
    _move(root, b.name, a.name, a.address)
    svc_file = root / "hosts" / a.name / "services" / "web.json"
    svc = json.loads(svc_file.read_text())
    svc["components"][0]["health"]["path"] = "/missing.html"
    svc_file.write_text(json.dumps(svc))
    back = [x for x in json.loads(cli("plan", "-C", str(root), "--json").stdout)["actions"] if x["kind"] == "move"]
    assert [(m["host"], m["before"]["host"]) for m in back] == [(a.name, b.name)]
    failed = _apply(root, bundle)
    assert failed.code != 0, failed.stdout[-3000:]
    said = _migrate_event(failed, a.name)
    assert said["status"] == "failed" and "not moved" in said["message"], said
    assert f"running on {b.name} again" in said["message"] and "nothing was removed" in said["message"], said
    assert _get(b.address, port_b, "data.txt").stdout == DATA  # still serving on the source
    assert "web" in _running(nodes, b.name) and "web" not in _running(nodes, a.name)
    assert _knot(knot, f"web.{zone}") == [b.address]
    # B's record still lists web's route, certificate and DNS record: the failed move did not move them
    kept = nodes.manifest(b.name)
    assert f"web.{zone}" in [r["hostname"] for r in kept["routes"]], kept
    assert f"web.{zone}" in [r["name"] for r in kept["dns"]], kept
    assert "web" in [c["name"] for c in kept["certs"]], kept
    # the folder A had (left by the first move) was set aside by the restore there: listed and pruned
    aside = json.loads(cli("snapshots", a.name, "web", "-C", str(root), "--json").stdout)["set_aside"]
    assert [x["path"].startswith("/srv/.web.before-migrate.") for x in aside] == [True], aside
    gone = cli("snapshots", a.name, "web", "--prune", "--keep", "0", "-C", str(root), "--json")
    assert gone.code == 0 and json.loads(gone.stdout)["set_aside"] == [], gone.stdout + gone.stderr
    assert nodes.sh(a.name, "ls -d /srv/.web.before-migrate.*", check=False).returncode != 0
    # the operator prunes the snapshot the failed move took on B
    pruned = cli("snapshots", b.name, "--prune", "--keep", "0", "-C", str(root), "--json")
    assert pruned.code == 0, pruned.stdout + pruned.stderr
    report = json.loads(pruned.stdout)
    assert len(report["removed"]) == 1 and report["snapshots"] == [], report
    assert nodes.sh(b.name, "ls /var/lib/mcfleet/snapshots/").stdout.strip() == ""
