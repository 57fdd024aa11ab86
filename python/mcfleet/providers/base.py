"""What every provider shares: its error, and reading a secret file at the moment of use.

Secrets (TSIG keys, MCIAS tokens, ACME account keys, private keys) are read from their
files only when a call needs them and are never put in a message, an exception or a log:
an error names the file, never its content.  HTTP JSON calls are in providers/http.py
(urllib and http.client cost ~10 ms to import; a plan without HTTP providers never needs them).
"""

from __future__ import annotations

from pathlib import Path

from mcfleet.errors import McfleetError


class ProviderError(McfleetError):
    """A provider is down or refused a call: its own message, and what to do."""


class NoAnswer(ProviderError):
    """A change was sent and no answer came (a timeout, a connection dropped after the request): the
    peer may still carry it out, as a DNS server that was hung does when it resumes."""


def read_secret(path: str, what: str) -> str:
    """The content of a secret file, stripped; an error names the file, never the content."""
    try:
        value = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ProviderError(
            f"cannot read the {what} file {path}: {exc.strerror or exc}",
            hint=f"create {path} (mode 0600) holding the {what}, or fix the path in fleet.json `providers`",
        ) from None
    if not value:
        raise ProviderError(f"the {what} file {path} is empty", hint=f"write the {what} into {path}")
    return value
