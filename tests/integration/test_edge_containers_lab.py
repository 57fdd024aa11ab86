"""Containers through the edge: from an empty lab, ONE `mcfleet apply` deploys three container
services from the lab registry on a worker node and makes them reachable with verified TLS:

- `hello` (public l7): Pebble certificate on the edge node, route in the edge's Caddy;
- `api` (internal l7, on listener 9443): certificate and route on the worker's proxy;
- `sni` (l4 on listener 8443): HAProxy passes TLS through to the container, which ends it with
  its own certificate (the files kind puts it in /srv/sni; its key is an age secret).

Real programs: systemd-nspawn nodes, sshd, rootless podman, the lab registry, Knot, Pebble,
and HAProxy + Caddy running inside the nodes (HAProxy on <node>:443/8443/9443, names it does
not pass through go to Caddy's server of that listener).  The setup is the demo's own
(`mcfleet.lab.edgedemo.edge_fleet`).  Then: a second apply touches nothing (no certificate,
DNS update nor route call), restarted proxies keep their routes (HAProxy's map file and
Caddy's autosaved config, both on the node), and removing a service file removes its DNS
record, routes and container, in that order.

Parametrised over how mcfleet logs in: both nodes as root, or the worker with sudo and the
edge with doas (the real fleet's logins).  The second test runs the same services with the
seed-native backends (MCNS, Metacrypt, mc-proxy) against their contract fakes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from mcfleet.lab.edgedemo import edge_fleet
from mcfleet.lab.lab import Lab
from mcfleet.lab.login import Login
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.nodeproxy import restart_proxy
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import CliRun, Nodes, agent_bundle_fixture, cli, stop_nodes  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

_SEQ = count(1)
CERTS = "/srv/mc-proxy/certs"
SNI_MAP = "/srv/mc-proxy/sni.map"
CADDY_CONFIG = "curl -sS --unix-socket /srv/mc-proxy/caddy-admin.sock http://localhost/config/"
# HAProxy's live map, read on the node over its runtime API (python3 is in every Debian node)
SHOW_MAP = (
    "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('/srv/mc-proxy/haproxy.sock'); "
    "s.sendall(b'show map /srv/mc-proxy/sni.map\\n'); print(s.makefile().read())\""
)
AS_MCP = ("cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850 "
          "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/850/bus podman")  # fmt: skip


@pytest.fixture
def edge_nodes(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`boot(worker_login, edge_login)`: two fresh full nodes and a fleet folder naming only them."""
    made: list[LabNode] = []

    def boot(worker_login: Login, edge_login: Login) -> Nodes:
        n = next(_SEQ)
        tag = "r" if worker_login == "root" else "s"
        names = [f"ec{tag}{n}w", f"ec{tag}{n}e"]

        async def both() -> list[LabNode]:
            return list(await asyncio.gather(lab.add_full_node(names[0], login=worker_login),
                                             lab.add_full_node(names[1], login=edge_login)))  # fmt: skip

        nodes = asyncio.run(both())
        made.extend(nodes)
        return Nodes(lab, lab.write_fleet(lab.run_dir / "fleets" / f"edgec-{names[0]}", nodes=names), nodes)

    yield boot
    stop_nodes(lab, made)


def _curl(host: str, port: int, address: str, ca: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--resolve", f"{host}:{port}:{address}", "--cacert", ca,
         f"https://{host}:{port}/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _answer(host: str, port: int, address: str, ca: str, within_s: float = 60) -> str:
    """The page once it answers (a container's port is published a moment after its start)."""
    deadline = time.monotonic() + within_s
    got = _curl(host, port, address, ca)
    while got.returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)
        got = _curl(host, port, address, ca)
    assert got.returncode == 0, f"https://{host}:{port}/ via {address}: {got.stderr}"
    return got.stdout


def _knot(knot: KnotInfo, name: str, rtype: str = "A") -> list[str]:
    from dnslib import DNSRecord

    reply = DNSRecord.parse(DNSRecord.question(name, rtype).send(knot.server, knot.port, timeout=5))
    return [str(rr.rdata) for rr in reply.rr]


