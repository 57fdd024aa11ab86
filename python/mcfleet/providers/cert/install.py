"""Issue a certificate for one hostname and install it on the node that terminates TLS.

The key and CSR are made here, the provider signs the CSR, and the chain and key go to
the node in one SSH command through its stdin (never its argument list): the key is
written under `umask 077`, chmod 0600 and chowned to the proxy's user before it is
renamed over the old one; the chain lands beside it as `<stem>.pem` (0644).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from mcfleet.apply.nodeio import helper, temp_name
from mcfleet.observe.certs import key_path
from mcfleet.providers.base import ProviderError
from mcfleet.providers.cert.base import CertBackend, cert_info, new_key_and_csr
from mcfleet.transport.base import Node

SEPARATOR = "--mcfleet-chain-follows--"


def install_script(cert_path: str, owner: str) -> str:
    """Shell: stdin = key PEM, SEPARATOR line, chain PEM -> `<cert_path>` + its `.key`, atomically."""
    key = key_path(cert_path)
    qc, qk, qo = shlex.quote(cert_path), shlex.quote(key), shlex.quote(owner)
    tc, tk = shlex.quote(temp_name(cert_path)), shlex.quote(temp_name(key))
    directory = shlex.quote(cert_path.rpartition("/")[0] or "/")
    return (
        f"umask 077 && mkdir -p {directory} && "
        f"awk -v k={tk} -v c={tc} '$0 == \"{SEPARATOR}\" {{ f = 1; next }} {{ print > (f ? c : k) }}' && "
        f"test -s {tk} && test -s {tc} && chmod 0600 {tk} && chmod 0644 {tc} && chown {qo} {tk} {tc} && "
        f"mv -f {tk} {qk} && mv -f {tc} {qc} || {{ rm -f {tk} {tc}; exit 1; }}"
    )


@dataclass(frozen=True)
class Installed:
    hostname: str
    path: str
    not_after: str
    seconds: float  # issuance + install


async def issue_and_install(node: Node, backend: CertBackend, hostname: str, cert_path: str, owner: str) -> Installed:
    started = time.monotonic()
    pair = new_key_and_csr(hostname)
    chain = await backend.issue(hostname, pair.csr_pem)
    try:
        info = cert_info(chain)
    except ValueError:
        raise ProviderError(
            f"the cert provider answered something that is not a PEM certificate for {hostname}",
            hint="check the cert provider's log",
        ) from None
    if hostname not in info.sans:
        raise ProviderError(
            f"the certificate issued for {hostname} covers {', '.join(info.sans) or 'no DNS name'}",
            hint="check the cert provider's policy for this hostname",
        )
    payload = pair.key_pem.rstrip("\n") + f"\n{SEPARATOR}\n" + chain
    res = await node.run(install_script(cert_path, owner), input=payload)
    if not res.ok:
        raise ProviderError(
            f"could not write {cert_path} on {node.name}: {res.stderr.strip()[-300:] or f'exit {res.exit_status}'}",
            hint=f"check that {owner} exists on {node.name} and that its disk is writable; re-run apply",
        )
    return Installed(hostname, cert_path, info.not_after.isoformat(), time.monotonic() - started)


async def restrict_key(node: Node, cert_path: str, owner: str) -> None:
    """The key beside `cert_path` made 0600 and the owner's, by root's node helper (no link followed: the
    folder may be one another account can write).  Run before a new key is issued for one found readable
    by others, so that it is not left so when the issuance fails (the CA does not answer)."""
    res = await node.run(helper("secure", key_path(cert_path), "0600", owner), timeout=60)
    if not res.ok:
        raise ProviderError(
            f"could not make {key_path(cert_path)} 0600 on {node.name}: {(res.stderr or res.stdout).strip()[-300:]}",
            hint="check the certificates' folder on the node: it must be root's, without links",
        )


async def remove_cert(node: Node, cert_path: str) -> None:
    res = await node.run(f"rm -f {shlex.quote(cert_path)} {shlex.quote(key_path(cert_path))}")
    res.check(f"removing {cert_path}", node.name)
