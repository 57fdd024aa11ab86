"""DNS answers for the fleet's names, asked at the authoritative server with dnslib.

Queries run in threads (dnslib is blocking) in parallel; a failure is recorded
per name as an error string, never raised.
"""

from __future__ import annotations

import asyncio


def query_a(name: str, server: str, port: int, timeout: float = 2.0) -> list[str]:
    """A answers for name (empty list: NXDOMAIN or no A record).  Raises OSError on no answer."""
    from dnslib import QTYPE, DNSRecord  # ~7 ms to import: only a fleet with a DNS provider asks

    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(server, port, tcp=False, timeout=timeout))
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


async def query_names(names: list[str], server: str, port: int) -> tuple[dict[str, list[str]], str | None]:
    """(answers by name, first error or None)."""
    results = await asyncio.gather(
        *(asyncio.to_thread(query_a, n, server, port) for n in names), return_exceptions=True
    )
    answers: dict[str, list[str]] = {}
    error = None
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            error = error or f"{name}: {type(result).__name__}: {result}"
        else:
            answers[name] = result
    return answers, error