def _snapshot(nodes: Nodes, knot: KnotInfo) -> dict[str, Any]:
    """Everything a no-op apply must leave alone: proxies' config, map files, SOA serial, cert files."""
    out: dict[str, Any] = {"soa": _knot(knot, knot.zone, "SOA")}
    for node in nodes.nodes:
        caddy = nodes.sh(node.name, CADDY_CONFIG).stdout
        out[f"{node.name} caddy"] = json.loads(caddy)
        out[f"{node.name} map file"] = nodes.sh(node.name, f"cat {SNI_MAP}").stdout
        out[f"{node.name} live map"] = sorted(nodes.sh(node.name, SHOW_MAP).stdout.split("\n"))
        out[f"{node.name} certs"] = nodes.sh(node.name, f"stat -c '%n %Y %s' {CERTS}/* 2>/dev/null",
                                             check=False).stdout  # fmt: skip
    return out


def _actions(run: CliRun) -> list[str]:
    assert "Traceback" not in run.stdout + run.stderr and run.stdout.startswith("{"), run.stdout + run.stderr[-3000:]
    return [f"{a['host']} {a['phase']} {a['kind']} {a['subject']}" for a in json.loads(run.stdout)["actions"]]


def _containers(nodes: Nodes, host: str) -> list[str]:
    out = nodes.sh(host, f"{AS_MCP} ps -a --format json").stdout
    return sorted(c["Names"][0] for c in json.loads(out or "[]"))


@pytest.mark.parametrize(
    ("worker_login", "edge_login"), [("root", "root"), ("sudo", "doas")], ids=["root", "sudo-doas"]
)
def test_one_apply_serves_three_containers_through_the_edge(  # noqa: PLR0917 (pytest fixtures)
    lab: Lab, knot: KnotInfo, pebble: PebbleInfo, registry: RegistryInfo, agent_bundle: Path,
    edge_nodes: Any, tmp_path: Path, worker_login: Login, edge_login: Login,
) -> None:  # fmt: skip
    nodes: Nodes = edge_nodes(worker_login, edge_login)
    worker, edge = nodes.nodes
    root = nodes.fleet_dir
    zone = lab.zone
    values = asyncio.run(edge_fleet(lab, root, worker, edge))
    fleet = json.loads((root / "fleet.json").read_text())
    account = str(tmp_path / "acme-account.key")
    fleet["providers"]["cert"] = {"kind": "acme", "directory": pebble.directory, "account_key_file": account,
                                  "ca_file": pebble.ca_file}  # fmt: skip
    (root / "fleet.json").write_text(json.dumps(fleet, indent=2))
    _api_on_listener_9443(root, worker.name)
    env = {"MCFLEET_AGE_IDENTITY": values["MCFLEET_AGE_IDENTITY"]}
    pebble_root, sni_ca = values["PEBBLE_ROOT"], values["SNI_CA"]
    hello, api, sni = f"hello.{zone}", f"api.{zone}", f"sni.{zone}"

    plan = _actions(cli("plan", "-C", str(root), "--json", env=env))
    for wanted in (f"{edge.name} cert create cert hello", f"{edge.name} route create route 443/{hello}",
                   f"{worker.name} cert create cert api", f"{worker.name} route create route 9443/{api}",
                   f"{worker.name} route create route 8443/{sni}"):  # fmt: skip
        assert wanted in plan, plan
    # create, or update when an earlier test of this session left the name in the lab's Knot
    assert {f"{worker.name} dns create dns {sni}", f"{worker.name} dns update dns {sni}"} & set(plan), plan

    run = cli("-C", str(root), "apply", "--yes", "--bundle", str(agent_bundle), "--json", env=env)
    assert run.code == 0, run.why
    print(f"[{worker_login}/{edge_login}] one apply (agent, 3 containers, 2 certs, 3 routes, 3 records): "
          f"{run.seconds:.1f} s")  # fmt: skip
    assert _containers(nodes, worker.name) == ["api", "hello", "sni"]
    assert _containers(nodes, edge.name) == []

    # each page comes from its container (name + version), with a certificate that verifies
    assert _answer(hello, 443, edge.address, pebble_root).startswith("hello 1 ")  # public, through the edge
    assert _answer(api, 9443, worker.address, pebble_root).startswith("api 1 ")  # internal, the worker's proxy
    assert _answer(sni, 8443, worker.address, sni_ca).startswith("sni 1 port=8443 tls")  # its own TLS, via HAProxy
    # a listener carries only its own routes (Caddy may still end TLS there: the page is what counts)
    assert "api 1" not in _curl(api, 443, worker.address, pebble_root).stdout
    assert "sni 1" not in _curl(sni, 443, worker.address, sni_ca).stdout
    assert "hello 1" not in _curl(hello, 8443, edge.address, pebble_root).stdout
    # hello's name leads to the edge, whose proxy alone routes it; api and sni to the worker
    assert {n: _knot(knot, n) for n in (hello, api, sni)} == {
        hello: [edge.address], api: [worker.address], sni: [worker.address]
    }  # fmt: skip
    assert f"8443/{sni} 127.0.0.1:" in nodes.sh(worker.name, f"cat {SNI_MAP}").stdout  # persisted on the node

    # second apply: converged, and nothing is touched
    before = _snapshot(nodes, knot)
    again = cli("plan", "-C", str(root), "--detailed-exitcode", "--json", env=env)
    assert again.code == 0, again.why
    second = cli("-C", str(root), "apply", "--yes", "--bundle", str(agent_bundle), "--json", env=env)
    assert second.code == 0, second.why
    assert _snapshot(nodes, knot) == before
    print(f"[{worker_login}/{edge_login}] no-op apply: {second.seconds:.1f} s")
    _no_secret_leaks(nodes, root, [run, again, second], env, tmp_path)

    # the proxies restarted: HAProxy reads its map file again, Caddy resumes its autosaved config
    asyncio.run(restart_proxy(lab.state, lab.run_dir, worker, "haproxy"))
    for node in (worker, edge):
        asyncio.run(restart_proxy(lab.state, lab.run_dir, node, "caddy"))
    assert _answer(sni, 8443, worker.address, sni_ca).startswith("sni 1 ")
    assert _answer(api, 9443, worker.address, pebble_root).startswith("api 1 ")
    assert _answer(hello, 443, edge.address, pebble_root).startswith("hello 1 ")
    assert cli("plan", "-C", str(root), "--detailed-exitcode", "--json", env=env).code == 0

    _a_map_file_behind_the_running_haproxy_is_written_again(nodes, lab, root, agent_bundle, env=env, values=values)
    _removing_a_service_file_removes_dns_routes_container(nodes, knot, root, agent_bundle, env=env, values=values)


