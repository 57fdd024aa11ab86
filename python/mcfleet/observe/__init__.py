"""Observation: facts from the real nodes (one SSH round trip each) and from the providers.

    from mcfleet.observe import gather
    facts = await gather(loaded, hosts, pool=None, progress=None)  # dict[host, Facts | Unreachable]

Implemented in `observe.collect`; imported lazily here so that `plan.desired`
(which observe uses) can import observe's small modules without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcfleet.observe.collect import gather as gather

__all__ = ["gather"]


def __getattr__(name: str) -> Any:
    if name == "gather":
        from mcfleet.observe.collect import gather

        return gather
    raise AttributeError(name)
