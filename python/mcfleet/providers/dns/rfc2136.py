"""RFC 2136 dynamic update signed with TSIG (dnspython), verified at the authoritative server (dnslib).

The TSIG secret is read from `key_file` for each update and only handed to dnspython's
keyring.  Records are deleted by type (A): with Knot's `update-type` ACL a type-less
delete is refused, and mcfleet only manages A records.
"""

from __future__ import annotations

import asyncio

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from mcfleet.fleet.models import Rfc2136Provider
from mcfleet.observe import plan_notes
from mcfleet.observe.dns import Answer, NotAnAnswer, ZoneAnswers, query_a, unanswered
from mcfleet.providers.base import NoAnswer, ProviderError, read_secret
from mcfleet.providers.dns.base import in_zone

TIMEOUT = 10.0
ALGORITHMS = {"hmac-sha256": dns.tsig.HMAC_SHA256, "hmac-sha512": dns.tsig.HMAC_SHA512}
# What the server's TSIG error (RFC 8945) says, by dnspython's exception for it.
TSIG_ERRORS = {
    "PeerBadKey": "it does not know the key name (BADKEY)",
    "PeerBadSignature": "the secret does not match (BADSIG)",
    "PeerBadTime": "the clocks differ by more than the fudge (BADTIME)",
    "PeerBadTruncation": "a truncated signature (BADTRUNC)",
}


class KeyRejected(ProviderError):
    """The DNS server rejected the TSIG key: every message signed with it would be."""


def tsig_error(exc: Exception) -> str:
    return TSIG_ERRORS.get(type(exc).__name__, type(exc).__name__)


