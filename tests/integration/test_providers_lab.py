"""The standard backends against the real lab peers: Knot (RFC 2136 + TSIG), Pebble (ACME),
Caddy (l7 with the issued cert) and HAProxy (l4 SNI passthrough)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns import update as dns_update

from mcfleet.fleet.models import AcmeProvider, CaddyProvider, HaproxyProvider, Rfc2136Provider
from mcfleet.lab.netutil import free_port
from mcfleet.lab.peers.caddy import CaddyInfo
from mcfleet.lab.peers.haproxy import HaproxyInfo
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.observe.dns import ZoneAnswers
from mcfleet.providers.base import ProviderError
from mcfleet.providers.cert.acme import AcmeCert
from mcfleet.providers.cert.base import cert_info, new_key_and_csr
from mcfleet.providers.dns.rfc2136 import Rfc2136Dns
from mcfleet.providers.route.base import ProxyRoute
from mcfleet.providers.route.caddy import CaddyRoutes
from mcfleet.providers.route.haproxy import HaproxyRoutes
from tests.certs import self_signed

pytestmark = pytest.mark.lab


def _rfc2136(knot: KnotInfo, key_file: str | None = None) -> Rfc2136Dns:
    provider = Rfc2136Provider(
        kind="rfc2136", server=knot.server, port=knot.port, key_name=knot.key_name, key_file=key_file or knot.key_file
    )
    return Rfc2136Dns(provider, knot.zone)


def test_rfc2136_writes_replaces_and_deletes_a_records_in_knot(knot: KnotInfo) -> None:
    dns = _rfc2136(knot)
    name = f"provweb.{knot.zone}"
    started = time.monotonic()
    asyncio.run(dns.set_a(name, "10.77.1.5"))
    took = time.monotonic() - started
    assert asyncio.run(dns.answers([name])) == {name: ["10.77.1.5"]}
    asyncio.run(dns.set_a(name, "10.77.1.6"))
    assert asyncio.run(dns.answers([name])) == {name: ["10.77.1.6"]}  # replaced, not added
    assert asyncio.run(dns.answers_full([name])).ttls == {name: dns.ttl}
    slower = _rfc2136(knot)
    slower.ttl = 600
    asyncio.run(slower.set_a(name, "10.77.1.6"))  # the same address with another TTL: the server takes the TTL
    assert asyncio.run(dns.answers_full([name])) == ZoneAnswers({name: ["10.77.1.6"]}, {name: 600})
    # AAAA records another hand put at the name: read with the A, and removed value by value
    update = dns_update.UpdateMessage(knot.zone)
    update.add(name.removesuffix("." + knot.zone), 60, "AAAA", "2001:db8::6")
    update.add(name.removesuffix("." + knot.zone), 60, "AAAA", "2001:db8::7")
    dns._send(update, "adding AAAA records")
    assert asyncio.run(dns.answers_full([name])).v6 == {name: ["2001:db8::6", "2001:db8::7"]}
    asyncio.run(dns.delete_aaaa(name, ["2001:db8::6"]))
    assert asyncio.run(dns.answers_full([name])).v6 == {name: ["2001:db8::7"]}  # the other one stays
    asyncio.run(dns.delete_aaaa(name, ["2001:db8::7"]))
    asyncio.run(dns.delete_a(name))
    assert asyncio.run(dns.answers_full([name])) == ZoneAnswers({name: []})
    print(f"rfc2136 update + verify: {took * 1000:.0f} ms")
    with pytest.raises(ProviderError, match="outside the zone"):
        asyncio.run(dns.set_a("evil.example.org", "10.6.6.6"))


def test_rfc2136_with_a_wrong_key_fails_without_printing_it(knot: KnotInfo, tmp_path: Path) -> None:
    poison = "UE9JU09OLTdmM2E5Yy1zZWNyZXQtbmV2ZXItcHJpbnRlZA=="
    bad = tmp_path / "tsig.secret"
    bad.write_text(poison + "\n")
    bad.chmod(0o600)
    with pytest.raises(ProviderError) as err:
        asyncio.run(_rfc2136(knot, str(bad)).set_a(f"provbad.{knot.zone}", "10.77.1.9"))
    text = err.value.message + (err.value.hint or "")
    assert "rejected the TSIG key" in text and poison not in text
    assert asyncio.run(_rfc2136(knot).answers([f"provbad.{knot.zone}"])) == {f"provbad.{knot.zone}": []}


def test_rfc2136_key_check_asks_the_server_with_a_signed_query(knot: KnotInfo, tmp_path: Path) -> None:
    """What the plan asks before it lists record changes: the server's verdict on the key."""
    assert asyncio.run(_rfc2136(knot).key_refusal()) is None
    bad = tmp_path / "tsig.secret"
    bad.write_text("UE9JU09OLTdmM2E5Yy1zZWNyZXQtbmV2ZXItcHJpbnRlZA==\n")
    bad.chmod(0o600)
    refused = asyncio.run(_rfc2136(knot, str(bad)).key_refusal())
    assert refused is not None and refused.message.endswith("the secret does not match (BADSIG)")
    missing = asyncio.run(_rfc2136(knot, str(tmp_path / "nope")).key_refusal())
    assert missing is not None and missing.message.startswith(f"cannot read the TSIG key file {tmp_path / 'nope'}")
    # a server that does not answer is not the key's fault: the plan's read of the records says so
    silent = Rfc2136Provider(kind="rfc2136", server="127.0.0.1", port=9, key_name=knot.key_name, key_file=knot.key_file)
    assert asyncio.run(Rfc2136Dns(silent, knot.zone).key_refusal()) is None


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"provider test page\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _get(port: int, hostname: str, root: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_acme_hosts_issuing_at_once_register_the_account_once(
    pebble: PebbleInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hosts of one apply issue in parallel threads with one new account key. Pebble fails all but one of
    simultaneous first registrations of a key ("Error saving account"), so the run registers it once."""
    from acme import client

    registered: list[str] = []
    real_new_account = client.ClientV2.new_account

    def counting_new_account(self: client.ClientV2, new_account: object) -> object:
        registered.append(threading.current_thread().name)
        return real_new_account(self, new_account)  # type: ignore[arg-type]

    monkeypatch.setattr(client.ClientV2, "new_account", counting_new_account)
    acme = AcmeCert(AcmeProvider(kind="acme", directory=pebble.directory, account_key_file=str(tmp_path / "a.key"),
                                 ca_file=pebble.ca_file))  # fmt: skip
    names = [f"par{i}.svc.mcp.example.test" for i in range(4)]

    async def all_at_once() -> list[str]:
        return await asyncio.gather(*(acme.issue(n, new_key_and_csr(n).csr_pem) for n in names))

    chains = asyncio.run(all_at_once())
    assert [cert_info(c).sans for c in chains] == [(n,) for n in names]
    assert len(registered) == 1, registered
    asyncio.run(acme.issue(names[0], new_key_and_csr(names[0]).csr_pem))
    assert len(registered) == 1  # later issuances in the run reuse the account


def test_acme_cert_into_caddy_l7_and_haproxy_l4(
    pebble: PebbleInfo, caddy: CaddyInfo, haproxy: HaproxyInfo, backend: int, tmp_path: Path
) -> None:
    hostname = f"provweb.{'svc.mcp.example.test'}"
    account = tmp_path / "acme" / "account.key"
    acme = AcmeCert(AcmeProvider(kind="acme", directory=pebble.directory, account_key_file=str(account),
                                 ca_file=pebble.ca_file))  # fmt: skip
    pair = new_key_and_csr(hostname)
    started = time.monotonic()
    chain = asyncio.run(acme.issue(hostname, pair.csr_pem))
    issued_s = time.monotonic() - started
    assert account.stat().st_mode & 0o777 == 0o600
    info = cert_info(chain)
    assert info.sans == (hostname,) and not info.needs_renewal()
    asyncio.run(acme.issue(hostname, new_key_and_csr(hostname).csr_pem))  # the same account key again works
    cert, key = tmp_path / "provweb.pem", tmp_path / "provweb.key"
    cert.write_text(chain)
    key.write_text(pair.key_pem)
    key.chmod(0o600)
    root = tmp_path / "root.pem"
    root.write_text(pebble.root_pem())

    caddy_routes = CaddyRoutes(CaddyProvider(kind="caddy", admin_url=caddy.admin_url, server=caddy.server))
    route = ProxyRoute(443, hostname, f"127.0.0.1:{backend}", "l7", str(cert), str(key))
    started = time.monotonic()
    asyncio.run(caddy_routes.add_route(route))
    route_s = time.monotonic() - started
    asyncio.run(caddy_routes.add_route(route))  # upsert: still one
    assert asyncio.run(caddy_routes.list_routes())[route.key_id] == route
    assert "provider test page" in _get(caddy.https_port, hostname, root)
    # this Caddy has one server ("edge": listener 443): a route on 8443 is refused, never put on 443
    with pytest.raises(ProviderError, match=r"no server for listener 8443.*'edge-8443'"):
        asyncio.run(caddy_routes.add_route(ProxyRoute(8443, hostname, route.backend, "l7", str(cert), str(key))))
    assert set(asyncio.run(caddy_routes.list_routes())) == {route.key_id}
    # ... which the plan asks first (and refuses such a route): the same words, none for 443
    [(listener, (why, hint))] = asyncio.run(caddy_routes.missing_servers([443, 8443])).items()
    assert listener == 8443 and "no server for listener 8443" in why and hint and "'edge-8443'" in hint

    _haproxy_passes_tls_through_and_saves_its_map(haproxy, caddy, hostname, root)
    asyncio.run(caddy_routes.remove_route(443, hostname))
    assert route.key_id not in asyncio.run(caddy_routes.list_routes())
    print(f"acme issuance {issued_s:.2f} s, caddy route+cert {route_s * 1000:.0f} ms")


def _haproxy_passes_tls_through_and_saves_its_map(
    haproxy: HaproxyInfo, caddy: CaddyInfo, hostname: str, root: Path
) -> None:
    """An l4 route to Caddy's TLS port; every call writes the map file (through `save`) from the live map."""
    l4 = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket=haproxy.admin_socket, map_file=haproxy.map_file))
    through = ProxyRoute(haproxy.port, hostname, f"127.0.0.1:{caddy.https_port}", "l4")  # its one listener
    saved: list[str] = []

    async def save(text: str) -> None:
        saved.append(text)

    l4.save = save
    # the lab's HAProxy is shared by the session's tests: other routes may be in its map, and in its file
    line = f"{haproxy.port}/{hostname} 127.0.0.1:{caddy.https_port}\n"
    asyncio.run(l4.add_route(through))
    assert len(saved) == 1 and line in saved[0].splitlines(keepends=True)  # the map file's new content
    asyncio.run(l4.add_route(through))  # unchanged: no runtime call, the file written again from the live map
    assert asyncio.run(l4.list_routes())[through.key_id] == through
    assert len(saved) == 2 and line in saved[1].splitlines(keepends=True)
    assert "provider test page" in _get(haproxy.port, hostname, root)  # TLS end to end through the SNI map

    asyncio.run(l4.remove_route(haproxy.port, hostname))
    assert through.key_id not in asyncio.run(l4.list_routes())
    assert line not in saved[-1].splitlines(keepends=True)  # gone from the map file
    asyncio.run(l4.remove_route(haproxy.port, hostname))  # not live: the file is written all the same
    assert len(saved) == 4 and line not in saved[-1].splitlines(keepends=True)
    with pytest.raises(OSError):
        _get(haproxy.port, hostname, root)  # unknown SNI: rejected


