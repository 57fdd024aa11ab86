"""DNS answers for the fleet's names, asked at the authoritative server with dnslib.

Queries run in threads (dnslib is blocking) in parallel; a failure is recorded
per name as an error string, never raised.
"""

from __future__ import annotations

import asyncio


def query_a(name: str, server: str, port: int, timeout: float = 2.0) -> tuple[list[str], int | None]:
    """A answers for name (empty list: NXDOMAIN or no A record) and their TTL (the authoritative server
    gives the one it holds, not a cache's countdown; None without answers).  Raises OSError on no answer."""
    from dnslib import QTYPE, DNSRecord  # ~7 ms to import: only a fleet with a DNS provider asks

    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(server, port, tcp=False, timeout=timeout))
    found = [rr for rr in reply.rr if rr.rtype == QTYPE.A]
    return sorted(str(rr.rdata) for rr in found), min((rr.ttl for rr in found), default=None)


Answers = dict[str, list[str]]  # name -> its A values
Ttls = dict[str, int]  # name -> the TTL of its A values (names with values only)


async def query_names(names: list[str], server: str, port: int) -> tuple[Answers, Ttls, str | None]:
    """(answers by name, their TTLs, first error or None)."""
    results = await asyncio.gather(
        *(asyncio.to_thread(query_a, n, server, port) for n in names), return_exceptions=True
    )
    answers: Answers = {}
    ttls: Ttls = {}
    error = None
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            error = error or f"{name}: {type(result).__name__}: {result}"
        else:
            answers[name] = result[0]
            if result[1] is not None:
                ttls[name] = result[1]
    return answers, ttls, error