class Rfc2136Dns:
    def __init__(self, provider: Rfc2136Provider, zone: str) -> None:
        self.provider = provider
        self.zone = zone
        self.ttl = provider.ttl

    def _where(self) -> str:
        return f"{self.provider.server}:{self.provider.port}"

    def _relative(self, name: str) -> str:
        if not in_zone(name, self.zone):
            raise ProviderError(
                f"{name} is outside the zone {self.zone}",
                hint="only names under fleet.json `zone` are written by the dns provider",
            )
        return name[: -len(self.zone) - 1] if name != self.zone else "@"

    def _signed(self, message: dns.message.Message) -> None:
        """Sign `message` with the fleet's TSIG key (read from key_file now: never kept)."""
        secret = read_secret(self.provider.key_file, "TSIG key")
        message.use_tsig(
            dns.tsigkeyring.from_text({self.provider.key_name: secret}),
            keyname=dns.name.from_text(self.provider.key_name),
            algorithm=ALGORITHMS[self.provider.algorithm],
        )

    def _exchange(self, message: dns.message.Message, what: str) -> dns.message.Message:
        """Send a signed message over TCP (`what` it is, for the errors); the server's rejection of the key is a
        KeyRejected."""
        try:
            return dns.query.tcp(message, self.provider.server, port=self.provider.port, timeout=TIMEOUT)
        except (dns.tsig.PeerError, dns.tsig.BadSignature) as exc:
            raise KeyRejected(
                f"the DNS server at {self._where()} rejected the TSIG key {self.provider.key_name!r}"
                f"{' in ' + what if what else ''}: {tsig_error(exc)}",
                hint=f"check that key_file holds the secret of key {self.provider.key_name!r} the server knows, "
                "and that its ACL allows A updates",
            ) from None
        except dns.exception.Timeout:
            raise NoAnswer(
                f"the DNS server at {self._where()} did not answer {what} within {TIMEOUT:g} s",
                hint="check that the DNS server runs and is not overloaded, then re-run apply",
            ) from None
        except EOFError:  # dnspython's word for a connection closed before the reply's length came
            # after an update was sent the server may still have carried it out: no answer, not a refusal
            raise (NoAnswer if what else ProviderError)(
                f"the DNS server at {self._where()} closed the connection without answering {what or 'the query'}",
                hint="check that providers.dns.server/port name a DNS server that takes TCP, then re-run apply",
            ) from None
        except (OSError, dns.exception.DNSException) as exc:
            raise ProviderError(
                f"the DNS server at {self._where()} is unreachable for {what}: {exc}",
                hint="start the DNS server or fix providers.dns.server/port, then re-run apply",
            ) from None

    def _key_refusal(self) -> ProviderError | None:
        """The server's verdict on the key, asked with a TSIG-signed SOA query of the zone (an authoritative
        server checks the signature of every message it gets: a wrong secret or an unknown key name is
        refused as it would be in an update).  None when the key is accepted, or when the server does not
        answer (the plan's read of the records says that)."""
        query = dns.message.make_query(self.zone, dns.rdatatype.SOA)
        try:
            self._signed(query)
        except ProviderError as exc:  # the key file cannot be read
            return exc
        if plan_notes.take(unanswered(self.provider.server, self.provider.port)):
            return None  # the plan's read just got no answer here: asking would wait again
        try:
            reply = self._exchange(query, "")
        except KeyRejected as exc:
            return exc
        except ProviderError:  # no answer, unreachable: not the key's fault
            return None
        if reply.rcode() == dns.rcode.NOTAUTH:
            return ProviderError(
                f"the DNS server at {self._where()} is not authoritative for {self.zone} (NOTAUTH)",
                hint=f"check providers.dns.server/port: they must name the primary server of {self.zone}",
            )
        return None

    async def key_refusal(self) -> ProviderError | None:
        return await asyncio.to_thread(self._key_refusal)

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        self._signed(update)
        reply = self._exchange(update, what)
        if reply.rcode() != dns.rcode.NOERROR:
            raise ProviderError(
                f"the DNS server at {self._where()} answered {dns.rcode.to_text(reply.rcode())} to {what}",
                hint=f"check that the server is authoritative for {self.zone} and lets key "
                f"{self.provider.key_name!r} update A records",
            )

    def _query(self, name: str) -> Answer:
        try:
            return query_a(name, self.provider.server, self.provider.port, timeout=TIMEOUT)
        except OSError as exc:
            raise ProviderError(
                f"the DNS server at {self._where()} does not answer queries: {exc}",
                hint="start the DNS server or fix providers.dns.server/port",
            ) from None
        except NotAnAnswer as exc:
            raise ProviderError(
                f"the DNS server at {self._where()} {exc.what}", hint=exc.why or "check the DNS server's log"
            ) from None

    async def answers(self, names: list[str]) -> dict[str, list[str]]:
        return (await self.answers_full(names)).values

    async def answers_full(self, names: list[str]) -> ZoneAnswers:
        out = ZoneAnswers()
        for name, answer in zip(names, await asyncio.gather(*(asyncio.to_thread(self._query, n) for n in names)),
                                strict=True):  # fmt: skip
            out.add(name, answer)
        return out

    async def set_a(self, name: str, address: str) -> None:
        relative = self._relative(name)

        def run() -> None:
            update = dns.update.UpdateMessage(self.zone)
            update.replace(relative, self.ttl, "A", address)
            self._send(update, f"the update of {name}")

        await asyncio.to_thread(run)

    async def delete_a(self, name: str) -> None:
        relative = self._relative(name)

        def run() -> None:
            update = dns.update.UpdateMessage(self.zone)
            update.delete(relative, "A")
            self._send(update, f"the deletion of {name}")

        await asyncio.to_thread(run)

    async def delete_aaaa(self, name: str, values: list[str]) -> None:
        relative = self._relative(name)

        def run() -> None:
            update = dns.update.UpdateMessage(self.zone)
            for value in values:
                update.delete(relative, "AAAA", value)
            self._send(update, f"the deletion of {name}'s AAAA {', '.join(values)}")

        await asyncio.to_thread(run)
