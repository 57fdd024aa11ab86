"""The DNS provider interface: A records of the fleet's zone."""

from __future__ import annotations

from typing import Protocol


class DnsBackend(Protocol):
    zone: str
    ttl: int

    async def answers(self, names: list[str]) -> dict[str, list[str]]:
        """name -> the A values the server holds now ([] when none)."""
        ...

    async def set_a(self, name: str, address: str) -> None:
        """Make `name` answer exactly `address` (create or replace)."""
        ...

    async def delete_a(self, name: str) -> None:
        """Remove the A record(s) of `name` (nothing when there are none)."""
        ...


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)