SERVERS = "/config/apps/http/servers"


@contextlib.contextmanager
def own_server(
    caddy: CaddyInfo, server: str, hostname: str, backend: int, tmp_path: Path
) -> Iterator[tuple[CaddyRoutes, ProxyRoute, int, Path]]:
    """A server of the test's own in the lab's Caddy (other tests use the "edge" server), without a `routes`
    list yet, and an l7 route for `hostname` on it (not added): (admin, route, the server's port, its
    certificate).  The route and the server are removed afterwards."""
    port = free_port()
    cert, key = self_signed(hostname, tmp_path)
    admin = CaddyRoutes(CaddyProvider(kind="caddy", admin_url=caddy.admin_url, server=server))
    admin._call("POST", f"{SERVERS}/{server}", {"listen": [f"127.0.0.1:{port}"], "automatic_https": {"disable": True},
                                                 "tls_connection_policies": [{}], "protocols": ["h1"]})  # fmt: skip
    try:
        yield admin, ProxyRoute(443, hostname, f"127.0.0.1:{backend}", "l7", str(cert), str(key)), port, cert
    finally:
        asyncio.run(admin.remove_route(443, hostname))
        admin._call("DELETE", f"{SERVERS}/{server}")


def test_caddy_puts_mcfleet_routes_before_an_operator_catch_all(caddy: CaddyInfo, backend: int, tmp_path: Path) -> None:
    """Caddy tries a server's routes in order: a catch-all of the operator's in front would take every request.

    On a server of its own in the lab's Caddy (other tests use the "edge" server): first without a
    `routes` list at all (a plain POST of one route would set it to an object, which Caddy refuses),
    then with a catch-all put in front by hand (an older mcfleet appended its routes behind such a
    route): the route reads as shadowed, and adding it again moves it first."""
    hostname, server = "shadow.svc.mcp.example.test", "shadowtest"
    with own_server(caddy, server, hostname, backend, tmp_path) as (admin, route, port, cert):
        asyncio.run(admin.add_route(route))  # no routes list yet
        assert asyncio.run(admin.list_routes())[route.key_id] == route
        assert "provider test page" in _get(port, hostname, cert)

        catch_all = {"handle": [{"handler": "static_response", "body": "operator catch-all"}]}
        admin._call("PUT", f"{SERVERS}/{server}/routes/0", catch_all)
        assert "operator catch-all" in _get(port, hostname, cert)
        seen = asyncio.run(admin.list_routes())[route.key_id]
        assert seen.shadowed_by == f"route #0 of Caddy's server {server} (it matches every request)"

        asyncio.run(admin.add_route(route))  # what apply does for the plan's drift
        assert asyncio.run(admin.list_routes())[route.key_id].shadowed_by == ""
        assert "provider test page" in _get(port, hostname, cert)
        routes = admin._call("GET", f"{SERVERS}/{server}/routes")
        assert [r.get("@id") for r in routes] == [f"mcfleet-443-{hostname}", None]  # the catch-all kept, behind


