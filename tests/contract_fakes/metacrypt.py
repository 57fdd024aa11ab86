"""Contract fake of Metacrypt's issuance endpoint, written from the platform documents.

What the documents say, and this fake enforces: `POST /v1/engine/request`; the caller
authenticates with an MCIAS token (401 without, 403 wrong); policy lets the mcp agent
issue for `*.svc.mcp.<domain>` names and explicitly listed public hostnames, one
certificate per hostname, never a wildcard.  The request/answer body (`{"mount",
"operation": "issue", "data": {"csr", "common_name"}}` -> `{"certificate", "chain"}`)
is reconstructed: the documents do not give it.  Certificates are signed by a CA made
here; `validity_days` lets a test hand out short-lived ones.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class MetacryptState:
    token: str
    allowed_suffixes: tuple[str, ...]
    allowed_names: tuple[str, ...] = ()
    validity_days: int = 90
    issued: list[str] = field(default_factory=list)
    ca_key: Any = None
    ca_cert: Any = None

    def ca_pem(self) -> str:
        return str(self.ca_cert.public_bytes(serialization.Encoding.PEM).decode())


def _make_ca(state: MetacryptState) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metacrypt contract-fake CA")])
    now = dt.datetime.now(dt.UTC)
    state.ca_key = key
    state.ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _sign(state: MetacryptState, csr: x509.CertificateSigningRequest, hostname: str) -> str:
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(state.ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=state.validity_days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(state.ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _handler(state: MetacryptState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            if self.path != "/v1/engine/request":
                self._send(404, {"error": "no such endpoint"})
                return
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                self._send(401, {"error": "missing MCIAS token"})
                return
            if auth[len("Bearer ") :] != state.token:
                self._send(403, {"error": "token rejected by MCIAS"})
                return
            data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            inner = data.get("data") or {}
            hostname = str(inner.get("common_name", ""))
            if data.get("operation") != "issue" or not inner.get("csr"):
                self._send(400, {"error": "operation must be issue, with a csr"})
                return
            if "*" in hostname:
                self._send(403, {"error": "wildcard certificates are not issued"})
                return
            allowed = hostname in state.allowed_names or any(hostname.endswith(s) for s in state.allowed_suffixes)
            if not allowed:
                self._send(403, {"error": f"policy does not allow issuing for {hostname}"})
                return
            csr = x509.load_pem_x509_csr(str(inner["csr"]).encode())
            names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            if list(names.get_values_for_type(x509.DNSName)) != [hostname]:
                self._send(400, {"error": "the CSR must name exactly the requested hostname"})
                return
            state.issued.append(hostname)
            self._send(200, {"certificate": _sign(state, csr, hostname), "chain": state.ca_pem()})

    return Handler


@contextmanager
def run_metacrypt(
    token: str, allowed_suffixes: tuple[str, ...], allowed_names: tuple[str, ...] = ()
) -> Iterator[tuple[str, MetacryptState]]:
    state = MetacryptState(token, allowed_suffixes, allowed_names)
    _make_ca(state)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
