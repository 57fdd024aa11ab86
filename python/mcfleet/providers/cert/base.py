"""The cert provider interface, and the key + CSR every issuance starts from.

One certificate per hostname (no wildcard): the key is EC P-256, made here with
`cryptography`, and never leaves the orchestrator except to the node that terminates
TLS for that hostname.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from mcfleet.providers.base import ProviderError

RENEW_BELOW_DAYS = 30  # a cert closer than this to its expiry is renewed; farther, it is kept


class CertBackend(Protocol):
    async def issue(self, hostname: str, csr_pem: bytes) -> str:
        """The PEM chain (leaf first) the provider issues for `csr_pem`."""
        ...

    async def key_refusal(self) -> ProviderError | None:
        """Why every issuance would fail before it reaches the CA (its credential's file cannot be read or is
        not a key), asked before a plan lists certificates to issue; None when it could be tried."""
        ...


@dataclass(frozen=True)
class KeyAndCsr:
    key_pem: str = ""  # the private key: never logged, never in a plan or event
    csr_pem: bytes = b""

    def __repr__(self) -> str:  # keep the key out of any accidental print or traceback
        return "KeyAndCsr(<private key>, <csr>)"


def new_key_and_csr(hostname: str) -> KeyAndCsr:
    if "*" in hostname:
        raise ValueError(f"{hostname}: wildcard certificates are not issued (one certificate per hostname)")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return KeyAndCsr(key_pem, csr.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class CertInfo:
    not_after: datetime
    sans: tuple[str, ...]

    def days_left(self, now: datetime | None = None) -> int:
        return (self.not_after - (now or datetime.now(UTC))).days

    def needs_renewal(self, now: datetime | None = None) -> bool:
        return self.days_left(now) < RENEW_BELOW_DAYS


def cert_info(pem: str | bytes) -> CertInfo:
    """Expiry and DNS SANs of the first certificate of a PEM chain (raises ValueError when unreadable)."""
    data = pem.encode() if isinstance(pem, str) else pem
    leaf = x509.load_pem_x509_certificates(data)[0]
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(leaf.not_valid_after_utc, names)
