"""HAProxy's runtime API: l4 routes, TLS passed through by SNI, on every listener of the proxy.

The routes are one map file, one line per route: `<listener>/<sni-name> <address>:<port>`.
HAProxy's frontend binds every listener port; for a connection it looks up
`<the port it arrived on>/<the SNI name>` in the map and sends the bytes, TLS untouched, to
that address (`set-dst`/`set-dst-port` on a server `0.0.0.0:0`).  A name the map does not
hold goes to the proxy's TLS-ending side for that listener (Caddy, l7 routes), so l4 and l7
routes share a listener as they do on mc-proxy.  The config this expects is in
`mcfleet.lab.peers.nodeproxy.haproxy_config`.

A change is made in the running HAProxy (`add map` / `set map` / `del map`, at once, no
reload) and then the whole map is written back to the map file on the proxy's node,
atomically (`save`), so a restarted HAProxy serves the same routes.  A call that finds the
running map as asked still writes the file: the plan asks so when the file fell behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mcfleet.fleet.models import HaproxyProvider
from mcfleet.providers.base import NoAnswer, ProviderError
from mcfleet.providers.route.base import ProxyRoute

WHAT = "HAProxy"
TIMEOUT = 10.0
ANSWER_CAP = 64 << 20  # a map of ~1 M routes: anything larger is not HAProxy's answer to `show map`

SaveMap = Callable[[str], Awaitable[None]]


def map_key(listener: int, hostname: str) -> str:
    return f"{listener}/{hostname.lower()}"


def map_text(entries: dict[str, str]) -> str:
    """The map file's content: one `key value` line per route, sorted (the same routes, the same bytes)."""
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """The whole answer: HAProxy writes it in chunks of its buffer size (16 kB by default), then closes the
    connection (one command per connection); one read would return the first chunk only, a map cut short."""
    answer = bytearray()
    while chunk := await reader.read(1 << 16):
        answer += chunk
        if len(answer) > ANSWER_CAP:
            raise ProviderError(
                f"{WHAT}'s answer is over {ANSWER_CAP >> 20} MiB", hint="check providers.route_l4.admin_socket"
            )
    return bytes(answer)


class HaproxyRoutes:
    """`save`: writes the map file's new content on the proxy's node (None: the runtime API only).
    `local_socket`: a local path reaching the node's admin socket (an SSH forward); messages name the node's."""

    def __init__(self, provider: HaproxyProvider, save: SaveMap | None = None, local_socket: str | None = None) -> None:
        self.provider = provider
        self.save = save
        self.socket = local_socket or provider.admin_socket

    async def _cmd(self, command: str) -> str:
        try:
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(self.socket)
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    answer = (await _answer(reader)).decode(errors="replace")
                finally:  # also when HAProxy never answers: the connection is not left open
                    writer.close()
        except TimeoutError:
            raise NoAnswer(
                f"{WHAT}'s admin socket {self.provider.admin_socket} did not answer `{command.split(maxsplit=1)[0]} …` "
                f"within {TIMEOUT:g} s",
                hint="check that HAProxy runs and is not overloaded, then re-run apply",
            ) from None
        except OSError as exc:
            raise ProviderError(
                f"{WHAT}'s admin socket {self.provider.admin_socket} does not answer: {exc}",
                hint="start HAProxy with `stats socket … level admin`, or fix providers.route_l4.admin_socket",
            ) from None
        if not answer:  # HAProxy ends every answer, even an empty one, with an empty line
            change = not command.startswith("show ")  # sent: HAProxy may have made it before the connection went
            raise (NoAnswer if change else ProviderError)(
                f"{WHAT}'s admin socket {self.provider.admin_socket} closed the connection without answering "
                f"`{command.split(maxsplit=1)[0]} …`",
                hint="check that HAProxy runs with `stats socket … level admin` there, or fix "
                "providers.route_l4.admin_socket",
            )
        bad = [ln for ln in answer.splitlines() if ln.lower().startswith(("unknown", "no such", "can't", "invalid"))]
        if bad:
            raise ProviderError(
                f"{WHAT} refused `{command.split(maxsplit=1)[0]} …`: {bad[0]}",
                hint=f"check that HAProxy's config loads the map {self.provider.map_file}",
            )
        return answer

    async def _map(self) -> dict[str, str]:
        """key -> backend, as the running HAProxy holds them (`show map` lines are `<id> <key> <value>`)."""
        answer = await self._cmd(f"show map {self.provider.map_file}")
        out = {}
        for line in answer.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[parts[1]] = parts[2]
        return out

    async def _persist(self) -> None:
        if self.save is not None:
            await self.save(map_text(await self._map()))

    async def list_routes(self) -> dict[str, ProxyRoute]:
        out = {}
        for key, backend in (await self._map()).items():
            listener, _, hostname = key.partition("/")
            if listener.isdecimal() and hostname:
                route = ProxyRoute(int(listener), hostname, backend, "l4")
                out[route.key_id] = route
        return out

    async def add_route(self, route: ProxyRoute) -> None:
        if route.mode != "l4":
            raise ProviderError(
                f"HAProxy carries only l4 routes, not {route.mode} {route.hostname}",
                hint="set providers.route (caddy or mc-proxy) for routes that end TLS",
            )
        address, _, port = route.backend.rpartition(":")
        if not address or not port.isdecimal() or ":" in address:
            raise ProviderError(
                f"{WHAT} route {route.key_id}: backend {route.backend!r} is not <IPv4 address>:<port>",
                hint="publish the route's port on an IPv4 address",
            )
        key = map_key(route.listener, route.hostname)
        mapping = await self._map()
        if mapping.get(key) == route.backend:  # asked all the same: the plan found the map file behind
            await self._persist()
            return
        verb = "set" if key in mapping else "add"
        await self._cmd(f"{verb} map {self.provider.map_file} {key} {route.backend}")
        await self._persist()

    async def remove_route(self, listener: int, hostname: str) -> None:
        key = map_key(listener, hostname)
        if key not in await self._map():  # asked all the same: the plan found it in the map file alone
            await self._persist()
            return
        await self._cmd(f"del map {self.provider.map_file} {key}")
        await self._persist()
