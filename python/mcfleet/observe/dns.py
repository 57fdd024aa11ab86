"""DNS answers for the fleet's names, asked at the authoritative server with dnslib.

Queries run in threads (dnslib is blocking) in parallel; a failure is recorded
per name as an error string, never raised.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple


class Answer(NamedTuple):
    values: list[str]  # the A values held at the name itself (empty: NXDOMAIN or no A record)
    ttl: int | None  # their TTL (the authoritative server gives the one it holds); None without values
    alias: str | None = None  # the target of a CNAME held at the name: no A record can sit beside it


def query_a(name: str, server: str, port: int, timeout: float = 2.0) -> Answer:
    """The A answer for name, read at the authoritative server.  Only records owned by the name count: a
    CNAME there comes with its target's A records, which are the target's, not the name's.  Raises OSError
    on no answer."""
    from dnslib import QTYPE, DNSRecord  # ~7 ms to import: only a fleet with a DNS provider asks

    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(server, port, tcp=False, timeout=timeout))
    own = [rr for rr in reply.rr if str(rr.rname).rstrip(".").lower() == name.rstrip(".").lower()]
    found = [rr for rr in own if rr.rtype == QTYPE.A]
    alias = next((str(rr.rdata).rstrip(".") for rr in own if rr.rtype == QTYPE.CNAME), None)
    return Answer(sorted(str(rr.rdata) for rr in found), min((rr.ttl for rr in found), default=None), alias)


Answers = dict[str, list[str]]  # name -> its A values
Ttls = dict[str, int]  # name -> the TTL of its A values (names with values only)
Aliases = dict[str, str]  # name -> the target of the CNAME held at it


async def query_names(names: list[str], server: str, port: int) -> tuple[Answers, Ttls, Aliases, str | None]:
    """(answers by name, their TTLs, the names that are CNAMEs, first error or None)."""
    results = await asyncio.gather(
        *(asyncio.to_thread(query_a, n, server, port) for n in names), return_exceptions=True
    )
    answers: Answers = {}
    ttls: Ttls = {}
    aliases: Aliases = {}
    error = None
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            error = error or f"{name}: {type(result).__name__}: {result}"
            continue
        answers[name] = result.values
        if result.ttl is not None:
            ttls[name] = result.ttl
        if result.alias is not None:
            aliases[name] = result.alias
    return answers, ttls, aliases, error
