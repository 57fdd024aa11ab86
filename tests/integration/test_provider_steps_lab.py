"""The cert, DNS and route steps against the real lab: Pebble issues, Knot holds the records,
Caddy and HAProxy run inside the nodes (node3 is the edge).  Three services on node1 (their
backends are plain processes here; containers are the deploy step's job): a public l7 route
through the edge, an internal l7 route on node1's own proxy, an l4 SNI route on node1.

Shows: one run issues every cert, writes every record and route, and curl through the proxies
returns each page with a certificate that verifies (and the l4 service's own TLS); a cert 20
days from expiry is renewed and one 60 days out is kept; removal takes DNS, then routes away;
Knot and the proxies no longer know the names.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.desired import DesiredHost, desired_state
from mcfleet.fleet.load import LoadedFleet, load_fleet
from mcfleet.fleet.rules import check
from mcfleet.lab.peers.nodeproxy import NodeProxies, providers_json, start_node_proxies
from mcfleet.lab.proc import spawn, start_time, stop
from mcfleet.plan.model import Action
from mcfleet.providers.cert.base import cert_info
from mcfleet.providers.read import dns_answers, proxy_routes
from mcfleet.providers.select import dns_backend
from mcfleet.providers.steps import StepOutcome, apply_certs, apply_dns, apply_routes
from mcfleet.transport.ssh import SshPool
from tests.certs import self_signed
from tests.fixtures_lab import LabFleet

pytestmark = pytest.mark.lab

PAGES = {"pub": 18181, "int": 18182}
SNI_PORT = 18443


@pytest.fixture(scope="module")
def proxies(lab_fleet: LabFleet) -> dict[str, NodeProxies]:
    lab = lab_fleet.lab

    async def both() -> list[NodeProxies]:
        return list(await asyncio.gather(*(start_node_proxies(lab.state, lab.run_dir, lab.node(n))
                                           for n in ("node1", "node3"))))  # fmt: skip

    return {p.node: p for p in asyncio.run(both())}


def _service(name: str, route: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "components": [{"name": name, "image": "registry.lab:5000/demo:v1", "routes": [route]}]}


def _fleet_dir(lab_fleet: LabFleet, proxies: dict[str, NodeProxies], dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(lab_fleet.fleet_dir, dest, ignore=shutil.ignore_patterns("services", ".mcfleet", ".lab"))
    fleet = json.loads((dest / "fleet.json").read_text())
    zone = fleet["zone"]
    fleet["public_domains"] = [zone]
    fleet["providers"].update(providers_json(proxies["node1"]))
    # our own ACME account key (made on first use): the lab's fleet says no cert provider until it has one
    fleet["providers"]["cert"] = {"kind": "acme", "directory": lab_fleet.pebble.directory,
                                  "account_key_file": str(dest.parent / "acme-account.key"),
                                  "ca_file": lab_fleet.pebble.ca_file}  # fmt: skip
    (dest / "fleet.json").write_text(json.dumps(fleet, indent=2))
    edge = json.loads((dest / "hosts/node3/host.json").read_text())
    edge["roles"] = ["edge"]
    (dest / "hosts/node3/host.json").write_text(json.dumps(edge, indent=2))
    node1 = lab_fleet.node("node1").address
    services = dest / "hosts/node1/services"
    services.mkdir(parents=True)
    routes = {
        "pub": {"port": 8080, "mode": "l7", "public": True, "hostname": f"pub.{zone}", "host_port": PAGES["pub"],
                "bind": ["127.0.0.1", node1]},
        "int": {"port": 8080, "mode": "l7", "host_port": PAGES["int"]},
        "sni": {"port": 8443, "mode": "l4", "listener": 8443, "host_port": SNI_PORT},
    }  # fmt: skip
    for name, route in routes.items():
        (services / f"{name}.json").write_text(json.dumps(_service(name, route), indent=2))
    return dest


@pytest.fixture(scope="module")
def backends(lab_fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The services' processes on node1: two pages and a TLS server with its own certificate."""
    d = tmp_path_factory.mktemp("stepbackends")
    n1 = lab_fleet.node("node1")
    pids = []
    for name, port in PAGES.items():
        (d / name).mkdir()
        (d / name / "index.html").write_text(f"this is the {name} service\n")
        pids.append(spawn([*n1.nsenter(), "/usr/bin/python3", "-m", "http.server", str(port), "--bind", "0.0.0.0",
                           "--directory", str(d / name)], log=d / f"{name}.log"))  # fmt: skip
    crt, key = self_signed(f"sni.{lab_fleet.knot.zone}", d / "sni", days=365)
    pids.append(spawn([*n1.nsenter(), "/usr/bin/openssl", "s_server", "-accept", str(SNI_PORT), "-cert", str(crt),
                       "-key", str(key), "-www", "-quiet"], log=d / "sni.log"))  # fmt: skip
    started = {pid: start_time(pid) for pid in pids}
    time.sleep(1.0)
    yield crt
    for pid, when in started.items():
        stop(pid, when)