def _a_map_file_behind_the_running_haproxy_is_written_again(
    nodes: Nodes, lab: Lab, root: Path, agent_bundle: Path, *, env: dict[str, str], values: dict[str, str]
) -> None:
    """HAProxy's map file falls behind the running map (a hand edit): sni's line gone, a stale one added.
    The next HAProxy start would lose sni and serve the stale name: the plan lists both, apply rewrites it."""
    worker = nodes.nodes[0]
    zone, sni, sni_ca = lab.zone, values["SNI"], values["SNI_CA"]
    nodes.sh(worker.name, f"printf '8443/old.{zone} 127.0.0.1:9\\n' > {SNI_MAP}")
    behind = _actions(cli("plan", "-C", str(root), "--json", env=env))
    assert {f"{worker.name} route update route 8443/{sni}", f"{worker.name} route delete route 8443/old.{zone}"} <= set(
        behind
    ), behind
    assert cli("-C", str(root), "apply", "--yes", "--bundle", str(agent_bundle), env=env).code == 0
    [line] = nodes.sh(worker.name, f"cat {SNI_MAP}").stdout.splitlines()
    assert line.startswith(f"8443/{sni} 127.0.0.1:"), line
    asyncio.run(restart_proxy(lab.state, lab.run_dir, worker, "haproxy"))
    assert _answer(sni, 8443, worker.address, sni_ca).startswith("sni 1 ")
    assert cli("plan", "-C", str(root), "--detailed-exitcode", "--json", env=env).code == 0


def _api_on_listener_9443(root: Path, worker: str) -> None:
    """api's route moves to listener 9443 (the model's gRPC port): Caddy's server edge-9443 serves it."""
    path = root / "hosts" / worker / "services" / "api.json"
    svc = json.loads(path.read_text())
    svc["components"][0]["routes"][0]["listener"] = 9443
    path.write_text(json.dumps(svc, indent=2))


