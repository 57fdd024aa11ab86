"""What the plan reads from the providers: the DNS server's answers and each proxy's live routes.

Both return an error text instead of raising, so a provider that is down is a line in the
plan ("cannot read …") rather than the end of the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from mcfleet.errors import McfleetError
from mcfleet.fleet.load import LoadedFleet
from mcfleet.observe.dns import ZoneAnswers
from mcfleet.providers.base import ProviderError
from mcfleet.providers.route.base import ProxyRoute
from mcfleet.providers.select import dns_backend
from mcfleet.providers.steps import listeners_without_server, live_routes
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


LiveRoutes = dict[str, ProxyRoute] | str  # the routes, or why they could not be read


async def proxy_routes(loaded: LoadedFleet, pool: SshPool, hosts: Iterable[str]) -> dict[str, LiveRoutes]:
    """host -> its proxy's live routes (keyed `<listener>/<hostname>`), or why they could not be read."""

    async def one(name: str) -> LiveRoutes:
        try:
            node: Node = await pool.connect(loaded.hosts[name])
            return await live_routes(loaded, node)
        except McfleetError as exc:
            return exc.message

    names = sorted(set(hosts))
    found = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, found, strict=True))


async def missing_listeners(
    loaded: LoadedFleet, pool: SshPool, wanted: Mapping[str, set[int]]
) -> dict[str, dict[int, tuple[str, str | None]]]:
    """host -> the listeners of its TLS routes its proxy has no server for (Caddy), with why and what to
    do; a host whose proxy could not be asked is left out (the route read says why)."""

    async def one(name: str) -> dict[int, tuple[str, str | None]]:
        try:
            return await listeners_without_server(loaded, await pool.connect(loaded.hosts[name]), wanted[name])
        except McfleetError:
            return {}

    names = sorted(h for h, listeners in wanted.items() if listeners)
    found = await asyncio.gather(*(one(n) for n in names))
    return {n: f for n, f in zip(names, found, strict=True) if f}
