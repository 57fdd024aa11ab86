"""An ACME server that cannot be reached is named with the system's reason, not requests' wrappers
("HTTPSConnectionPool(host=…): Max retries exceeded with url: /dir (Caused by NewConnectionError(…))")."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcfleet.fleet.models import AcmeProvider
from mcfleet.providers.base import ProviderError
from mcfleet.providers.cert.acme import AcmeCert


def _issue(tmp_path: Path, directory: str) -> str:
    provider = AcmeProvider(kind="acme", directory=directory, account_key_file=str(tmp_path / "account.pem"))
    with pytest.raises(ProviderError) as err:
        AcmeCert(provider)._issue("web.example.test", b"")
    return err.value.message


def test_a_closed_port_says_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert _issue(tmp_path, f"https://127.0.0.1:{port}/dir") == (
        f"the ACME server https://127.0.0.1:{port}/dir is unreachable: Connection refused"
    )


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tmp_path / "c.pem", tmp_path / "k.pem"


def test_a_certificate_the_ca_file_does_not_vouch_for_says_so(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = server.accept()
            with conn, context.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass  # the client hangs up on the certificate

    threading.Thread(target=serve, daemon=True).start()
    try:
        message = _issue(tmp_path, f"https://127.0.0.1:{port}/dir")
    finally:
        server.close()
    assert message.startswith(
        f"the ACME server https://127.0.0.1:{port}/dir is unreachable: [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert "HTTPSConnectionPool" not in message and "Max retries" not in message
