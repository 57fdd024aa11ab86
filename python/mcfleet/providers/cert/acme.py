"""ACME (RFC 8555) issuance with the `acme` library, e.g. from Pebble.

The account key is read from `account_key_file` at the moment of use; when the file does
not exist yet an RSA key is made and written there (mode 0600) first.  Challenges are
answered with HTTP-01; the ACME server must be able to validate them (Pebble in the lab
runs with PEBBLE_VA_ALWAYS_VALID; a public CA needs the hostname's port 80 to reach the
proxy, which serves /.well-known/acme-challenge/).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from mcfleet.fleet.models import AcmeProvider
from mcfleet.providers.base import ProviderError
from mcfleet.providers.http import HTTP_TIMEOUT, ca_file_refusal, http_json, trusted_ca_file
from mcfleet.util.private_file import CredentialRefused, read_credential

USER_AGENT = "mcfleet"
TIMEOUT_S = 90
DIRECTORY_WAIT_S = 5.0  # the plan's check that the ACME server answers: its directory is one small GET

# One account per (ACME directory, account key) for the whole run.  Hosts issue in parallel
# threads with the same key; an ACME server may fail all but one of simultaneous first
# registrations of a key (Pebble answers serverInternal "Error saving account": it checks
# for the key, then saves, without a lock).  So the first thread registers, the others wait
# for it and reuse the account's URL.
_accounts: dict[tuple[str, str], messages.RegistrationResource] = {}
_accounts_lock = threading.Lock()


FIRST_LOOK_S = 0.05  # a CA that issues at once (an internal one, Pebble) has the certificate at the first look
LONGEST_LOOK_S = 1.0  # the acme library's pause between looks


def _issued(acme: client.ClientV2, order: messages.OrderResource, deadline: datetime) -> str:
    """The certificate chain of `order`, once its authorizations are valid: finalized, then looked at after
    50 ms, doubling to 1 s (or when the CA's Retry-After says).  The acme library's poll_finalization waits 1 s
    before its first look, which was most of an apply's cert step with a CA that issues at once."""
    order = acme.begin_finalization(acme.poll_authorizations(order, deadline))
    body, pause = order.body, FIRST_LOOK_S
    while True:
        if body.status == messages.STATUS_INVALID:
            raise errors.IssuanceError(body.error) if body.error else errors.Error("the order became invalid")
        if body.status == messages.STATUS_VALID and body.certificate is not None:
            return str(acme._post_as_get(body.certificate).text)
        if body.status == messages.STATUS_READY:  # finalization refused as not ready yet (orderNotReady): again
            body = acme.begin_finalization(order).body
        wake = datetime.now() + timedelta(seconds=pause)
        if wake > deadline:
            raise errors.TimeoutError()
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_LOOK_S)
        # POST-as-GET of the order (RFC 8555 7.1.3): the library's own call for it, which it has no public name for
        response = acme._post_as_get(order.uri)
        body = messages.Order.from_json(response.json())
        if body.status == messages.STATUS_PROCESSING and "Retry-After" in response.headers:
            pause = max(pause, (acme.retry_after(response, 1) - datetime.now()).total_seconds())  # as the CA asks


