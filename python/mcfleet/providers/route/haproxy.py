"""HAProxy's runtime API: l4 routes, TLS passed through by SNI.

HAProxy 2.6 cannot add backends at runtime, so its config pre-declares backend slots
(fleet.json `backends`), each with one server `s1`.  A route claims a free slot (`set
server <slot>/s1 addr`, `state ready`) and maps its SNI name to it in the map file
(`add map` / `set map`); removal deletes the map entry and puts the server in maint.
The frontend carries one listener; the listener is kept in the route's key only.
Runtime changes are not written back to the map file (a restart forgets them; re-running
apply restores them).
"""

from __future__ import annotations

import asyncio

from mcfleet.fleet.models import HaproxyProvider
from mcfleet.providers.base import ProviderError
from mcfleet.providers.route.base import ProxyRoute

WHAT = "HAProxy"
TIMEOUT = 10.0


class HaproxyRoutes:
    def __init__(self, provider: HaproxyProvider, listener: int = 443) -> None:
        self.provider = provider
        self.listener = listener

    async def _cmd(self, command: str) -> str:
        try:
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(self.provider.admin_socket)
                writer.write(command.encode() + b"\n")
                await writer.drain()
                answer = (await reader.read(1 << 20)).decode(errors="replace")
                writer.close()
        except (OSError, TimeoutError) as exc:
            raise ProviderError(
                f"{WHAT}'s admin socket {self.provider.admin_socket} does not answer: {exc}",
                hint="start HAProxy with `stats socket … level admin`, or fix providers.route_l4.admin_socket",
            ) from None
        bad = [ln for ln in answer.splitlines() if ln.lower().startswith(("unknown", "no such", "can't", "invalid"))]
        if bad:
            raise ProviderError(
                f"{WHAT} refused `{command.split(maxsplit=1)[0]} …`: {bad[0]}", hint="check the HAProxy config"
            )
        return answer

    async def _map(self) -> dict[str, str]:
        answer = await self._cmd(f"show map {self.provider.map_file}")
        out = {}
        for line in answer.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[parts[1]] = parts[2]
        return out

    async def _server_addr(self, slot: str) -> str:
        answer = await self._cmd(f"show servers state {slot}")
        for line in answer.splitlines():
            parts = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state ... srv_port at index 18
            if len(parts) > 18 and parts[1] == slot and parts[3] == "s1":
                return f"{parts[4]}:{parts[18]}"
        return ""

    async def list_routes(self) -> dict[str, ProxyRoute]:
        out = {}
        for hostname, slot in (await self._map()).items():
            if slot in self.provider.backends:
                route = ProxyRoute(self.listener, hostname, await self._server_addr(slot), "l4")
                out[route.key_id] = route
        return out

    async def add_route(self, route: ProxyRoute) -> None:
        if route.mode != "l4":
            raise ProviderError(
                f"HAProxy carries only l4 routes, not {route.mode} {route.hostname}",
                hint="set providers.route (caddy or mc-proxy) for routes that end TLS",
            )
        mapping = await self._map()
        slot = mapping.get(route.hostname)
        if slot is None:
            used = set(mapping.values())
            slot = next((b for b in self.provider.backends if b not in used), None)
            if slot is None:
                raise ProviderError(
                    f"{WHAT} has no free backend slot for {route.hostname} ({len(self.provider.backends)} declared)",
                    hint="declare more `backend be_slotN` in haproxy.cfg and list them in providers.route_l4.backends",
                )
        address, _, port = route.backend.rpartition(":")
        await self._cmd(f"set server {slot}/s1 addr {address.strip('[]')} port {port}")
        await self._cmd(f"set server {slot}/s1 state ready")
        verb = "set" if route.hostname in mapping else "add"
        await self._cmd(f"{verb} map {self.provider.map_file} {route.hostname} {slot}")

    async def remove_route(self, listener: int, hostname: str) -> None:
        slot = (await self._map()).get(hostname)
        if slot is None:
            return
        await self._cmd(f"del map {self.provider.map_file} {hostname}")
        await self._cmd(f"set server {slot}/s1 state maint")
