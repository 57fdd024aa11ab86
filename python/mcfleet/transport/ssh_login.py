"""An SSH login in two fewer round trips than asyncssh's default, for mcfleet's connections.

asyncssh, like OpenSSH's client, opens user authentication with a "none" request (its answer lists
the server's methods), then offers each public key unsigned (the server answers whether it would
take it) and signs only after that answer.  Each is one round trip to the node, 2 of the ~6 a
login costs: 120 ms of every plan over a 60 ms link.  mcfleet logs in with public keys only
(never a password, never a passphrase prompt), so its connections:

- ask with "publickey" at once; a server that refuses it answers with its list of methods, as it
  would have to "none", and asyncssh goes on from there as before;
- sign at once with a key held in this process (a key file): one signature, no question first.
  A key held by an ssh agent or a PKCS#11 token is still offered unsigned first, as before: an
  agent may hold many keys, and a token may ask for a touch for every signature.

RFC 4252 allows both: "none" is one method among others (section 5.2), and a client may send the
signature in its first "publickey" request (section 7).  The two hooks below reach into asyncssh's
private auth classes (asyncssh is pinned in requirements.lock); when those are missing, a login
takes the default path, and tests/integration/test_ssh_login_lab.py fails.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh import auth as _auth
from asyncssh.packet import Boolean, String
from asyncssh.public_key import SSHLocalKeyPair

# set on the connections mcfleet opens: asyncssh's connections opened elsewhere keep the default path
SIGN_FIRST = "_mcfleet_sign_first"
_PublicKeyAuth: Any = getattr(_auth, "_ClientPublicKeyAuth", None)
_HANDLERS: Any = getattr(_auth, "_client_auth_handlers", None)


class FewerRoundTrips(asyncssh.SSHClient):
    """The client side of mcfleet's connections (asyncssh's `client_factory`)."""

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        # called once the TCP connection is up, before the key exchange: auth has not started
        if getattr(conn, "_auth_methods", None) == [b"none"] and _SignFirst.installed():
            conn._auth_methods = [b"publickey"]
            setattr(conn, SIGN_FIRST, True)


if _PublicKeyAuth is not None and isinstance(_HANDLERS, dict):

    class _SignFirst(_PublicKeyAuth):  # type: ignore[misc]
        """asyncssh's public key auth, which signs its first request on mcfleet's connections."""

        @staticmethod
        def installed() -> bool:
            return _HANDLERS.get(b"publickey") is _SignFirst

        async def _start(self) -> None:
            if not getattr(self._conn, SIGN_FIRST, False):
                await super()._start()
                return
            self._keypair = keypair = await self._conn.public_key_auth_requested()
            if keypair is None:
                self._conn.try_next_auth(next_method=True)
                return
            if isinstance(keypair, SSHLocalKeyPair):
                await self._send_signed_request()  # a refusal moves on to the next key, as before
                return
            # an agent's or a token's key: ask first (asyncssh signs once the server says yes)
            await self.send_request(Boolean(False), String(keypair.algorithm), String(keypair.public_data))

    _HANDLERS[b"publickey"] = _SignFirst
else:  # pragma: no cover - an asyncssh without these private names: the default login

    class _SignFirst:  # type: ignore[no-redef]
        @staticmethod
        def installed() -> bool:
            return False
