"""The DNS provider interface: A records of the fleet's zone (and stray AAAA records at its names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mcfleet.observe.dns import ZoneAnswers
    from mcfleet.providers.base import ProviderError


class DnsBackend(Protocol):
    zone: str
    ttl: int

    async def answers(self, names: list[str]) -> dict[str, list[str]]:
        """name -> the A values the server holds now ([] when none)."""
        ...

    async def answers_full(self, names: list[str]) -> ZoneAnswers:
        """The A answers, the TTL the server holds them with, the target of a CNAME held at a name (no A
        record can sit beside a CNAME: the server ignores or refuses one) and the AAAA values at a name."""
        ...

    async def delete_aaaa(self, name: str, values: list[str]) -> None:
        """Remove these AAAA values of `name` (its others stay)."""
        ...

    async def set_a(self, name: str, address: str) -> None:
        """Make `name` answer exactly `address` (create or replace)."""
        ...

    async def delete_a(self, name: str) -> None:
        """Remove the A record(s) of `name` (nothing when there are none)."""
        ...

    async def key_refusal(self) -> ProviderError | None:
        """Why the server would refuse every change (it rejects mcfleet's credential, or the credential's
        file cannot be read), asked before a plan lists record changes; None when it would take them, or
        when it does not answer (the read of the records says so)."""
        ...


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)
