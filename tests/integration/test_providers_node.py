"""Certs and routes on the node that runs the proxy, reached through its SSH connection:
Caddy (l7, :443) and HAProxy (l4 SNI, :8443) run inside lab node3; Pebble issues the cert,
which lands in node3's /srv/mc-proxy/certs (key 0600, owned by the proxy's user); curl
from outside reaches both services through node3's address."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.models import AcmeProvider, CaddyProvider, HaproxyProvider
from mcfleet.lab.peers.nodeproxy import NodeProxies, start_node_proxies
from mcfleet.lab.proc import spawn, start_time, stop, which
from mcfleet.providers.base import ProviderError
from mcfleet.providers.cert.acme import AcmeCert
from mcfleet.providers.cert.install import issue_and_install, key_path, remove_cert
from mcfleet.providers.route.base import ProxyRoute
from mcfleet.providers.route.caddy import CaddyRoutes
from mcfleet.providers.route.haproxy import HaproxyRoutes
from mcfleet.transport.ssh import SshPool
from tests.certs import self_signed
from tests.fixtures_lab import LabFleet

pytestmark = pytest.mark.lab

ZONE = "svc.mcp.example.test"
WEB = f"nodeweb.{ZONE}"
SNI = f"nodesni.{ZONE}"
PAGE = "served by node1 through the node3 proxy"


@pytest.fixture(scope="module")
def proxies(lab_fleet: LabFleet) -> NodeProxies:
    lab = lab_fleet.lab
    return asyncio.run(start_node_proxies(lab.state, lab.run_dir, lab.node("node3")))


@pytest.fixture(scope="module")
def backends(lab_fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """An HTTP page on node1:18081 and a TLS server (its own cert) on node2:18443."""
    d = tmp_path_factory.mktemp("nodebackends")
    (d / "www").mkdir()
    (d / "www" / "index.html").write_text(PAGE + "\n")
    crt, key = self_signed(SNI, d, stem="sni")
    n1, n2 = lab_fleet.node("node1"), lab_fleet.node("node2")
    web = spawn([*n1.nsenter(), "/usr/bin/python3", "-m", "http.server", "18081", "--bind", n1.address,
                 "--directory", str(d / "www")], log=d / "web.log")  # fmt: skip
    tls = spawn([*n2.nsenter(), which("openssl"), "s_server", "-accept", f"{n2.address}:18443", "-cert", str(crt),
                 "-key", str(key), "-www", "-quiet"], log=d / "tls.log")  # fmt: skip
    started = {pid: start_time(pid) for pid in (web, tls)}
    time.sleep(1.0)
    yield f"{n1.address}:18081", f"{n2.address}:18443", crt
    for pid, when in started.items():
        stop(pid, when)


def _curl(host: str, port: int, address: str, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--resolve", f"{host}:{port}:{address}", "--cacert", str(ca),
         f"https://{host}:{port}/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_cert_and_routes_on_the_proxy_node(
    lab_fleet: LabFleet, proxies: NodeProxies, backends: tuple[str, str, Path], tmp_path: Path
) -> None:
    web_backend, tls_backend, tls_cert = backends
    pebble = lab_fleet.pebble
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    loaded = load_fleet(lab_fleet.fleet_dir)
    cert_path = "/srv/mc-proxy/certs/nodeweb.pem"

    async def scenario() -> float:
        async with SshPool(hosts=loaded.hosts) as pool:
            node = await pool.connect(loaded.hosts["node3"])
            account = str(tmp_path / "account.key")
            acme = AcmeCert(AcmeProvider(kind="acme", directory=pebble.directory, account_key_file=account,
                                         ca_file=pebble.ca_file))  # fmt: skip
            installed = await issue_and_install(node, acme, WEB, cert_path, "root")
            caddy = CaddyRoutes(CaddyProvider(kind="caddy", admin_url=f"unix:{proxies.caddy_admin}"),
                                local_socket=await node.forward_unix(proxies.caddy_admin))  # fmt: skip
            await caddy.add_route(ProxyRoute(443, WEB, web_backend, "l7", cert_path, key_path(cert_path)))
            l4 = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket=proxies.haproxy_admin,
                                               map_file=proxies.map_file),
                               local_socket=await node.forward_unix(proxies.haproxy_admin))  # fmt: skip
            await l4.add_route(ProxyRoute(8443, SNI, tls_backend, "l4"))
            assert set(await caddy.list_routes()) == {f"443/{WEB}"}
            assert set(await l4.list_routes()) == {f"8443/{SNI}"}
            return installed.seconds

    seconds = asyncio.run(scenario())
    print(f"issue + install on node3: {seconds:.2f} s")
    stat = lab_fleet.exec_in("node3", ["stat", "-c", "%a %U", cert_path, key_path(cert_path)]).stdout.split("\n")
    assert stat[0] == "644 root" and stat[1] == "600 root"

    page = _curl(WEB, 443, proxies.address, root)
    assert page.returncode == 0 and PAGE in page.stdout, page.stderr
    sni = _curl(SNI, 8443, proxies.address, tls_cert)  # the service's own TLS, end to end
    assert sni.returncode == 0 and "s_server" in sni.stdout, sni.stderr

    async def teardown() -> None:
        async with SshPool(hosts=loaded.hosts) as pool:
            node = await pool.connect(loaded.hosts["node3"])
            caddy = CaddyRoutes(CaddyProvider(kind="caddy", admin_url=f"unix:{proxies.caddy_admin}"),
                                local_socket=await node.forward_unix(proxies.caddy_admin))  # fmt: skip
            await caddy.remove_route(443, WEB)
            await remove_cert(node, cert_path)
            local = await node.forward_unix(proxies.haproxy_admin)
            l4 = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket=proxies.haproxy_admin,
                                               map_file=proxies.map_file), local_socket=local)  # fmt: skip
            await l4.remove_route(8443, SNI)
            assert await l4.list_routes() == {}  # the node's proxies are shared with other tests

    asyncio.run(teardown())
    assert _curl(WEB, 443, proxies.address, root).returncode != 0 or PAGE not in _curl(WEB, 443, proxies.address,
                                                                                      root).stdout  # fmt: skip


def test_a_proxy_socket_the_node_does_not_have_is_named(lab_fleet: LabFleet, proxies: NodeProxies) -> None:
    """sshd answers a forward to a path where nothing listens with "open failed" alone, which the proxy's
    client sees as a connection closed without an answer; the read then asks the node whether the socket is
    there and says so (was: "Remote end closed connection without response" for Caddy, and for HAProxy an
    empty map: every l4 route "missing").  A socket that is there keeps the read as it is."""
    import dataclasses

    from mcfleet.fleet.load import LoadedFleet
    from mcfleet.providers.steps import read_proxies

    loaded = load_fleet(lab_fleet.fleet_dir)
    fleet = loaded.fleet
    assert fleet is not None

    def fleet_with(caddy: str, haproxy: str) -> LoadedFleet:
        providers = fleet.providers.model_copy(update={
            "route": CaddyProvider(kind="caddy", admin_url=f"unix:{caddy}"),
            "route_l4": HaproxyProvider(kind="haproxy", admin_socket=haproxy, map_file=proxies.map_file)})  # fmt: skip
        return dataclasses.replace(loaded, fleet=fleet.model_copy(update={"providers": providers}))

    async def read(caddy: str, haproxy: str) -> str:
        async with SshPool(hosts=loaded.hosts) as pool:
            node = await pool.connect(loaded.hosts["node3"])
            try:
                await read_proxies(fleet_with(caddy, haproxy), node)
            except ProviderError as exc:
                return f"{exc.message} | {exc.hint}"
            return "read"

    assert asyncio.run(read(proxies.caddy_admin, proxies.haproxy_admin)) == "read"
    assert asyncio.run(read("/srv/mc-proxy/nope.sock", proxies.haproxy_admin)) == (
        "Caddy is not listening on node3: there is no socket at /srv/mc-proxy/nope.sock | start Caddy on node3, "
        "or fix providers.route.admin_url in fleet.json"
    )
    assert asyncio.run(read(proxies.caddy_admin, "/srv/mc-proxy/nope.sock")) == (
        "HAProxy is not listening on node3: there is no socket at /srv/mc-proxy/nope.sock | start HAProxy on "
        "node3, or fix providers.route_l4.admin_socket in fleet.json"
    )
    # a link to the live socket: not followed (root would reach whatever socket it pointed to)
    link = "/srv/mc-proxy/link.sock"
    lab_fleet.exec_in("node3", ["ln", "-sfn", proxies.haproxy_admin, link])
    try:
        assert asyncio.run(read(proxies.caddy_admin, link)) == (
            f"HAProxy on node3 was not reached: {link} is a link, and root does not follow a link to a socket "
            "(another account may have put it there) | set providers.route_l4.admin_socket in fleet.json to the "
            "socket the link points to"
        )
    finally:
        lab_fleet.exec_in("node3", ["rm", "-f", link])
    # a proxy that stopped leaves its socket file behind: there, and nobody listens
    stale = "/srv/mc-proxy/stale.sock"
    bind = f"import socket; socket.socket(socket.AF_UNIX).bind({stale!r})"
    lab_fleet.exec_in("node3", ["sh", "-c", f"rm -f {stale} && python3 -c {shlex.quote(bind)}"])
    try:
        assert asyncio.run(read(proxies.caddy_admin, stale)) == (
            f"HAProxy is not listening on node3: {stale} is there, but no process listens on it (left behind by a "
            "HAProxy that stopped) | start HAProxy on node3, or fix providers.route_l4.admin_socket in fleet.json"
        )
    finally:
        lab_fleet.exec_in("node3", ["rm", "-f", stale])
