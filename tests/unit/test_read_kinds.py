"""The kinds' reads after the facts batch: asked at once, and each read's fields kept in the merge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import ReadContext
from mcfleet.observe.collect import GatherResult, read_kinds
from mcfleet.observe.facts import Facts, Unreachable


class _Kind:
    """A kind whose read sets some fields of its hosts' facts, as the dns, route and service kinds do; with
    `wait_for`, it answers only once the other read has started."""

    def __init__(self, update: dict[str, dict[str, Any]], started: asyncio.Event, wait_for: asyncio.Event) -> None:
        self.update, self.started, self.wait_for = update, started, wait_for

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        self.started.set()
        await asyncio.wait_for(self.wait_for.wait(), timeout=5)  # asked one after the other: never set
        out = dict(facts)
        for host, fields in self.update.items():
            item = out[host]
            out[host] = item.model_copy(update=fields) if isinstance(item, Facts) else item
        return out


def test_the_reads_are_asked_at_once_and_each_keeps_its_fields() -> None:
    observed: GatherResult = {
        "a": Facts(host="a", routes_error="from the batch"),
        "b": Facts(host="b"),
        "c": Unreachable(host="c", reason="down", cause="unreachable"),
    }

    async def run() -> GatherResult:
        dns_started, route_started = asyncio.Event(), asyncio.Event()
        dns = _Kind(
            {"a": {"dns_error": "no answer"}, "b": {"dns": {"x.example": ["10.0.0.1"]}}}, dns_started, route_started
        )
        route = _Kind({"a": {"live_routes": {"443/x": "10.0.0.1:1"}, "routes_error": None}}, route_started, dns_started)
        ctx = ReadContext(LoadedFleet(root=Path("."), fleet=None), {}, None)
        return await read_kinds(ctx, observed, [dns, route])  # type: ignore[list-item]  # the read is all it uses

    merged = asyncio.run(run())
    a = merged["a"]
    assert isinstance(a, Facts)
    assert (a.dns_error, a.live_routes, a.routes_error) == ("no answer", {"443/x": "10.0.0.1:1"}, None)
    assert merged["b"] == Facts(host="b", dns={"x.example": ["10.0.0.1"]}) and merged["c"] is observed["c"]
