"""What every provider shares: its error, and reading a secret file at the moment of use.

Secrets (TSIG keys, MCIAS tokens, ACME account keys, private keys) are read from their
files only when a call needs them and are never put in a message, an exception or a log:
an error names the file, never its content.  HTTP JSON calls are in providers/http.py
(urllib and http.client cost ~10 ms to import; a plan without HTTP providers never needs them).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from mcfleet.errors import McfleetError
from mcfleet.util.private_file import CredentialRefused, read_credential


class ProviderError(McfleetError):
    """A provider is down or refused a call: its own message, and what to do."""


class NoAnswer(ProviderError):
    """A change was sent and no answer came (a timeout, a connection dropped after the request): the
    peer may still carry it out, as a DNS server that was hung does when it resumes."""


def read_secret(path: str, what: str) -> str:
    """The content of a secret file, stripped; an error names the file, never the content."""
    try:
        data = read_credential(path, what)
    except CredentialRefused as exc:  # a link, another user's file or folder, open to others: `read_credential`
        raise ProviderError(exc.message, hint=exc.hint) from None
    except OSError as exc:
        raise ProviderError(
            f"cannot read the {what} file {path}: {exc.strerror or exc}",
            hint=f"create {path} (mode 0600) holding the {what}, or fix the path in fleet.json `providers`",
        ) from None
    try:
        value = data.decode().strip()
    except UnicodeDecodeError:
        raise ProviderError(
            f"the {what} file {path} is not text (UTF-8)", hint=f"check that {path} holds the {what}"
        ) from None
    if not value:
        raise ProviderError(f"the {what} file {path} is empty", hint=f"write the {what} into {path}")
    return value


def read_token(path: str) -> str:
    """An MCIAS bearer token from its file (`read_secret`), refused here when it is a JWT whose `exp` has
    passed: the server would answer 401 to every call, which a plan only finds out by making one."""
    token = read_secret(path, "MCIAS token")
    expired = jwt_expired_at(token)
    if expired is not None:
        raise ProviderError(
            f"the MCIAS token in {path} expired on {expired.strftime('%Y-%m-%d %H:%M')} UTC (its `exp` claim)",
            hint=f"have MCIAS issue a new token for the service account and write it to {path}",
        )
    return token


def jwt_expired_at(token: str, now: datetime | None = None) -> datetime | None:
    """When a JWT's `exp` (seconds since the epoch, UTC) passed, or None: not passed, or not a JWT whose
    payload says (the token stays the server's to judge).  The signature is not checked: only the server
    can, and a forged `exp` gains nothing here."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload["exp"] if isinstance(payload, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        at = datetime.fromtimestamp(exp, UTC)
    except (ValueError, KeyError, OverflowError, OSError):  # binascii.Error and JSONDecodeError are ValueErrors
        return None
    return at if at <= (now or datetime.now(UTC)) else None