def _creates(d: DesiredHost) -> dict[str, list[Action]]:
    def act(phase: str, subject: str) -> Action:
        return Action(host=d.name, phase=phase, kind="create", subject=subject)

    return {
        "cert": [act("cert", f"cert {k}") for k in sorted(d.certs)],
        "dns": [act("dns", f"dns {k}") for k in sorted(d.records)],
        "route": [act("route", f"route {k}") for k in sorted(d.routes)],
    }


async def _apply(loaded: LoadedFleet, desired: dict[str, DesiredHost], plan: dict[str, dict[str, list[Action]]],
                 renewed: set[str] | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    async with SshPool(hosts=loaded.hosts) as pool:
        for host, steps in sorted(plan.items()):
            node = await pool.connect(loaded.hosts[host])
            d = desired[host]
            # the apply order: cert -> (containers) -> routes -> DNS; removals: DNS -> routes -> certs
            adds = {k: [a for a in v if a.kind != "delete"] for k, v in steps.items()}
            drops = {k: [a for a in v if a.kind == "delete"] for k, v in steps.items()}
            dns_gone = await apply_dns(loaded, d, drops.get("dns", []))
            routes_gone = await apply_routes(loaded, node, d, drops.get("route", []))
            certs_gone = await apply_certs(loaded, node, d, drops.get("cert", []))
            cert = await apply_certs(loaded, node, d, adds.get("cert", []))
            route = await apply_routes(loaded, node, d, adds.get("route", []), cert.renewed | (renewed or set()))
            dns = await apply_dns(loaded, d, adds.get("dns", []))
            out[host] = {"cert": cert, "route": route, "dns": dns, "dns-": dns_gone, "route-": routes_gone,
                         "cert-": certs_gone}  # fmt: skip
    return out


def _curl(host: str, port: int, address: str, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--resolve", f"{host}:{port}:{address}", "--cacert", str(ca),
         f"https://{host}:{port}/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.fixture
def cleanup(lab_fleet: LabFleet) -> Iterator[None]:
    """Other tests share the lab: leave no cert file on the nodes and no record in Knot."""
    yield
    for node in ("node1", "node3"):
        lab_fleet.exec_in(node, ["sh", "-c", "rm -f /srv/mc-proxy/certs/*"])
    root = lab_fleet.fleet_dir
    loaded = load_fleet(root)
    backend = dns_backend(loaded.fleet) if loaded.fleet else None
    for name in ("pub", "int", "sni"):
        if backend is not None:
            asyncio.run(backend.delete_a(f"{name}.{lab_fleet.knot.zone}"))


@pytest.mark.usefixtures("cleanup")
def test_steps_issue_register_route_renew_and_remove(
    lab_fleet: LabFleet, proxies: dict[str, NodeProxies], backends: Path, tmp_path: Path
) -> None:
    root = _fleet_dir(lab_fleet, proxies, tmp_path / "fleet")
    loaded = load_fleet(root)
    assert [f.format() for f in check(loaded)] == []
    zone = lab_fleet.knot.zone
    desired = desired_state(loaded)
    assert set(desired["node3"].routes) == {f"443/pub.{zone}"}
    assert set(desired["node1"].routes) == {f"443/int.{zone}", f"8443/sni.{zone}"}
    pebble_root = tmp_path / "pebble-root.pem"
    pebble_root.write_text(lab_fleet.pebble.root_pem())

    started = time.monotonic()
    first = asyncio.run(_apply(loaded, desired, {h: _creates(desired[h]) for h in ("node1", "node3")}))
    took = time.monotonic() - started
    print(f"first run (2 certs from Pebble, 3 routes, 3 records): {took:.2f} s")
    made_before_a_failure(loaded, desired, first, zone)

    edge, worker = proxies["node3"].address, proxies["node1"].address
    pub = _curl(f"pub.{zone}", 443, edge, pebble_root)
    assert "this is the pub service" in pub.stdout, pub.stderr
    internal = _curl(f"int.{zone}", 443, worker, pebble_root)
    assert "this is the int service" in internal.stdout, internal.stderr
    sni = _curl(f"sni.{zone}", 8443, worker, backends)  # the service's own certificate, end to end
    assert sni.returncode == 0 and "s_server" in sni.stdout, sni.stderr

    read = asyncio.run(dns_answers(loaded, [f"pub.{zone}", f"int.{zone}", f"sni.{zone}"]))
    answers, ttls, error = read.values, read.ttls, read.error
    # pub's name leads to the edge, whose proxy alone routes it; int and sni to the worker
    # ... each written with the provider's TTL
    assert (error, answers, set(ttls.values())) == (
        None,
        {f"pub.{zone}": [edge], f"int.{zone}": [worker], f"sni.{zone}": [worker]},
        {getattr(loaded.fleet.providers.dns, "ttl", None)},
    )
    _a_route_that_changes_mode_moves_between_the_proxies(loaded, desired, "node1", f"443/int.{zone}")

    # renewal: plant a cert 20 days from expiry on node1 (renewed) and one 60 days out on node3 (kept)
    near, _ = self_signed(f"int.{zone}", tmp_path / "planted", days=20)
    far, _ = self_signed(f"pub.{zone}", tmp_path / "planted", days=60)
    int_path, pub_path = desired["node1"].certs["int"].path, desired["node3"].certs["pub"].path
    lab_fleet.exec_in("node1", ["cp", str(near), int_path])
    lab_fleet.exec_in("node3", ["cp", str(far), pub_path])
    days = {p: cert_info(lab_fleet.exec_in(h, ["cat", p]).stdout).days_left() for h, p in
            (("node1", int_path), ("node3", pub_path))}  # fmt: skip
    renew = {p for p, left in days.items() if left < 30}
    assert renew == {int_path}
    plan = {"node1": {"cert": [Action(host="node1", phase="cert", kind="replace", subject="cert int")]}}
    again = asyncio.run(_apply(loaded, desired, plan))
    assert again["node1"]["cert"].status == "changed", again["node1"]["cert"].message
    assert "int" in again["node1"]["route"].message  # its route was given to Caddy again: the new cert is read
    renewed = cert_info(lab_fleet.exec_in("node1", ["cat", int_path]).stdout)
    assert renewed.days_left() > 60 and "this is the int service" in _curl(f"int.{zone}", 443, worker,
                                                                         pebble_root).stdout  # fmt: skip
    assert 55 <= cert_info(lab_fleet.exec_in("node3", ["cat", pub_path]).stdout).days_left() <= 60

    # removal of pub: DNS first, then the edge's route (and the cert on the edge)
    gone = {h: DesiredHost(**{**vars(d), "routes": {}, "certs": {}, "records": {}}) for h, d in desired.items()}
    removal = {
        "node1": {"dns": [Action(host="node1", phase="dns", kind="delete", subject=f"dns pub.{zone}")]},
        "node3": {
            "route": [Action(host="node3", phase="route", kind="delete", subject=f"route 443/pub.{zone}",
                             before={"mode": "l7"})],
            "cert": [Action(host="node3", phase="cert", kind="delete", subject="cert pub", before={"path": pub_path})],
        },
    }  # fmt: skip
    removed = asyncio.run(_apply(loaded, gone, removal))
    failures = [f"{h} {k}: {o.message}" for h, s in removed.items() for k, o in s.items() if o.status == "failed"]
    assert failures == []
    assert asyncio.run(dns_answers(loaded, [f"pub.{zone}", f"int.{zone}"])).values == {
        f"pub.{zone}": [],
        f"int.{zone}": [worker],
    }
    assert asyncio.run(_live(loaded, ["node3"])) == {"node3": []}
    assert "this is the pub service" not in _curl(f"pub.{zone}", 443, edge, pebble_root).stdout

    _no_secret_anywhere(lab_fleet, root, int_path, [first, again, removed])


def made_before_a_failure(
    loaded: LoadedFleet, desired: dict[str, DesiredHost], first: dict[str, dict[str, Any]], zone: str
) -> None:
    """Each step says which items it put in place: all of them in the first run; and a step that fails on
    one item still names the others (apply records those): a record outside the zone (Knot refuses it)
    beside one in it, a route on a listener Caddy has no server for (10443) beside one it serves."""
    from dataclasses import replace

    for host, steps in first.items():
        for step, outcome in steps.items():
            assert outcome.status in ("changed", "unchanged"), f"{host} {step}: {outcome.message}"
        d = desired[host]
        assert (steps["cert"].made, steps["route"].made, steps["dns"].made) == (
            set(d.certs), set(d.routes), set(d.records)), host  # fmt: skip
    d = desired["node1"]

    good_name = f"int.{zone}"
    bad_name = "int.elsewhere.test"
    records = {**d.records, bad_name: replace(d.records[good_name], name=bad_name)}
    dns = asyncio.run(apply_dns(loaded, replace(d, records=records), [
        Action(host=d.name, phase="dns", kind="create", subject=f"dns {bad_name}"),
        Action(host=d.name, phase="dns", kind="update", subject=f"dns {good_name}"),
    ]))  # fmt: skip
    assert dns.status == "failed" and bad_name in dns.message and dns.made == {good_name}, dns
    good_route = d.routes[f"443/{good_name}"]
    bad_route = replace(good_route, listener=10443)  # the node proxies serve 443, 8443 and 9443

    async def routes() -> StepOutcome:
        async with SshPool(hosts=loaded.hosts) as pool:
            node = await pool.connect(loaded.hosts[d.name])
            return await apply_routes(loaded, node, replace(d, routes={**d.routes, bad_route.key: bad_route}), [
                Action(host=d.name, phase="route", kind="create", subject=f"route {bad_route.key}"),
                Action(host=d.name, phase="route", kind="update", subject=f"route {good_route.key}"),
            ])  # fmt: skip

    route = asyncio.run(routes())
    assert route.status == "failed" and "10443" in route.message and route.made == {good_route.key}, route


def _no_secret_anywhere(lab_fleet: LabFleet, root: Path, key_of: str, runs: list[dict[str, dict[str, Any]]]) -> None:
    """No secret in any outcome nor in the proxies' logs: the TSIG secret, the ACME account key, a private key."""
    key_pem = lab_fleet.exec_in("node1", ["cat", key_of[: -len(".pem")] + ".key"]).stdout
    secrets = [lab_fleet.knot.secret(), _body(key_pem)]
    account = json.loads((root / "fleet.json").read_text())["providers"]["cert"]["account_key_file"]
    secrets.append(_body(Path(account).read_text()))
    said = " ".join(o.message for run in runs for steps in run.values() for o in steps.values())
    logs = " ".join(p.read_text() for p in (lab_fleet.lab.run_dir / "nodeproxy").glob("*/*.log"))
    for secret in secrets:
        assert secret and secret not in said and secret not in logs


def _body(pem: str) -> str:
    """The base64 body of a PEM block, joined (what a leak would show)."""
    return "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))[:64]


async def _live(loaded: LoadedFleet, hosts: list[str]) -> dict[str, list[str]]:
    async with SshPool(hosts=loaded.hosts) as pool:
        found = await proxy_routes(loaded, pool, hosts)
    out = {}
    for host, read in found.items():
        assert not isinstance(read, str), read
        out[host] = sorted(read.routes)
    return out


def test_a_stopped_acme_server_is_found_by_the_plans_question_not_at_apply(lab_fleet: LabFleet, tmp_path: Path) -> None:
    """Pebble stopped (SIGSTOP): it takes connections and answers nothing.  The cert kind's question before
    a plan lists certificates to issue reads the ACME directory (5 s), so they are refused at once: apply
    used to find it at the first issuance, 45 s later (the acme client's network timeout).  A running
    Pebble's directory answers: no refusal, and no account key is made by asking."""
    from mcfleet.fleet.models import AcmeProvider
    from mcfleet.providers.cert.acme import AcmeCert

    pebble = lab_fleet.pebble
    account = tmp_path / "account.key"
    acme = AcmeCert(AcmeProvider(kind="acme", directory=pebble.directory, account_key_file=str(account),
                                 ca_file=pebble.ca_file))  # fmt: skip
    assert asyncio.run(acme.key_refusal()) is None
    os.kill(pebble.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        refusal = asyncio.run(acme.key_refusal())
        took = time.monotonic() - started
    finally:
        os.kill(pebble.pid, signal.SIGCONT)
    assert refusal is not None and refusal.message.endswith("did not answer GET /dir within 5 s"), refusal
    assert refusal.hint and "start the ACME server" in refusal.hint
    assert took < 10, took
    assert not account.exists()


def test_a_record_sent_to_a_hung_dns_server_is_kept_as_unconfirmed(lab_fleet: LabFleet, tmp_path: Path) -> None:
    """Knot stopped (SIGSTOP) while an update is sent: the step fails with "did not answer", and the
    server carries the update out once it resumes.  The step names the record as unconfirmed, so the
    manifest lists it (value "?") and the next plan sends it again, or deletes it once its service is
    gone (was: not recorded at all, so a removed service left its record in the zone for good)."""
    from dataclasses import replace

    from mcfleet.fleet.desired import DesiredRecord

    root = lab_fleet.fleet_dir
    loaded = load_fleet(root)
    zone, knot = lab_fleet.knot.zone, lab_fleet.knot
    name = f"hung-{tmp_path.name[-6:].lower().replace('_', '-')}.{zone}"
    d = replace(desired_state(loaded)["node1"], records={name: DesiredRecord(name, "10.9.8.7")})
    create = Action(host="node1", phase="dns", kind="create", subject=f"dns {name}")
    backend = dns_backend(loaded.fleet) if loaded.fleet else None
    assert backend is not None
    os.kill(knot.pid, signal.SIGSTOP)
    try:
        out = asyncio.run(apply_dns(loaded, d, [create]))
    finally:
        os.kill(knot.pid, signal.SIGCONT)
    try:
        assert out.status == "failed" and "did not answer the update" in out.message, out.message
        assert out.message.count("within 10 s") == 1 and "timed out" not in out.message, out.message
        assert out.unsure == {name} and out.made == {name}, out
        for _ in range(50):  # the server takes the update it had queued once it runs again
            if asyncio.run(backend.answers([name]))[name] == ["10.9.8.7"]:
                break
            time.sleep(0.1)
        assert asyncio.run(backend.answers([name]))[name] == ["10.9.8.7"]
        # refused (outside the zone): answered, so not unconfirmed
        outside = replace(d, records={"x.elsewhere.test": DesiredRecord("x.elsewhere.test", "10.9.8.7")})
        refused = asyncio.run(apply_dns(loaded, outside, [Action(host="node1", phase="dns", kind="create",
                                                                 subject="dns x.elsewhere.test")]))  # fmt: skip
        assert refused.status == "failed" and refused.unsure == set() and refused.made == set()
    finally:
        asyncio.run(backend.delete_a(name))


def _a_route_that_changes_mode_moves_between_the_proxies(
    loaded: LoadedFleet, desired: dict[str, DesiredHost], host: str, key: str
) -> None:
    """Every proxy serves its host's routes; then l7 -> l4 -> l7 where those are two proxies (Caddy, HAProxy
    in front): each change leaves the route in the one proxy for its mode. Left in HAProxy's map, an l7 route
    would never reach Caddy."""
    from dataclasses import replace

    from mcfleet.providers.steps import open_route_backend

    live = asyncio.run(_live(loaded, ["node1", "node3"]))  # the hosts with a proxy
    assert {h: sorted(r) for h, r in live.items()} == {h: sorted(desired[h].routes) for h in live}
    d = desired[host]

    async def flip(mode: str, was: str) -> dict[str, set[str]]:
        route = replace(d.routes[key], mode=mode)
        action = Action(host=d.name, phase="route", kind="update", subject=f"route {key}", before={"mode": was})
        async with SshPool(hosts=loaded.hosts) as pool:
            node = await pool.connect(loaded.hosts[d.name])
            step = await apply_routes(loaded, node, replace(d, routes={**d.routes, key: route}), [action])
            assert step.status == "changed", step.message
            assert loaded.fleet is not None and loaded.fleet.providers.route and loaded.fleet.providers.route_l4
            providers = {"caddy": loaded.fleet.providers.route, "haproxy": loaded.fleet.providers.route_l4}
            return {n: set(await (await open_route_backend(p, node)).list_routes()) for n, p in providers.items()}

    passed = asyncio.run(flip("l4", "l7"))
    assert key in passed["haproxy"] and key not in passed["caddy"], passed
    ended = asyncio.run(flip("l7", "l4"))
    assert key in ended["caddy"] and key not in ended["haproxy"], ended