def load_account_key(path: str) -> JWKRSA:
    file = Path(path).expanduser()
    if not file.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        file.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temp file, then linked into place: hosts issuing in parallel
        # never read a half-written key, and the first one to link wins (the others read it).
        tmp = file.with_name(f".{file.name}.{os.getpid()}.{id(key)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            os.link(tmp, file)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        loaded = serialization.load_pem_private_key(read_credential(path, "ACME account key"), password=None)
    except CredentialRefused as exc:  # a link, another user's file or folder, open to others: `read_credential`
        raise ProviderError(exc.message, hint=exc.hint) from None
    except (OSError, ValueError, TypeError):
        raise ProviderError(
            f"the ACME account key file {path} is not a readable PEM private key",
            hint=f"remove {path} to have a new account key made, or fix providers.cert.account_key_file",
        ) from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ProviderError(f"the ACME account key in {path} is not RSA", hint="use an RSA key (2048 bits or more)")
    return JWKRSA(key=loaded)


def root_cause(exc: BaseException) -> str:
    """The innermost reason of a network error, as the system says it ("Connection refused", "[SSL:
    CERTIFICATE_VERIFY_FAILED] …"): requests wraps it in urllib3's retry and connection errors, whose
    text repeats the URL, the pool and each wrapper's class."""
    seen: set[int] = set()
    deepest = exc
    while id(deepest) not in seen:
        seen.add(id(deepest))
        first = deepest.args[0] if deepest.args and isinstance(deepest.args[0], BaseException) else None
        inner = getattr(deepest, "reason", None)
        nxt = next(
            (e for e in (deepest.__cause__, inner, first, deepest.__context__) if isinstance(e, BaseException)), None
        )
        if nxt is None:
            break
        deepest = nxt
    if isinstance(deepest, OSError) and deepest.strerror and not isinstance(deepest, ssl.SSLError):
        return deepest.strerror
    return str(deepest) or type(deepest).__name__


class AcmeCert:
    def __init__(self, provider: AcmeProvider) -> None:
        self.provider = provider

    async def key_refusal(self) -> ProviderError | None:
        """An account key file that exists but is not an RSA private key, a CA bundle that cannot be read
        (a missing account key is made on first use), or an ACME server whose directory does not answer:
        apply would fail every issuance, each after the ACME client's network timeout."""
        return await asyncio.to_thread(self._key_refusal)

    def _key_refusal(self) -> ProviderError | None:
        if refused := ca_file_refusal(self.provider.ca_file, "providers.cert.ca_file"):
            return refused
        if Path(self.provider.account_key_file).expanduser().exists():
            try:
                load_account_key(self.provider.account_key_file)
            except ProviderError as exc:
                return exc
        return self._directory_refusal()

    def _directory_refusal(self) -> ProviderError | None:
        url = self.provider.directory
        try:
            _status, answer = http_json("GET", url, what="the ACME server", ca_file=self.provider.ca_file,
                                        timeout=DIRECTORY_WAIT_S)  # fmt: skip
        except ProviderError as exc:
            return ProviderError(exc.message, hint="start the ACME server, or fix providers.cert.directory (and "
                                 "ca_file when its certificate is signed by a CA of its own)")  # fmt: skip
        if not isinstance(answer, dict) or not isinstance(answer.get("newOrder"), str):
            return ProviderError(f"{url} is not an ACME directory (its answer names no newOrder URL)",
                                 hint="set providers.cert.directory to the ACME server's directory URL")  # fmt: skip
        return None

    def _issue(self, hostname: str, csr_pem: bytes) -> str:
        account = load_account_key(self.provider.account_key_file)
        ca_file = self.provider.ca_file
        verify: Any = trusted_ca_file(ca_file) if ca_file else True  # requests': True or a CA bundle path
        try:
            net = client.ClientNetwork(account, user_agent=USER_AGENT, verify_ssl=verify, timeout=int(HTTP_TIMEOUT))
            directory = client.ClientV2.get_directory(self.provider.directory, net)
            acme = client.ClientV2(directory, net)
            net.account = self._account(acme, account)
            order = acme.new_order(csr_pem)
            for authz in order.authorizations:
                if authz.body.status != messages.STATUS_PENDING:
                    continue  # an authorization the CA reuses (already valid) takes no answer
                for chall in authz.body.challenges:
                    if isinstance(chall.chall, challenges.HTTP01):
                        acme.answer_challenge(chall, chall.chall.response(account))
            return _issued(acme, order, datetime.now() + timedelta(seconds=TIMEOUT_S))
        except errors.Error as exc:
            raise ProviderError(
                f"the ACME server {self.provider.directory} did not issue a certificate for {hostname}: {exc}",
                hint="check the ACME server's log; re-run apply once it issues again",
            ) from None
        except messages.Error as exc:
            raise ProviderError(
                f"the ACME server {self.provider.directory} refused {hostname}: {exc.detail or exc.typ}",
                hint="check that the CA may issue for this hostname",
            ) from None
        except OSError as exc:
            raise ProviderError(
                f"the ACME server {self.provider.directory} is unreachable: {root_cause(exc)}",
                hint="start it or fix providers.cert.directory, then re-run apply",
            ) from None

    def _account(self, acme: client.ClientV2, key: JWKRSA) -> messages.RegistrationResource:
        """The account of `key` at this directory: registered on first use in this run, then reused."""
        which = (self.provider.directory, key.thumbprint().hex())
        with _accounts_lock:
            known = _accounts.get(which)
            if known is None:
                registration = messages.NewRegistration.from_data(
                    email=self.provider.email, terms_of_service_agreed=True
                )
                try:
                    known = acme.new_account(registration)
                except errors.ConflictError as exc:  # the key already has an account: use it
                    known = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
                _accounts[which] = known
        return known

    async def issue(self, hostname: str, csr_pem: bytes) -> str:
        return await asyncio.to_thread(self._issue, hostname, csr_pem)