def _removing_a_service_file_removes_dns_routes_container(
    nodes: Nodes, knot: KnotInfo, root: Path, agent_bundle: Path, *, env: dict[str, str], values: dict[str, str]
) -> None:
    worker, edge = nodes.nodes
    hello, api, sni = values["PUB"], values["INT"], values["SNI"]
    pebble_root, sni_ca = values["PEBBLE_ROOT"], values["SNI_CA"]
    # removing api's service file: - dns, - routes, - container (in that order), then gone everywhere
    (root / "hosts" / worker.name / "services" / "api.json").unlink()
    removal = [a for a in _actions(cli("plan", "-C", str(root), "--json", env=env)) if a.startswith(worker.name)]
    order = [
        removal.index(f"{worker.name} dns delete dns {api}"),
        removal.index(f"{worker.name} route delete route 9443/{api}"),
        next(i for i, a in enumerate(removal) if a.startswith(f"{worker.name} deploy delete") and "api" in a),
    ]
    assert order == sorted(order), removal
    gone = cli("-C", str(root), "apply", "--yes", "--bundle", str(agent_bundle), "--json", env=env)
    assert gone.code == 0, gone.why
    assert _knot(knot, api) == []
    assert "api 1" not in _curl(api, 9443, worker.address, pebble_root).stdout
    assert "mcfleet-9443-" + api not in nodes.sh(worker.name, CADDY_CONFIG).stdout
    assert _containers(nodes, worker.name) == ["hello", "sni"]
    assert _answer(hello, 443, edge.address, pebble_root).startswith("hello 1 ")
    assert _answer(sni, 8443, worker.address, sni_ca).startswith("sni 1 ")


def test_the_same_containers_with_the_seed_native_backends_against_their_contract_fakes(
    lab: Lab, registry: RegistryInfo, agent_bundle: Path, edge_nodes: Any, tmp_path: Path
) -> None:
    """MCNS, Metacrypt and mc-proxy (contract fakes; the mc-proxy fake listens on each node's
    /srv/mc-proxy/mc-proxy.sock, reached through the node's SSH connection): one apply issues
    hello's and api's certificates from Metacrypt, writes the records into MCNS and the routes into
    the edge's and the worker's mc-proxy, each route's backend being the container's published
    port (it answers); a second plan reads only; removing api removes its record, route, container."""
    from tests.contract_fakes.mcns import run_mcns
    from tests.contract_fakes.mcproxy import mcproxy_fakes
    from tests.contract_fakes.metacrypt import run_metacrypt

    nodes: Nodes = edge_nodes("root", "root")
    worker, edge = nodes.nodes
    root, zone = nodes.fleet_dir, lab.zone
    values = asyncio.run(edge_fleet(lab, root, worker, edge))
    env = {"MCFLEET_AGE_IDENTITY": values["MCFLEET_AGE_IDENTITY"]}
    hello, api, sni = values["PUB"], values["INT"], values["SNI"]
    token = tmp_path / "mcias-token"
    token.write_text("POISON-mcias-token-never-printed\n")
    token.chmod(0o600)

    sockets = [f"/proc/{n.ns_pid}/root/srv/mc-proxy/mc-proxy.sock" for n in (worker, edge)]
    with mcproxy_fakes(sockets) as fakes, run_mcns(zone, token.read_text().strip()) as (mcns_url, mcns), \
            run_metacrypt(token.read_text().strip(), (f".{zone}",)) as (mc_url, ca):  # fmt: skip
        fleet = json.loads((root / "fleet.json").read_text())
        fleet["providers"] = {
            "dns": {"kind": "mcns", "url": mcns_url, "token_file": str(token)},
            "cert": {"kind": "metacrypt", "url": mc_url, "token_file": str(token)},
            "route": {"kind": "mc-proxy", "socket": "/srv/mc-proxy/mc-proxy.sock", "user": "root"},
        }
        (root / "fleet.json").write_text(json.dumps(fleet, indent=2))

        run = cli("-C", str(root), "apply", "--yes", "--bundle", str(agent_bundle), "--json", env=env)
        assert run.code == 0, run.why
        assert "POISON" not in run.stdout + run.stderr
        assert sorted(ca.issued) == [api, hello]
        worker_routes = {f"{k[0]}/{k[1]}": (r.mode, r.backend) for k, r in fakes[0][1].routes.items()}
        edge_routes = {f"{k[0]}/{k[1]}": (r.mode, r.backend) for k, r in fakes[1][1].routes.items()}
        assert sorted(worker_routes) == [f"443/{api}", f"8443/{sni}"] and sorted(edge_routes) == [f"443/{hello}"]
        assert sorted(r["name"] for r in mcns.records.values()) == sorted([api, hello, sni])
        _backends_answer(nodes, worker_routes, edge_routes, values)

        writes, calls = (len(ca.issued), mcns.serial), [len(f[1].calls) for f in fakes]
        again = cli("plan", "-C", str(root), "--detailed-exitcode", "--json", env=env)
        assert again.code == 0, again.why
        assert (len(ca.issued), mcns.serial) == writes  # the plan only read
        assert all(c.startswith("ListRoutes") for f, n in zip(fakes, calls, strict=True) for c in f[1].calls[n:])

        (root / "hosts" / worker.name / "services" / "api.json").unlink()
        gone = cli("-C", str(root), "apply", "--yes", "--bundle", str(agent_bundle), "--json", env=env)
        assert gone.code == 0, gone.why
        assert api not in {r["name"] for r in mcns.records.values()}
        assert sorted(f"{k[0]}/{k[1]}" for k in fakes[0][1].routes) == [f"8443/{sni}"]
        assert _containers(nodes, worker.name) == ["hello", "sni"]
        assert cli("plan", "-C", str(root), "--detailed-exitcode", env=env).code == 0


