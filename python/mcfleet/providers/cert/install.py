"""Issue a certificate for one hostname and install it on the node that terminates TLS.

The key and CSR are made here, the provider signs the CSR, and the key and chain go to the
node in one SSH command through its stdin (never its argument list), to root's node helper
(`pair`): the key is written 0600 and the proxy user's, then the chain beside it as
`<stem>.pem` (0644), each through a temp file created with O_EXCL|O_NOFOLLOW and renamed
into place.  The certificates' folder may be the proxy's account's to write (mc-proxy's
/srv/mc-proxy), so no root step there may follow a link: a shell `chown` of a temp file
that account swapped for a link to /etc/shadow would give it that file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mcfleet.apply.nodeio import ensure_store, helper
from mcfleet.observe.certs import key_path
from mcfleet.providers.base import ProviderError
from mcfleet.providers.cert.base import CertBackend, cert_info, new_key_and_csr
from mcfleet.transport.base import Node

SEPARATOR = "--mcfleet-chain-follows--"


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
    await ensure_store(node)  # the helper (apply's node lock installed it: a no-op then)
    res = await node.run(helper("pair", key_path(cert_path), cert_path, owner), input=payload, timeout=60)
    if not res.ok:
        raise ProviderError(
            f"could not write {cert_path} on {node.name}: "
            f"{(res.stderr or res.stdout).strip()[-300:] or f'exit {res.exit_status}'}",
            hint=f"check that {owner} exists on {node.name}, that the certificates' folder is root's without "
            "links, and that its disk is writable; re-run apply",
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
    await ensure_store(node)
    res = await node.run(helper("rm", cert_path, key_path(cert_path)), timeout=60)  # a link is removed, not followed
    res.check(f"removing {cert_path}", node.name)
