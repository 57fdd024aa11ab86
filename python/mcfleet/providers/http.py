"""HTTP JSON calls of the providers: over TCP/TLS (urllib) and over a unix socket (Caddy's admin API).

A GET or DELETE whose connection was reset is sent once more; an error names the provider,
the URL's origin and what to do, never a token.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

from mcfleet.providers.base import NoAnswer, ProviderError
from mcfleet.util.private_file import CredentialRefused, trusted_public_file

HTTP_TIMEOUT = 20.0
MAX_ANSWER = 4 * 1024 * 1024  # bytes read from a provider's answer at most


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context for a provider's URL: the system's CAs, or only `ca_file` (`~` is the operator's home,
    as fleet.json may write it).  A bundle that cannot be loaded, or that another user could replace
    (`trusted_ca_file`), is a ProviderError naming it."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=trusted_ca_file(ca_file))
    except OSError as exc:  # ssl.SSLError is one: not PEM certificates
        raise ProviderError(
            f"cannot load the CA bundle {ca_file} (ca_file in fleet.json `providers`): {exc.strerror or exc}",
            hint="name a readable file of PEM certificates, or drop ca_file to use this machine's CAs",
        ) from None


def trusted_ca_file(ca_file: str) -> str:
    """`ca_file` resolved, once `trusted_public_file` found no other user able to replace it (whoever chooses the
    CA receives the token sent to the provider); OSError when it cannot be read."""
    try:
        return trusted_public_file(ca_file, "CA bundle")
    except CredentialRefused as exc:
        raise ProviderError(f"{exc.message} (ca_file in fleet.json `providers`)", hint=exc.hint) from None


def ca_file_refusal(ca_file: str | None, field: str) -> ProviderError | None:
    """Why the provider's `ca_file` (fleet.json's `field`) cannot be used, asked before apply changes anything:
    another user could replace it (`trusted_ca_file`), or it cannot be read; None when it can (or is unset)."""
    if not ca_file:
        return None
    try:
        readable = os.access(trusted_ca_file(ca_file), os.R_OK)
    except ProviderError as exc:
        return exc
    except OSError:
        readable = False
    if readable:
        return None
    return ProviderError(
        f"cannot read the CA bundle {ca_file} ({field})",
        hint="fix the path in fleet.json `providers`, or drop ca_file when the server's certificate is signed by "
        "a CA this machine trusts",
    )


RETRIED = ("GET", "DELETE")  # idempotent calls, tried once more when the connection was dropped


def http_json(
    method: str,
    url: str,
    *,
    what: str,
    token: str | None = None,
    body: Any = None,
    ca_file: str | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> tuple[int, Any]:
    """One JSON call (blocking).  Returns (status, decoded body); raises ProviderError when down or >= 400.

    A GET or DELETE whose connection is reset (a server busy reloading) is sent once more."""
    try:
        return _http_json(method, url, what=what, token=token, body=body, ca_file=ca_file, timeout=timeout)
    except _Dropped:
        if method not in RETRIED:
            raise _dropped_error(what, url) from None
    try:
        return _http_json(method, url, what=what, token=token, body=body, ca_file=ca_file, timeout=timeout)
    except _Dropped:
        raise _dropped_error(what, url) from None


class HttpRefused(ProviderError):
    """The server answered with an HTTP error status (>= 400)."""

    def __init__(self, message: str, *, hint: str, status: int) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class _Dropped(Exception):
    pass


def _dropped_error(what: str, url: str) -> ProviderError:
    return NoAnswer(  # the request was sent: whether it was carried out is not known
        f"{what} at {_origin(url)} dropped the connection",
        hint=f"check that {what} is running and not restarting, then re-run apply",
    )


def _http_json(
    method: str,
    url: str,
    *,
    what: str,
    token: str | None = None,
    body: Any = None,
    ca_file: str | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> tuple[int, Any]:
    """One JSON call (blocking).  Returns (status, decoded body); raises ProviderError when down or >= 400."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = tls_context(ca_file) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            raw = resp.read(MAX_ANSWER)
            return resp.status, json.loads(raw) if raw.strip() else None
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the connection open until closed
            detail = _error_text(exc.read(MAX_ANSWER))
        raise HttpRefused(
            f"{what} answered {exc.code} to {method} {_path(url)}: {detail}",
            hint=f"check the {what} log and fleet.json `providers`; re-run apply once it is fixed",
            status=exc.code,
        ) from None
    except (ConnectionResetError, http.client.RemoteDisconnected):
        raise _Dropped from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionResetError):
            raise _Dropped from None
        if isinstance(reason, TimeoutError):  # a write may have been carried out (NoAnswer); a read was not
            raise (ProviderError if method in RETRIED else NoAnswer)(
                f"{what} at {_origin(url)} did not answer {method} {_path(url)} within {timeout:g} s",
                hint=f"check that {what} runs and is not overloaded, then re-run apply",
            ) from None
        raise ProviderError(
            f"{what} at {_origin(url)} is unreachable: {reason}",
            hint=f"start {what} (or fix its URL in fleet.json `providers`), then re-run apply",
        ) from None


def _error_text(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:300] or "(no message)"
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or data.get("detail") or data)[:300]
    return str(data)[:300]


def _origin(url: str) -> str:
    return url.split("/", 3)[2] if "://" in url else url


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_http_json(
    socket_path: str, method: str, path: str, *, what: str, where: str, body: Any = None, timeout: float = HTTP_TIMEOUT
) -> tuple[int, Any]:
    """One JSON call over HTTP on a unix socket (blocking); `where` names the socket in messages."""
    conn = _UnixHTTPConnection(socket_path, timeout)
    data = json.dumps(body).encode() if body is not None else None
    # Caddy accepts only an empty Host on a unix admin socket (its DNS-rebinding guard).
    headers = {"Accept": "application/json", "Host": ""}
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read(MAX_ANSWER)
    except TimeoutError:
        # a change sent and not answered may still be carried out; a read or a removal is a plain failure
        error = ProviderError if method in RETRIED else NoAnswer
        raise error(
            f"{what} at {where} did not answer {method} {path} within {timeout:g} s",
            hint=f"check that {what} runs on the proxy node and is not overloaded, then re-run apply",
        ) from None
    except OSError as exc:
        raise ProviderError(
            f"{what} at {where} is unreachable: {exc.strerror or exc}",
            hint=f"start {what} on the proxy node (or fix its admin socket in fleet.json `providers`); re-run apply",
        ) from None
    finally:
        conn.close()
    if resp.status >= 400:
        raise HttpRefused(
            f"{what} answered {resp.status} to {method} {path}: {_error_text(raw)}",
            hint=f"check the {what} log and fleet.json `providers`; re-run apply once it is fixed",
            status=resp.status,
        )
    return resp.status, json.loads(raw) if raw.strip() else None
