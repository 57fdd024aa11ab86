"""Metacrypt: `POST /v1/engine/request` with the MCIAS token read from `token_file`.

Request shape used (the platform documents give the endpoint and that the mcp agent's MCIAS
account may issue for `*.svc.mcp.metacircular.net` and listed public names, not the body):
`{"mount": <pki mount>, "operation": "issue", "data": {"csr": <PEM>, "common_name": <hostname>}}`
-> `{"certificate": <PEM>, "chain": <PEM>}`.
"""

from __future__ import annotations

import asyncio

from mcfleet.fleet.models import MetacryptProvider
from mcfleet.providers.base import ProviderError, read_token
from mcfleet.providers.http import ca_file_refusal, http_json

WHAT = "Metacrypt"


class MetacryptCert:
    def __init__(self, provider: MetacryptProvider) -> None:
        self.provider = provider

    async def key_refusal(self) -> ProviderError | None:
        """A token file that cannot be read, a JWT past its `exp` (Metacrypt has no call that checks a
        token without issuing), or a ca_file another user could replace."""
        try:
            read_token(self.provider.token_file)
        except ProviderError as exc:
            return exc
        return ca_file_refusal(self.provider.ca_file, "providers.cert.ca_file")

    def _issue(self, hostname: str, csr_pem: bytes) -> str:
        token = read_token(self.provider.token_file)
        body = {
            "mount": self.provider.mount,
            "operation": "issue",
            "data": {"csr": csr_pem.decode(), "common_name": hostname},
        }
        url = f"{self.provider.url.rstrip('/')}/v1/engine/request"
        _status, data = http_json("POST", url, what=WHAT, token=token, body=body, ca_file=self.provider.ca_file)
        if not isinstance(data, dict) or not isinstance(data.get("certificate"), str):
            raise ProviderError(
                f"{WHAT} answered no certificate for {hostname}", hint="check the Metacrypt log and its version"
            )
        chain = data.get("chain")
        leaf: str = data["certificate"]
        return leaf.rstrip() + "\n" + (chain.rstrip() + "\n" if isinstance(chain, str) else "")

    async def issue(self, hostname: str, csr_pem: bytes) -> str:
        return await asyncio.to_thread(self._issue, hostname, csr_pem)
