"""The lab's peers are the real programs: Knot (RFC 2136 + TSIG), Pebble (ACME), Caddy, HAProxy."""

from __future__ import annotations

import asyncio
import http.server
import json
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest
from dnslib import DNSRecord

from mcfleet.lab.peers.caddy import CaddyInfo
from mcfleet.lab.peers.haproxy import HaproxyInfo
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.pebble import PebbleInfo

pytestmark = pytest.mark.lab

APP = "app1"


def _update(knot: KnotInfo, *, signed: bool) -> dns.update.UpdateMessage:
    if signed:
        keyring = dns.tsigkeyring.from_text({knot.key_name: knot.secret()})
        return dns.update.UpdateMessage(
            knot.zone, keyring=keyring, keyname=knot.key_name, keyalgorithm=dns.tsig.HMAC_SHA256
        )
    return dns.update.UpdateMessage(knot.zone)


def _query_a(knot: KnotInfo, name: str) -> list[str]:
    reply = DNSRecord.parse(DNSRecord.question(f"{name}.{knot.zone}", "A").send(knot.server, knot.port, timeout=5))
    return [str(rr.rdata) for rr in reply.rr]


def test_knot_answers_a_record_added_with_tsig_and_refuses_unsigned(knot: KnotInfo) -> None:
    update = _update(knot, signed=True)
    update.replace("web1", 60, "A", "10.77.0.99")
    assert dns.query.tcp(update, knot.server, port=knot.port, timeout=5).rcode() == dns.rcode.NOERROR
    assert _query_a(knot, "web1") == ["10.77.0.99"]

    unsigned = _update(knot, signed=False)
    unsigned.replace("evil", 60, "A", "10.66.6.6")
    answer = dns.query.tcp(unsigned, knot.server, port=knot.port, timeout=5)
    assert answer.rcode() in (dns.rcode.NOTAUTH, dns.rcode.REFUSED)
    assert _query_a(knot, "evil") == []


@dataclass(frozen=True)
class Issued:
    hostname: str
    fullchain: Path
    key: Path
    root: Path  # pebble's issuing root (trust anchor for clients of the issued cert)


def _issue(pebble: PebbleInfo, hostname: str, out: Path) -> Issued:
    import josepy as jose
    from acme import challenges, client, messages
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    account = jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    net = client.ClientNetwork(account, user_agent="mcfleet-lab-test", verify_ssl=pebble.ca_file)
    directory = client.ClientV2.get_directory(pebble.directory, net)
    acme = client.ClientV2(directory, net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    order = acme.new_order(csr.public_bytes(serialization.Encoding.PEM))
    for authz in order.authorizations:
        for chall in authz.body.challenges:
            if isinstance(chall.chall, challenges.HTTP01):
                acme.answer_challenge(chall, chall.chall.response(account))
    order = acme.poll_and_finalize(order)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fullchain.pem").write_text(order.fullchain_pem)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (out / "key.pem").write_bytes(key_pem)
    (out / "root.pem").write_text(pebble.root_pem())
    return Issued(hostname, out / "fullchain.pem", out / "key.pem", out / "root.pem")


@pytest.fixture(scope="module")
def issued(pebble: PebbleInfo, knot: KnotInfo, tmp_path_factory: pytest.TempPathFactory) -> Issued:
    return _issue(pebble, f"{APP}.{knot.zone}", tmp_path_factory.mktemp("acme"))


def test_pebble_issues_a_certificate_for_a_lab_name(issued: Issued) -> None:
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(issued.fullchain.read_bytes())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == [issued.hostname]
    assert "Pebble" in leaf.issuer.rfc4514_string()


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    """A plain HTTP backend on loopback that says who it is."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the lab backend\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _admin(caddy: CaddyInfo, method: str, path: str, body: object | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(caddy.admin_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


def _https_get(port: int, hostname: str, root: Path) -> str:
    """GET / over TLS to 127.0.0.1:<port> with SNI <hostname>, verifying against pebble's root."""
    import socket

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


@pytest.fixture(scope="module")
def caddy_route(caddy: CaddyInfo, issued: Issued, backend: int) -> Iterator[Issued]:
    _admin(
        caddy,
        "POST",
        "/config/apps/tls/certificates/load_files/...",
        [{"certificate": str(issued.fullchain), "key": str(issued.key), "tags": [APP]}],
    )
    route = {
        "@id": f"route-{APP}",
        "match": [{"host": [issued.hostname]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{backend}"}]}],
        "terminal": True,
    }
    _admin(caddy, "POST", f"/config/apps/http/servers/{caddy.server}/routes", route)
    yield issued
    _admin(caddy, "DELETE", f"/id/route-{APP}")


def test_caddy_route_added_via_api_serves_https_with_the_pebble_cert(caddy: CaddyInfo, caddy_route: Issued) -> None:
    reply = _https_get(caddy.https_port, caddy_route.hostname, caddy_route.root)
    assert reply.startswith("HTTP/1.1 200")
    assert "hello from the lab backend" in reply


def test_haproxy_passes_sni_through_to_a_backend(haproxy: HaproxyInfo, caddy: CaddyInfo, caddy_route: Issued) -> None:
    async def route() -> None:  # the map's key: <the port it listens on>/<SNI name>
        key = f"{haproxy.port}/{caddy_route.hostname}"
        await haproxy.admin(f"add map {haproxy.map_file} {key} 127.0.0.1:{caddy.https_port}")

    asyncio.run(route())
    # TLS is end to end: the certificate seen through HAProxy is the one Caddy serves.
    reply = _https_get(haproxy.port, caddy_route.hostname, caddy_route.root)
    assert reply.startswith("HTTP/1.1 200")
    assert "hello from the lab backend" in reply
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _https_get(haproxy.port, f"unknown.{caddy_route.hostname}", caddy_route.root)
