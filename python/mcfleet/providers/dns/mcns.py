"""MCNS: REST `/v1/zones/{zone}/records` with the MCIAS bearer token read from `token_file`.

Record shape used (the platform documents name the endpoint and the verbs, POST/GET/PUT/
DELETE, not the body): `{"id", "name", "type", "value", "ttl"}` with `name` fully
qualified; PUT and DELETE address one record as `/v1/zones/{zone}/records/{id}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.parse
from typing import Any

from mcfleet.fleet.models import McnsProvider
from mcfleet.observe import plan_notes
from mcfleet.observe.dns import Answer, ZoneAnswers
from mcfleet.providers.base import ProviderError, read_token
from mcfleet.providers.dns.base import in_zone
from mcfleet.providers.http import HttpRefused, ca_file_refusal, http_json

WHAT = "MCNS"


def _reader(url: str, token: str) -> tuple[str, str, str]:
    """The plan note of a zone read that MCNS answered, or did not answer at all, with this token (a refusal,
    401 or 403, is not noted: the check asks and names it).  The credential check is that same GET, made
    right after the read: the read answers for it, and a MCNS that just did not answer is not waited for
    twice.  The token is kept as its sha256 only."""
    return "mcns zone read", url, hashlib.sha256(token.encode()).hexdigest()


class McnsDns:
    def __init__(self, provider: McnsProvider, zone: str) -> None:
        self.provider = provider
        self.zone = zone
        self.ttl = provider.ttl

    def _url(self, suffix: str = "") -> str:
        return f"{self.provider.url.rstrip('/')}/v1/zones/{urllib.parse.quote(self.zone)}/records{suffix}"

    def _call(self, method: str, suffix: str = "", body: Any = None) -> Any:
        token = read_token(self.provider.token_file)
        zone_read = method == "GET" and not suffix
        try:
            _status, data = http_json(
                method, self._url(suffix), what=WHAT, token=token, body=body, ca_file=self.provider.ca_file
            )
        except HttpRefused:
            raise
        except ProviderError:  # no answer, unreachable: the token was not judged, and asking again waits again
            if zone_read:
                plan_notes.note(_reader(self._url(), token))
            raise
        if zone_read:
            plan_notes.note(_reader(self._url(), token))
        return data

    def _all_records(self) -> list[dict[str, Any]]:
        data = self._call("GET")
        # a zone with no records is `"records": []`: an object without the key is not the zone's list (an
        # error body with status 200, another API at that URL), and read as empty it would plan every record
        items = data.get("records") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ProviderError(f"{WHAT} answered an unexpected record list", hint="check the MCNS version")
        return [r for r in items if isinstance(r, dict)]

    def _records(self) -> list[dict[str, Any]]:
        return [r for r in self._all_records() if r.get("type") == "A"]

    async def answers(self, names: list[str]) -> dict[str, list[str]]:
        return (await self.answers_full(names)).values

    async def answers_full(self, names: list[str]) -> ZoneAnswers:
        """One read of the zone's records: the A values and TTLs, the names MCNS holds a CNAME at (its
        CNAME exclusivity then refuses an A record there) and the AAAA values at the names."""
        records = await asyncio.to_thread(self._all_records)
        out = ZoneAnswers()
        for name in names:
            own = [r for r in records if r.get("name") == name]
            held = [r for r in own if r.get("type") == "A"]
            ttls = [r.get("ttl") for r in held]
            alias = next((str(r.get("value", "")).rstrip(".") for r in own if r.get("type") == "CNAME"), None)
            v6 = tuple(sorted(str(r.get("value")) for r in own if r.get("type") == "AAAA"))
            ttl = min(t for t in ttls if isinstance(t, int)) if ttls and all(isinstance(t, int) for t in ttls) else None
            out.add(name, Answer(sorted(str(r.get("value")) for r in held), ttl, alias, v6))
        return out

    def _key_refusal(self) -> ProviderError | None:
        try:
            token = read_token(self.provider.token_file)
        except ProviderError as exc:  # the token file cannot be read, or its JWT is past its `exp`
            return exc
        if refused := ca_file_refusal(self.provider.ca_file, "providers.dns.ca_file"):
            return refused  # before a token is sent through it
        if plan_notes.take(_reader(self._url(), token)):
            return None  # the plan's read of the zone just took this token, or got no answer
        try:
            self._records()
        except HttpRefused as exc:
            if exc.status in (401, 403):
                return ProviderError(
                    f"{WHAT} rejects the MCIAS token of token_file ({exc.message})",
                    hint=f"renew the token in {self.provider.token_file} (an MCIAS token of an operator "
                    "allowed to write the zone's records)",
                )
        except ProviderError:  # down, or another answer: not the token's fault
            return None
        return None

    async def key_refusal(self) -> ProviderError | None:
        return await asyncio.to_thread(self._key_refusal)

    async def set_a(self, name: str, address: str) -> None:
        if not in_zone(name, self.zone):
            raise ProviderError(f"{name} is outside the zone {self.zone}", hint="use a name under fleet.json `zone`")

        def run() -> None:
            mine = [r for r in self._records() if r.get("name") == name]
            body = {"name": name, "type": "A", "value": address, "ttl": self.ttl}
            if not mine:
                self._call("POST", body=body)
                return
            first, *extra = mine
            if first.get("value") != address or first.get("ttl") != self.ttl:
                self._call("PUT", f"/{first['id']}", body=body)
            for record in extra:
                self._call("DELETE", f"/{record['id']}")

        await asyncio.to_thread(run)

    async def delete_a(self, name: str) -> None:
        def run() -> None:
            for record in self._records():
                if record.get("name") == name:
                    self._call("DELETE", f"/{record['id']}")

        await asyncio.to_thread(run)

    async def delete_aaaa(self, name: str, values: list[str]) -> None:
        def run() -> None:
            for record in self._all_records():
                if record.get("name") == name and record.get("type") == "AAAA" and record.get("value") in values:
                    self._call("DELETE", f"/{record['id']}")

        await asyncio.to_thread(run)