def test_a_caddy_read_is_one_request_whatever_its_servers(
    caddy: CaddyInfo, backend: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a login that is not root, each connection to Caddy's admin socket is a relay process started
    on the node with sudo/doas (~30 ms on a lab node): a read asks for the apps once and finds every server's
    routes and the certificate entries in that answer (was: 2 requests and one per server)."""
    server = "onereadtest"
    with own_server(caddy, server, "oneread.svc.mcp.example.test", backend, tmp_path) as (admin, route, _, _):
        asyncio.run(admin.add_route(route))
        asked: list[tuple[str, str]] = []
        call = admin._call

        def counted(method: str, path: str, body: object = None) -> object:
            asked.append((method, path))
            return call(method, path, body)

        monkeypatch.setattr(admin, "_call", counted)
        read = asyncio.run(admin.list_routes())
        assert read[route.key_id] == route  # the backend, and the cert and key from the tls app's entries
        assert server in (admin.servers_read or []) and len(admin.servers_read or []) >= 2  # the lab's edge too
        assert asyncio.run(admin.missing_servers([443, 8443])) == {
            8443: (f"Caddy has no server for listener 8443 (looked for '{server}-8443'; it has "
                   f"{', '.join(admin.servers_read or [])})",
                   f"add a server '{server}-8443' listening on port 8443 to Caddy's config, or use another listener")
        }  # fmt: skip
        assert asked == [("GET", "/config/apps")]  # missing_servers used the list the read got
        monkeypatch.undo()


def test_a_haproxy_map_longer_than_one_buffer_is_read_whole(haproxy: HaproxyInfo) -> None:
    """HAProxy writes `show map` in chunks of its buffer (16 kB): 600 routes (~30 kB) are all read (was: the
    first chunk only, so the plan saw routes missing, and a change wrote the map file back cut short)."""
    names = [f"bulk{i:03}.svc.mcp.example.test" for i in range(600)]
    keys = [f"1/{n}" for n in names]  # listener 1: no connection ever arrives there; the map is shared

    def batch(verb: str) -> None:
        for start in range(0, len(keys), 50):
            line = ";".join(f"{verb} map {haproxy.map_file} {k}" + (" 10.77.9.9:8443" if verb == "add" else "")
                            for k in keys[start:start + 50])  # fmt: skip
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(haproxy.admin_socket)
                s.sendall(line.encode() + b"\n")
                while s.recv(65536):
                    pass

    l4 = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket=haproxy.admin_socket, map_file=haproxy.map_file))
    batch("add")
    try:
        live = asyncio.run(l4.list_routes())
        assert set(keys) <= {r.key_id for r in live.values()}
    finally:
        batch("del")
    assert not {r.hostname for r in asyncio.run(l4.list_routes()).values()} & set(names)


def test_knot_answers_that_are_not_the_zones_records_are_not_read_as_none(knot: KnotInfo) -> None:
    """Knot's REFUSED for a name in no zone it serves (fleet.json `zone` or providers.dns.server wrong) is a
    read that failed, not a name without records (was: `[]`, so the plan listed every record to create and
    apply then failed on NOTAUTH).  An answer too large for UDP (TC) is asked again over TCP: all the records."""
    from mcfleet.observe.dns import query_names

    read = asyncio.run(query_names(["web.example.org"], knot.server, knot.port))
    assert read.values == {}
    assert read.error == (
        f"{knot.server}:{knot.port} answered REFUSED for web.example.org: it serves no zone holding the name: "
        "providers.dns.server/port must name the zone's primary server, and fleet.json `zone` a zone it serves"
    )
    with pytest.raises(ProviderError, match=r"answered REFUSED for web\.example\.org"):
        asyncio.run(_rfc2136(knot).answers_full(["web.example.org"]))

    dns = _rfc2136(knot)
    name = f"provmany.{knot.zone}"
    many = [f"10.77.2.{i}" for i in range(1, 41)]  # 40 A records: ~700 bytes, over the 512 of a plain UDP reply
    update = dns_update.UpdateMessage(knot.zone)
    for address in many:
        update.add(name.removesuffix("." + knot.zone), 60, "A", address)
    dns._send(update, "adding 40 A records")
    try:
        assert asyncio.run(query_names([name], knot.server, knot.port)).values == {name: sorted(many)}
    finally:
        asyncio.run(dns.delete_a(name))
