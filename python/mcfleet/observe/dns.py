"""DNS answers for the fleet's names, asked at the authoritative server with dnslib.

Queries run in threads (dnslib is blocking) in parallel; a failure is recorded
per name as an error string, never raised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mcfleet.observe import plan_notes


class Answer(NamedTuple):
    values: list[str]  # the A values held at the name itself (empty: NXDOMAIN or no A record)
    ttl: int | None  # their TTL (the authoritative server gives the one it holds); None without values
    alias: str | None = None  # the target of a CNAME held at the name: no A record can sit beside it
    v6: tuple[str, ...] = ()  # the AAAA values held at the name: IPv6 clients go there instead of the A


_NOT_PRIMARY = "providers.dns.server/port must name the zone's primary server, and fleet.json `zone` a zone it serves"
_REFUSED_WHY = {
    "REFUSED": f"it serves no zone holding the name: {_NOT_PRIMARY}",
    "NOTAUTH": f"it serves no zone holding the name: {_NOT_PRIMARY}",
    "SERVFAIL": "its copy of the zone may have failed to load: see the DNS server's log",
}


class NotAnAnswer(Exception):
    """The server replied, but not with what its zone holds at the name: an error code, or an answer without
    authority.  `what` it did, and `why` that is (or what to check)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(what)
        self.what = what
        self.why = why


def query_a(name: str, server: str, port: int, timeout: float = 2.0) -> Answer:
    """The A answer for name, and its AAAA values, read at the authoritative server.  Only records owned by
    the name count: a CNAME there comes with its target's A records, which are the target's, not the
    name's (and no AAAA of its own can sit beside it).  Raises OSError on no answer."""
    from dnslib import QTYPE, RCODE, DNSError, DNSRecord  # ~7 ms to import: only a fleet with a DNS provider asks

    def own(qtype: str) -> list[Any]:
        question = DNSRecord.question(name, qtype)
        try:
            reply = DNSRecord.parse(question.send(server, port, tcp=False, timeout=timeout))
            if reply.header.tc:  # cut to fit a UDP datagram: the records are those of the TCP answer
                reply = DNSRecord.parse(question.send(server, port, tcp=True, timeout=timeout))
        except DNSError as exc:
            raise NotAnAnswer(f"answered for {name} with what is not a DNS reply ({exc})", "") from None
        rcode = RCODE.get(reply.header.rcode)
        if rcode not in ("NOERROR", "NXDOMAIN"):  # REFUSED, SERVFAIL, NOTAUTH…: the server holds no answer
            raise NotAnAnswer(f"answered {rcode} for {name}", _REFUSED_WHY.get(str(rcode), ""))
        if not reply.header.aa:  # a resolver's (cached) answer, or a referral: not what the zone holds
            raise NotAnAnswer(f"is not authoritative for {name} (its answer lacks the AA flag)", _NOT_PRIMARY)
        return [rr for rr in reply.rr if str(rr.rname).rstrip(".").lower() == name.rstrip(".").lower()]

    held = own("A")
    found = [rr for rr in held if rr.rtype == QTYPE.A]
    alias = next((str(rr.rdata).rstrip(".") for rr in held if rr.rtype == QTYPE.CNAME), None)
    v6 = () if alias else tuple(sorted(str(rr.rdata) for rr in own("AAAA") if rr.rtype == QTYPE.AAAA))
    return Answer(sorted(str(rr.rdata) for rr in found), min((rr.ttl for rr in found), default=None), alias, v6)


@dataclass
class ZoneAnswers:
    """What the authoritative server holds at the asked names, or why it could not be read (`error`)."""

    values: dict[str, list[str]] = field(default_factory=dict)  # name -> its A values
    ttls: dict[str, int] = field(default_factory=dict)  # name -> the TTL of its A values (names with values)
    aliases: dict[str, str] = field(default_factory=dict)  # name -> the target of the CNAME held at it
    v6: dict[str, list[str]] = field(default_factory=dict)  # name -> its AAAA values (names with any)
    error: str | None = None

    def add(self, name: str, answer: Answer) -> None:
        self.values[name] = answer.values
        if answer.ttl is not None:
            self.ttls[name] = answer.ttl
        if answer.alias is not None:
            self.aliases[name] = answer.alias
        if answer.v6:
            self.v6[name] = list(answer.v6)

    def facts_update(self, names: set[str]) -> dict[str, Any]:
        """The Facts fields of one host that asked for `names` (the answers it got, and the error when some
        name got none)."""
        mine = {n: self.values[n] for n in sorted(names) if n in self.values}
        return {"dns": mine, "dns_ttl": {n: self.ttls[n] for n in mine if n in self.ttls},
                "dns_alias": {n: self.aliases[n] for n in mine if n in self.aliases},
                "dns_v6": {n: self.v6[n] for n in mine if n in self.v6},
                "dns_error": self.error if len(mine) < len(names) else None}  # fmt: skip


def unanswered(server: str, port: int) -> tuple[str, str, int]:
    """The plan note of a server that gave the plan's read no answer: the key check (a signed query of the
    same server, made right after the read when the plan has record changes) would find the same and wait
    again, and no answer is not the key's fault."""
    return ("dns server gave no answer", server, port)


async def query_names(names: list[str], server: str, port: int, wait: float = 2.0) -> ZoneAnswers:
    """Every name's answer, asked in parallel; the first failure in `error` (its name gets no answer)."""
    results = await asyncio.gather(
        *(asyncio.to_thread(query_a, n, server, port, wait) for n in names), return_exceptions=True
    )
    out = ZoneAnswers()
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            out.error = out.error or _no_answer(name, f"{server}:{port}", result, wait)
            continue
        out.add(name, result)
    # the server is down (every name got no answer, TimeoutError being an OSError), not one query lost
    if results and all(isinstance(r, OSError) for r in results):
        plan_notes.note(unanswered(server, port))
    return out


def _no_answer(name: str, server: str, exc: BaseException, timeout: float) -> str:
    """Why `server` gave no answer for `name`, in words (not the exception's class)."""
    if isinstance(exc, TimeoutError):
        return f"{server} gave no answer for {name} within {timeout:g} s"
    if isinstance(exc, OSError):
        return f"{server} could not be asked for {name}: {exc.strerror or exc}"
    if isinstance(exc, NotAnAnswer):
        return f"{server} {exc.what}" + (f": {exc.why}" if exc.why else "")
    return f"{server} answered for {name} with what mcfleet cannot read ({type(exc).__name__}: {exc})"
