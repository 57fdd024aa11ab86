"""The route provider interface: (listener, hostname) -> backend on one proxy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProxyRoute:
    """A route as a proxy provider serves it."""

    listener: int
    hostname: str
    backend: str  # address:port
    mode: str  # l4 | l7 | re-encrypt
    cert: str = ""  # PEM paths on the proxy's node (l7, re-encrypt)
    key: str = ""
    # what on the proxy takes this route's requests before it, in words ("" when nothing does)
    shadowed_by: str = ""

    @property
    def key_id(self) -> str:
        return f"{self.listener}/{self.hostname}"


class RouteBackend(Protocol):
    async def list_routes(self) -> dict[str, ProxyRoute]:
        """The routes the proxy serves now, keyed `<listener>/<hostname>`."""
        ...

    async def add_route(self, route: ProxyRoute) -> None:
        """Create the route or replace the one with the same key (idempotent)."""
        ...

    async def remove_route(self, listener: int, hostname: str) -> None:
        """Remove it; nothing when the proxy has no such route."""
        ...
