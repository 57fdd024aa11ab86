"""Certificate facts from PEM text (pure: parsing only, with `cryptography`)."""

from __future__ import annotations

import hashlib

from mcfleet.observe.facts import CertFacts


def key_path(cert_path: str) -> str:
    """The private key beside a certificate: `<stem>.key` for `<stem>.pem`."""
    return cert_path[: -len(".pem")] + ".key" if cert_path.endswith(".pem") else cert_path + ".key"


def parse_cert(path: str, pem: str) -> CertFacts:
    """The first certificate in a PEM file (the leaf of a fullchain): subject CN, SANs, expiry."""
    # Imported here: ~10 ms that a plan pays only when a host has certificates to read.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from cryptography.x509.oid import NameOID

    start = pem.find("-----BEGIN CERTIFICATE-----")
    if start < 0:
        return CertFacts(path=path, error="no PEM certificate in the file")
    try:
        cert = x509.load_pem_x509_certificate(pem[start:].encode())
    except Exception as exc:  # cryptography raises several types for malformed input; a bad file is a fact
        return CertFacts(path=path, error=f"unreadable certificate: {exc}")
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(cns[0].value) if cns else None
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [str(v) for v in ext.value.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in ext.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    public = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return CertFacts(path=path, subject=subject, sans=sans, not_after=cert.not_valid_after_utc.isoformat(),
                     sha256=cert.fingerprint(hashes.SHA256()).hex(),
                     pub_sha256=hashlib.sha256(public).hexdigest())  # fmt: skip


def fingerprint(pem: str) -> str:
    """sha256 of the first certificate in PEM text; "" when there is none (or it does not parse)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()
    except ValueError:
        return ""
