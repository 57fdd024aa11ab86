"""`mcfleet apply` end to end through the edge, on full (systemd) lab nodes with real Knot,
Pebble, Caddy and HAProxy: the certs, DNS records and routes of three routes, then a second
apply that changes nothing, then a removal.

The backends are host-native programs on the first node (host.json `routes`), so this test
needs no container image: a public l7 route served by the edge node's Caddy, an internal l7
route served by the node's own Caddy, and an l4 route to a TLS server through the node's
HAProxy (SNI passthrough, the server's own certificate).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcfleet.lab.lab import Lab
from mcfleet.lab.login import Login
from mcfleet.lab.nodes import LabNode
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.nodeproxy import CADDY_ADMIN, providers_json, start_node_proxies
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.lab.proc import spawn, start_time, stop
from mcfleet.providers.cert.base import cert_info
from tests.certs import self_signed
from tests.integration.apply_lab import MakeNodes, Nodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

PUB, INT, SNI = 18181, 18182, 18443


def _in_net(node: LabNode, argv: list[str]) -> list[str]:
    return ["nsenter", "-t", str(node.ns_pid), "-n", "--", *argv]


@pytest.fixture
def backends(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """Started by the test once its nodes exist: (the TLS server's cert, pids to stop)."""
    pids: list[int] = []
    yield tmp_path, pids
    for pid in pids:
        stop(pid, None)


def _start_backends(node: LabNode, d: Path, zone: str, pids: list[int]) -> Path:
    for name, port in (("pub", PUB), ("int", INT)):
        (d / name).mkdir()
        (d / name / "index.html").write_text(f"this is the {name} page\n")
        pids.append(spawn(_in_net(node, ["/usr/bin/python3", "-m", "http.server", str(port), "--directory",
                                         str(d / name)]), log=d / f"{name}.log"))  # fmt: skip
    crt, key = self_signed(f"sni.{zone}", d, stem="sni")
    pids.append(spawn(_in_net(node, ["/usr/bin/openssl", "s_server", "-accept", str(SNI), "-cert", str(crt), "-key",
                                     str(key), "-www", "-quiet"]), log=d / "sni.log"))  # fmt: skip
    for pid in pids:
        assert start_time(pid) is not None
    return crt


def _fleet(nodes: Nodes, pebble: PebbleInfo, zone: str, proxies: dict[str, Any], account: Path) -> Path:
    root = nodes.fleet_dir
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["public_domains"] = [zone]
    fleet["providers"].update(proxies)
    fleet["providers"]["cert"] = {"kind": "acme", "directory": pebble.directory, "account_key_file": str(account),
                                  "ca_file": pebble.ca_file}  # fmt: skip
    (root / "fleet.json").write_text(json.dumps(fleet, indent=2))
    _fleet_roles_and_routes(nodes, zone)
    return root


def _curl(host: str, port: int, address: str, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--resolve", f"{host}:{port}:{address}", "--cacert", str(ca),
         f"https://{host}:{port}/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _knot(knot: KnotInfo, name: str) -> list[str]:
    from dnslib import DNSRecord

    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(knot.server, knot.port, timeout=5))
    return [str(rr.rdata) for rr in reply.rr]


@pytest.mark.parametrize("logins", [["root"], ["sudo", "doas"]], ids=["root", "sudo+doas"])
def test_apply_through_the_edge_converges_and_removes(  # noqa: PLR0917 (pytest fixtures)
    lab: Lab, knot: KnotInfo, pebble: PebbleInfo, make_nodes: MakeNodes, agent_bundle: Path,
    backends: tuple[Path, list[int]], tmp_path: Path, logins: list[Login],
) -> None:  # fmt: skip
    """Both nodes as root; or the worker as kyle with sudo and the edge as kyle with doas (cert keys,
    Caddy/HAProxy admin sockets and their files on the nodes then all go through the escalation)."""
    import asyncio

    nodes = make_nodes(2, f"edge{logins[0][0]}", login=logins)
    worker, edge = nodes.nodes
    zone = knot.zone
    d, pids = backends
    sni_cert = _start_backends(worker, d, zone, pids)
    proxies = {n.name: asyncio.run(start_node_proxies(lab.state, lab.run_dir, n)) for n in (worker, edge)}
    root = _fleet(nodes, pebble, zone, providers_json(proxies[worker.name]), tmp_path / "acme-account.key")
    pebble_root = tmp_path / "pebble-root.pem"
    pebble_root.write_text(pebble.root_pem())

    started = time.monotonic()
    run = cli("apply", str(root), "--all", "--yes", "--bundle", str(agent_bundle), "--json")
    took = time.monotonic() - started
    assert run.code == 0, run.why
    print(f"first apply (2 nodes, agent, 2 certs, 3 routes, 3 records): {took:.1f} s")

    assert "this is the pub page" in _curl(f"pub.{zone}", 443, edge.address, pebble_root).stdout
    assert "this is the int page" in _curl(f"int.{zone}", 443, worker.address, pebble_root).stdout
    sni = _curl(f"sni.{zone}", 8443, worker.address, sni_cert)
    assert sni.returncode == 0 and "s_server" in sni.stdout, sni.stderr
    # pub's name leads to the edge, whose proxy alone routes it; int and sni to their own node
    assert {n: _knot(knot, f"{n}.{zone}") for n in ("pub", "int", "sni")} == {
        "pub": [edge.address], "int": [worker.address], "sni": [worker.address]
    }  # fmt: skip
    key_mode = nodes.sh(edge.name, "stat -c '%a %U' /srv/mc-proxy/certs/pub.svc.mcp.example.test.key").stdout
    assert key_mode.strip() == "600 root"

    again = cli("plan", str(root), "--detailed-exitcode", "--json")
    assert again.code == 0, again.why  # converged: nothing to do
    _no_secret_leaks(lab, nodes, root, [run, again], tmp_path)
    _renews_near_expiry_and_keeps_the_rest(nodes, root, zone, agent_bundle, tmp_path)
    _a_spoiled_key_is_replaced(nodes, root, zone, agent_bundle, pebble_root)
    _a_tls_entry_removed_by_hand_is_given_back(nodes, root, zone, agent_bundle, pebble_root)
    _another_cert_provider_issues_again(nodes, root, zone, agent_bundle, pebble_root)
    _a_route_moves_between_proxies_whole(nodes, knot, root, agent_bundle, pebble_root)

    # remove the public route: - dns, - route, - cert; Knot and the edge's Caddy forget it
    host_file = root / "hosts" / worker.name / "host.json"
    host = json.loads(host_file.read_text())
    host["routes"] = host["routes"][1:]
    host_file.write_text(json.dumps(host, indent=2))
    plan = cli("plan", str(root), "--json")
    data = json.loads(plan.stdout)
    removed = [f"{a['host']} {a['phase']} {a['kind']} {a['subject']}" for a in data["actions"]]
    assert f"{worker.name} dns delete dns pub.{zone}" in removed
    assert f"{edge.name} route delete route 443/pub.{zone}" in removed
    assert f"{edge.name} cert delete cert pub.{zone}" in removed
    gone = cli("apply", str(root), "--all", "--yes", "--bundle", str(agent_bundle), "--json")
    assert gone.code == 0, gone.why
    assert _knot(knot, f"pub.{zone}") == []
    assert "this is the pub page" not in _curl(f"pub.{zone}", 443, edge.address, pebble_root).stdout
    assert "this is the int page" in _curl(f"int.{zone}", 443, worker.address, pebble_root).stdout
    _a_folder_deleted_first_is_named_until_forgotten(nodes, knot, root, agent_bundle)


def _a_folder_deleted_first_is_named_until_forgotten(nodes: Nodes, knot: KnotInfo, root: Path, bundle: Path) -> None:
    """The worker's folder deleted while its routes and records are in place: each plan names it as gone,
    with what the last apply left (pub's record, which that apply removed, is not among them: apply
    noted what it wrote).  A plan of the whole fleet (here the edge alone) removes its records at the DNS
    server, and apply does, then drops them from the note; the rest is named until `mcfleet
    forget`.  Then the folder comes back, and an apply puts its record back."""
    worker, edge = nodes.nodes
    zone = knot.zone
    folder, aside = root / "hosts" / worker.name, root.parent / f"{worker.name}.aside"
    edge_file = root / "hosts" / edge.name / "host.json"
    edge_text = edge_file.read_text()
    edge_host = json.loads(edge_text)
    edge_host["roles"] = [*edge_host["roles"], "master"]  # the fleet needs a master: the worker was it
    edge_file.write_text(json.dumps(edge_host, indent=2))
    folder.rename(aside)
    try:
        plan = cli("plan", str(root), "--json")
        assert plan.code == 0, plan.why
        data = json.loads(plan.stdout)
        gone = data["gone"][worker.name]
        assert f"int.{zone} A {worker.address}" in gone["records"], gone
        assert not [r for r in gone["records"] if r.startswith(f"pub.{zone} ")], gone
        assert f"int.{zone}:443" in gone["routes"], gone
        assert [(a["host"], a["phase"], a["kind"], a["subject"]) for a in data["actions"]] == [
            (worker.name, "dns", "delete", f"dns int.{zone}"),
            (worker.name, "dns", "delete", f"dns sni.{zone}"),
        ]  # its records at the server; the edge has nothing to do
        text = cli("plan", str(root))
        assert f"{worker.name}: gone from hosts/: nothing plans it any more" in text.stdout, text.why
        assert f"  dns removals\n    - dns int.{zone}  {worker.name} is gone from hosts/" in text.stdout, text.why
        assert "hint: apply removes its DNS records listed above; to remove the rest, restore" in text.stdout

        removed = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
        assert removed.code == 0, removed.why
        said = removed.summary["hosts"][worker.name]
        assert said["phases"]["dns"] == {**said["phases"]["dns"], "status": "changed",
                                         "message": f"int.{zone} removed, sni.{zone} removed"}  # fmt: skip
        assert _knot(knot, f"int.{zone}") == [] and _knot(knot, f"sni.{zone}") == []
        after = json.loads(cli("plan", str(root), "--json").stdout)
        assert after["actions"] == [] and after["gone"][worker.name]["records"] == []  # the rest stays named
        status = cli("-C", str(root), "status")
        assert status.code == 1 and f"{worker.name}: gone from hosts/, its node still holds " in status.stdout, (
            status.why
        )
        forgot = cli("-C", str(root), "forget", worker.name)
        assert forgot.code == 0 and forgot.stdout.startswith(f"forgot {worker.name}: left as they are: "), forgot.why
        assert json.loads(cli("plan", str(root), "--json").stdout)["gone"] == {}
    finally:
        aside.rename(folder)
        edge_file.write_text(edge_text)
    back = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
    assert back.code == 0 and _knot(knot, f"int.{zone}") == _knot(knot, f"sni.{zone}") == [worker.address], back.why
    again = cli("plan", str(root), "--detailed-exitcode", "--json")
    assert again.code == 0 and json.loads(again.stdout)["gone"] == {}, again.why


def _set_pub_public(nodes: Nodes, root: Path, public: bool) -> None:
    host_file = root / "hosts" / nodes.nodes[0].name / "host.json"
    host = json.loads(host_file.read_text())
    host["routes"][0]["public"] = public
    host_file.write_text(json.dumps(host, indent=2))


def _a_route_moves_between_proxies_whole(
    nodes: Nodes, knot: KnotInfo, root: Path, agent_bundle: Path, pebble_root: Path
) -> None:
    """pub made internal: its route moves from the edge's proxy to the worker's, its name to the worker.
    A plan of the edge alone would remove it while nothing adds it on the worker: refused, with the
    selection that makes the move whole, until the worker's proxy has it; then it goes ahead.  Made
    public again with both hosts in one apply, the edge takes it back before the worker lets it go."""
    worker, edge = nodes.nodes
    pub = f"pub.{knot.zone}"
    _set_pub_public(nodes, root, public=False)
    alone = cli("plan", str(root), "--on", edge.name, "--json")
    assert alone.code == 1, alone.why  # refusals count as errors
    refused = {a["subject"]: a for a in json.loads(alone.stdout)["actions"] if a["kind"] == "refuse"}
    assert sorted(refused) == [f"cert {pub}", f"route 443/{pub}"], refused
    assert (
        refused[f"route 443/{pub}"]["hint"]
        == f"plan both hosts so that the move is whole: --on {edge.name} --on {worker.name}"
    )
    assert "this is the pub page" in _curl(pub, 443, edge.address, pebble_root).stdout  # nothing was removed

    first = cli("apply", str(root), "--on", worker.name, "--yes", "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.why
    assert _knot(knot, pub) == [worker.address]
    assert "this is the pub page" in _curl(pub, 443, worker.address, pebble_root).stdout
    then = cli("apply", str(root), "--on", edge.name, "--yes", "--bundle", str(agent_bundle), "--json")
    assert then.code == 0, then.why  # the worker's proxy has it now: the edge lets it go
    assert "this is the pub page" not in _curl(pub, 443, edge.address, pebble_root).stdout

    _set_pub_public(nodes, root, public=True)
    back = cli("apply", str(root), "--all", "--yes", "--bundle", str(agent_bundle), "--json")
    assert back.code == 0, back.why
    assert _knot(knot, pub) == [edge.address]
    assert "this is the pub page" in _curl(pub, 443, edge.address, pebble_root).stdout
    assert cli("plan", str(root), "--detailed-exitcode").code == 0


def test_apply_with_the_seed_native_backends_against_their_contract_fakes(
    lab: Lab, make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """The same flow with MCNS, Metacrypt and mc-proxy (contract fakes): the mc-proxy fake listens
    on the node's /srv/mc-proxy/mc-proxy.sock, so mcfleet reaches it through the node's SSH
    connection as it would the real one."""
    from tests.contract_fakes.mcns import run_mcns
    from tests.contract_fakes.mcproxy import mcproxy_fakes
    from tests.contract_fakes.metacrypt import run_metacrypt

    nodes = make_nodes(2, "seed")
    worker, edge = nodes.nodes
    zone = "svc.mcp.example.test"
    token = tmp_path / "mcias-token"
    token.write_text("POISON-mcias-token-never-printed\n")
    token.chmod(0o600)
    for n in (worker, edge):
        nodes.sh(n.name, "mkdir -p /srv/mc-proxy/certs")

    sockets = [f"/proc/{n.ns_pid}/root/srv/mc-proxy/mc-proxy.sock" for n in (worker, edge)]
    with mcproxy_fakes(sockets) as fakes, run_mcns(zone, token.read_text().strip()) as (mcns_url, mcns), \
            run_metacrypt(token.read_text().strip(), (f".{zone}",)) as (mc_url, ca):  # fmt: skip
        root = _native_fleet(nodes, zone, token, mcns_url, mc_url)

        run = cli("apply", str(root), "--all", "--yes", "--bundle", str(agent_bundle), "--json")
        assert run.code == 0, run.why
        assert sorted(ca.issued) == [f"int.{zone}", f"pub.{zone}"]
        worker_routes = {f"{k[0]}/{k[1]}": r.backend for k, r in fakes[0][1].routes.items()}
        edge_routes = {f"{k[0]}/{k[1]}": r.backend for k, r in fakes[1][1].routes.items()}
        assert worker_routes == {f"443/int.{zone}": f"127.0.0.1:{INT}", f"8443/sni.{zone}": f"127.0.0.1:{SNI}"}
        assert edge_routes == {f"443/pub.{zone}": f"{worker.address}:{PUB}"}
        assert sorted(r["name"] for r in mcns.records.values()) == [f"{n}.{zone}" for n in ("int", "pub", "sni")]
        assert "POISON" not in run.stdout + run.stderr

        writes = (len(ca.issued), mcns.serial, [len(f[1].calls) for f in fakes])
        again = cli("plan", str(root), "--detailed-exitcode", "--json")
        assert again.code == 0, again.why
        assert (len(ca.issued), mcns.serial) == writes[:2]  # the plan only read
        assert all(c.startswith("ListRoutes") for f in fakes for c in f[1].calls[len(f[1].calls) - 1 :])

        _remove_while_mcns_is_down(nodes, root, zone, agent_bundle, mcns=mcns, edge_proxy=fakes[1][1])


def _renews_near_expiry_and_keeps_the_rest(nodes: Nodes, root: Path, zone: str, bundle: Path, d: Path) -> None:
    """A cert 20 days from expiry is `~ (expires in N days)` and renewed; one 60 days out is kept."""
    worker, edge = nodes.nodes
    near, near_key = self_signed(f"int.{zone}", d / "near", days=20, stem="sni")
    far, far_key = self_signed(f"pub.{zone}", d / "far", days=60, stem="sni")
    for node, name, pair in ((worker, "int", (near, near_key)), (edge, "pub", (far, far_key))):
        for path, ext in zip(pair, ("pem", "key"), strict=True):  # `cat >` keeps the key's owner and mode
            nodes.sh(node.name, f"cat > /srv/mc-proxy/certs/{name}.{zone}.{ext} <<'EOF'\n{path.read_text()}EOF")
    plan = cli("plan", str(root), "--json")
    certs = [a for a in json.loads(plan.stdout)["actions"] if a["phase"] == "cert"]
    assert [(a["host"], a["kind"], a["subject"]) for a in certs] == [(worker.name, "replace", f"cert int.{zone}")]
    assert certs[0]["reason"].startswith("expires in 19 days")
    # Caddy read pub's files when its route was added and serves what it read, not the far one now on file
    stale = [a for a in json.loads(plan.stdout)["actions"] if a["phase"] == "route" and a["host"] == edge.name]
    assert [(a["kind"], a["subject"]) for a in stale] == [("update", f"route 443/pub.{zone}")]
    assert "the proxy serves another certificate for" in stale[0]["reason"]
    renew = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
    assert renew.code == 0, renew.why
    assert "this is the pub page" in _curl(f"pub.{zone}", 443, edge.address, far).stdout  # the one on file now
    renewed = cert_info(nodes.sh(worker.name, f"cat /srv/mc-proxy/certs/int.{zone}.pem").stdout)
    assert renewed.days_left() > 60 and renewed.sans == (f"int.{zone}",)  # a new one from Pebble
    kept = nodes.sh(edge.name, f"cat /srv/mc-proxy/certs/pub.{zone}.pem").stdout
    assert kept == far.read_text()


def _a_spoiled_key_is_replaced(nodes: Nodes, root: Path, zone: str, bundle: Path, pebble_root: Path) -> None:
    """The edge's key spoiled two ways, each `-/+ cert` in the plan, then a new 0600 key of the proxy user's
    with its certificate, which the edge serves:
    - made readable by every account (0644): it may have been read;
    - put in place without its certificate (by hand, or by a tool that died between the two files): Caddy
      keeps serving the pair it loaded and refuses its whole configuration at its next load.  The plan
      compares the public halves (openssl on the node)."""
    edge = nodes.nodes[1]
    key = f"/srv/mc-proxy/certs/pub.{zone}.key"
    spoils = {
        f"chmod 0644 {key}": f"its private key {key} is mode 0644, readable by other accounts",
        f"openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}.new && chmod 600 {key}.new "
        f"&& mv {key}.new {key}": f"its private key {key} is not the certificate's",
    }  # fmt: skip
    for spoil, says in spoils.items():
        before = nodes.sh(edge.name, f"sha256sum < {key}").stdout
        nodes.sh(edge.name, spoil)
        plan = cli("plan", str(root), "--json")
        certs = [a for a in json.loads(plan.stdout)["actions"] if a["phase"] == "cert"]
        assert [(a["host"], a["kind"], a["subject"]) for a in certs] == [(edge.name, "replace", f"cert pub.{zone}")]
        assert says in certs[0]["reason"]
        fixed = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
        assert fixed.code == 0, fixed.why
        assert nodes.sh(edge.name, f"stat -c '%a %U' {key}").stdout.strip() == "600 root"
        assert nodes.sh(edge.name, f"sha256sum < {key}").stdout != before  # a new key, not the spoiled one
        assert "this is the pub page" in _curl(f"pub.{zone}", 443, edge.address, pebble_root).stdout
        assert cli("plan", str(root), "--detailed-exitcode").code == 0


def _a_tls_entry_removed_by_hand_is_given_back(nodes: Nodes, root: Path, zone: str, bundle: Path, ca: Path) -> None:
    """Caddy's certificate entry for pub deleted through its admin API, the route kept: the edge answers no
    TLS for the name while Caddy still lists the route.  The plan reads the file Caddy holds for each route,
    and apply adds the route again with it."""
    edge = nodes.nodes[1]
    admin = f"curl -sf -H 'Host;' --unix-socket {CADDY_ADMIN} http://localhost/config/apps/tls/certificates/load_files"
    nodes.sh(edge.name, f"{admin}/0 -X DELETE")
    assert _curl(f"pub.{zone}", 443, edge.address, ca).returncode != 0
    plan = json.loads(cli("plan", str(root), "--json").stdout)["actions"]
    removed = "drift: the proxy holds no certificate (its TLS entry was removed)"
    assert [(a["host"], a["kind"], a["subject"], a["reason"].partition(" for it")[0]) for a in plan] == [
        (edge.name, "update", f"route 443/pub.{zone}", removed)
    ]
    assert cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle)).code == 0
    assert "this is the pub page" in _curl(f"pub.{zone}", 443, edge.address, ca).stdout
    assert cli("plan", str(root), "--detailed-exitcode").code == 0


def _another_cert_provider_issues_again(nodes: Nodes, root: Path, zone: str, bundle: Path, pebble_root: Path) -> None:
    """The fleet's cert provider changes (here: Pebble's directory by its address instead of its name, as
    ACME staging gives way to production): valid certificates the old one issued are issued again."""
    worker, edge = nodes.nodes
    fleet_file = root / "fleet.json"
    fleet = json.loads(fleet_file.read_text())
    was = fleet["providers"]["cert"]["directory"]
    fleet["providers"]["cert"]["directory"] = was.replace("localhost", "127.0.0.1")
    assert fleet["providers"]["cert"]["directory"] != was
    fleet_file.write_text(json.dumps(fleet, indent=2))
    plan = cli("plan", str(root), "--json")
    certs = {(a["host"], a["kind"], a["subject"]): a["reason"] for a in json.loads(plan.stdout)["actions"]
             if a["phase"] == "cert"}  # fmt: skip
    assert set(certs) == {(worker.name, "replace", f"cert int.{zone}"), (edge.name, "replace", f"cert pub.{zone}")}
    assert {r.partition(";")[0] for r in certs.values()} == {f"issued by acme {was}"}
    moved = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
    assert moved.code == 0, moved.why
    assert "this is the pub page" in _curl(f"pub.{zone}", 443, edge.address, pebble_root).stdout
    assert cli("plan", str(root), "--detailed-exitcode").code == 0  # recorded as the new provider's


def _no_secret_leaks(lab: Lab, nodes: Nodes, root: Path, runs: list[Any], tmp_path: Path) -> None:
    """The TSIG key, the ACME account key and the private keys written on the nodes appear nowhere:
    not in the output (also with --debug), the saved plan, the journal and state under the fleet,
    the proxies' logs, the nodes' journals, nor any process's argv."""
    from tests.secret_poison import find_leaks, local_ps, secret_needles, secret_paths, tree_leaks

    needles = secret_needles(root)
    for n in nodes.nodes:
        for key in nodes.sh(n.name, "ls /srv/mc-proxy/certs/*.key").stdout.split():
            text = nodes.sh(n.name, f"cat {key}").stdout
            needles[f"{n.name}:{key}"] = max((ln for ln in text.splitlines() if not ln.startswith("-----")), key=len)
    plan_file = tmp_path / "plan.json"
    debug = cli("--debug", "plan", str(root), "-o", str(plan_file))
    assert debug.code == 0, debug.stderr[-2000:]
    sources = {f"run {i} output": r.stdout + r.stderr for i, r in enumerate([*runs, debug])}
    sources["saved plan"] = plan_file.read_text()
    for n in nodes.nodes:
        sources[f"{n.name} journal"] = nodes.sh(n.name, "journalctl --no-pager -o cat", check=False).stdout
    sources["ps"] = local_ps()
    trees = tree_leaks(needles, root, skip=secret_paths(root)) + tree_leaks(needles, lab.run_dir / "nodeproxy")
    assert find_leaks(needles, sources) + trees == []


def _remove_while_mcns_is_down(
    nodes: Nodes, root: Path, zone: str, bundle: Path, *, mcns: Any, edge_proxy: Any
) -> None:
    """Removing pub while MCNS is down: the worker's DNS step fails with MCNS's message and what to
    do, the edge host goes on (its route is removed); once MCNS is back, re-running converges."""
    worker, edge = nodes.nodes
    host_file = root / "hosts" / worker.name / "host.json"
    host = json.loads(host_file.read_text())
    host["routes"] = host["routes"][1:]
    host_file.write_text(json.dumps(host, indent=2))
    mcns.down = True
    down = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
    assert down.code == 1, down.why
    dns_phase = down.phase(worker.name, "dns")
    assert dns_phase["status"] == "failed" and "MCNS answered 503" in dns_phase["message"]
    assert "what to do" in dns_phase["message"]
    assert down.summary["hosts"][edge.name]["status"] == "changed" and edge_proxy.routes == {}
    mcns.down = False
    gone = cli("apply", str(root), "--all", "--yes", "--bundle", str(bundle), "--json")
    assert gone.code == 0, gone.why
    assert f"pub.{zone}" not in {r["name"] for r in mcns.records.values()}
    assert cli("plan", str(root), "--detailed-exitcode").code == 0


def _native_fleet(nodes: Nodes, zone: str, token: Path, mcns_url: str, metacrypt_url: str) -> Path:
    root = nodes.fleet_dir
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["zone"] = zone
    fleet["public_domains"] = [zone]
    fleet["providers"] = {
        "dns": {"kind": "mcns", "url": mcns_url, "token_file": str(token)},
        "cert": {"kind": "metacrypt", "url": metacrypt_url, "token_file": str(token)},
        "route": {"kind": "mc-proxy", "socket": "/srv/mc-proxy/mc-proxy.sock", "user": "root"},
    }
    (root / "fleet.json").write_text(json.dumps(fleet, indent=2))
    _fleet_roles_and_routes(nodes, zone)
    return root


def _fleet_roles_and_routes(nodes: Nodes, zone: str) -> None:
    root = nodes.fleet_dir
    worker, edge = nodes.nodes
    edge_file = root / "hosts" / edge.name / "host.json"
    host = json.loads(edge_file.read_text())
    host["roles"] = ["edge"]
    edge_file.write_text(json.dumps(host, indent=2))
    worker_file = root / "hosts" / worker.name / "host.json"
    host = json.loads(worker_file.read_text())
    host["routes"] = [
        {"hostname": f"pub.{zone}", "mode": "l7", "backend": f"{worker.address}:{PUB}", "public": True},
        {"hostname": f"int.{zone}", "mode": "l7", "backend": f"127.0.0.1:{INT}"},
        {"hostname": f"sni.{zone}", "mode": "l4", "listener": 8443, "backend": f"127.0.0.1:{SNI}"},
    ]
    worker_file.write_text(json.dumps(host, indent=2))
