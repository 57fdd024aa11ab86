"""What the plan reads from the providers: the DNS server's answers and each proxy's live routes.

Both return an error text instead of raising, so a provider that is down is a line in the
plan ("cannot read …") rather than the end of the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping

from mcfleet.errors import McfleetError
from mcfleet.fleet.load import LoadedFleet
from mcfleet.observe.dns import ZoneAnswers
from mcfleet.providers.base import ProviderError
from mcfleet.providers.select import dns_backend
from mcfleet.providers.steps import ProxyRead, read_proxies
from mcfleet.transport.base import Node
from mcfleet.transport.ssh import SshPool


async def dns_answers(loaded: LoadedFleet, names: Iterable[str]) -> ZoneAnswers:
    """What the fleet's DNS provider holds at the names; why it could not be read in `error`."""
    backend = dns_backend(loaded.fleet) if loaded.fleet else None
    wanted = sorted(set(names))
    if backend is None or not wanted:
        return ZoneAnswers()
    try:
        return await backend.answers_full(wanted)
    except ProviderError as exc:
        return ZoneAnswers(error=exc.message)


LiveRoutes = ProxyRead | str  # what the proxies hold, or why they could not be read


async def host_proxy_routes(loaded: LoadedFleet, pool: SshPool, host: str, listeners: Iterable[int]) -> LiveRoutes:
    """The host's proxies' live routes (keyed `<listener>/<hostname>`) and the TLS `listeners` its proxy has
    no server for, or why they could not be read."""
    try:
        node: Node = await pool.connect(loaded.hosts[host])
        return await read_proxies(loaded, node, listeners)
    except McfleetError as exc:
        return exc.message


async def proxy_routes(
    loaded: LoadedFleet,
    pool: SshPool,
    hosts: Iterable[str],
    listeners: Mapping[str, set[int]] | None = None,
    early: Mapping[str, Awaitable[LiveRoutes]] | None = None,
) -> dict[str, LiveRoutes]:
    """host -> host_proxy_routes, each host's taken from `early` where it was started already."""
    names = sorted(set(hosts))
    found = await asyncio.gather(
        *((early or {}).get(n) or host_proxy_routes(loaded, pool, n, (listeners or {}).get(n, ())) for n in names)
    )
    return dict(zip(names, found, strict=True))