def _backends_answer(
    nodes: Nodes, worker_routes: dict[str, tuple[str, str]], edge_routes: dict[str, tuple[str, str]],
    values: dict[str, str],
) -> None:  # fmt: skip
    """Each backend the proxies were given is the container answering."""
    worker, edge = nodes.nodes
    hello, api, sni = values["PUB"], values["INT"], values["SNI"]
    mode, backend = edge_routes[f"443/{hello}"]
    assert mode == "l7" and backend.startswith(f"{worker.address}:")
    assert nodes.sh(edge.name, f"curl -sS --max-time 10 http://{backend}/").stdout.startswith("hello 1 ")
    assert nodes.sh(worker.name, f"curl -sS http://{worker_routes[f'443/{api}'][1]}/").stdout.startswith("api 1")
    port = worker_routes[f"8443/{sni}"][1].rpartition(":")[2]
    ca_file = "/srv/sni/tls.pem"  # the service's own certificate: what a client trusts for it
    got = nodes.sh(worker.name, f"curl -sS --resolve {sni}:{port}:127.0.0.1 --cacert {ca_file} "
                                f"https://{sni}:{port}/").stdout  # fmt: skip
    assert got.startswith("sni 1 ")


def _no_secret_leaks(nodes: Nodes, root: Path, runs: list[CliRun], env: dict[str, str], tmp_path: Path) -> None:
    """sni's private key (an age secret), the TSIG and ACME account keys and the proxies' private keys
    appear nowhere: not in the output (also with --debug), the saved plan, the fleet folder, the
    proxies' logs, the nodes' journals (sudo's and doas' logs included), nor any process's argv."""
    import os

    from tests.secret_poison import find_leaks, local_ps, secret_needles, secret_paths, tree_leaks

    os.environ.update(env)  # the needles decrypt the fleet's secrets with the operator key
    try:
        needles = secret_needles(root)
    finally:
        for key in env:
            os.environ.pop(key, None)
    assert "secrets/sni-tls-key.age" in needles
    for n in nodes.nodes:
        for key in nodes.sh(n.name, f"ls {CERTS}/*.key").stdout.split():
            text = nodes.sh(n.name, f"cat {key}").stdout
            needles[f"{n.name}:{key}"] = max((ln for ln in text.splitlines() if not ln.startswith("-----")), key=len)
    plan_file = tmp_path / "plan.json"
    debug = cli("--debug", "plan", "-C", str(root), "-o", str(plan_file), env=env)
    assert debug.code == 0, debug.stderr[-2000:]
    sources = {f"run {i} output": r.stdout + r.stderr for i, r in enumerate([*runs, debug])}
    sources["saved plan"] = plan_file.read_text()
    for n in nodes.nodes:
        sources[f"{n.name} journal"] = nodes.sh(n.name, "journalctl --no-pager -o cat", check=False).stdout
    sources["ps"] = local_ps()
    trees = tree_leaks(needles, root, skip=secret_paths(root)) + tree_leaks(needles, nodes.lab.run_dir / "nodeproxy")
    assert find_leaks(needles, sources) + trees == []
