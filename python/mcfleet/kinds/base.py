"""The shape every resource kind has: read, diff, apply, record.

A resource kind (host, agent, service, cert, dns, route, ...) is one object that
knows one kind of thing on a node or at a provider:

- `read(ctx, facts)`: what it needs to observe beyond the host's one-batch facts
  (the facts script already read users, agent files, manifest, ...), one batch per
  host or per provider, added to the facts (`Facts.model_copy(update=...)`);
  `read_early(ctx, host)`: the part of it the files alone call for, started beside
  the host's facts script (`read` then takes its answer from `ctx.early`);
- `diff(desired, facts, manifest, now)`: pure, the actions that would make the node
  match the files, each with before/after values and a reason;
- `apply(ctx, actions)`: carry out exactly those actions on one host, idempotent;
- `record(manifest, ctx, actions)`: the kind's part of the one typed manifest after
  apply (what the node has now).

`plan` runs every kind's read and diff; `apply` runs the same actions through the
same kinds' apply and record.  A kind whose backend is not configured says so once
per host (`blocked`): the plan shows that line and no actions apply could not do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.observe.facts import Facts, Unreachable
from mcfleet.observe.manifest import Manifest
from mcfleet.phase import Phase
from mcfleet.plan.model import Action
from mcfleet.transport.base import Node

if TYPE_CHECKING:
    from mcfleet.transport.ssh import SshPool

GatherResult = dict[str, Facts | Unreachable]


@dataclass(frozen=True)
class ReadContext:
    """What a kind's read sees: the fleet, the desired hosts and the connections."""

    loaded: LoadedFleet
    desired: Mapping[str, DesiredHost]
    pool: SshPool | None  # None for reads that need no node connection
    # kind name -> host -> that kind's read of the host's node, started while its facts script ran
    early: dict[str, dict[str, asyncio.Future[Any]]] = field(default_factory=dict)

    def early_read(self, kind: str, host: str) -> asyncio.Future[Any] | None:
        return self.early.get(kind, {}).get(host)


# ApplyContext.data key: phase -> the host's desired state narrowed to what that phase put in place
# before it failed (a kind that records its whole desired set is recorded after a failure with it).
MADE = "made"
PLANNED = "planned"  # ctx.data: every action of this host's apply, all phases (the pipeline sets it)


@dataclass
class ApplyContext:
    """One host's apply: what the kinds' apply and record see."""

    loaded: LoadedFleet  # the fleet (providers, zone) for kinds that need more than their host
    entry: HostEntry
    node: Node
    desired: DesiredHost
    manifest: Manifest  # as read at the start of this host's apply
    data: dict[str, Any] = field(default_factory=dict)  # values a kind's apply hands to its record


@dataclass(frozen=True)
class Outcome:
    """How a kind's apply on one host ended."""

    status: str  # "changed" | "unchanged" | "failed" | "skipped" | "blocked"
    message: str = ""


class ResourceKind(Protocol):
    name: str
    phase: Phase  # the plan phase of its actions (and the apply phase of its events)
    # True when record() writes the desired set as a whole rather than what apply did: after a failed
    # run such a kind is recorded if its own phase succeeded, or else with the part it left under MADE.
    records_desired_set: bool

    def blocked(self, loaded: LoadedFleet) -> str | None:
        """Why this kind cannot act in this fleet (backend not configured), or None."""
        ...

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        """The facts given, with this kind's own fields of a host replaced (`model_copy(update=…)`): the
        reads run at once and are merged field by field (observe.collect.merge_reads)."""
        ...

    def read_early(self, ctx: ReadContext, host: str) -> Coroutine[Any, Any, Any] | None:
        """This kind's read of one host's node when the files alone say `read` will make it (None
        otherwise): started as soon as the host is connected, beside its facts script (observe.collect),
        and taken by `read` from `ctx.early_read(kind, host)` instead of asking again.  Only reads that
        change nothing on the node: when the facts then say the read is not wanted, its answer is dropped."""
        ...

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]: ...

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome: ...

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest: ...


class NoRead:
    """Mixin for kinds whose facts come from the host's facts batch alone."""

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        return facts

    def read_early(self, ctx: ReadContext, host: str) -> Coroutine[Any, Any, Any] | None:
        return None


def action(d: DesiredHost, phase: Phase, kind: str, subject: str, reason: str, **values: Any) -> Action:
    return Action(host=d.name, phase=phase, kind=kind, subject=subject, reason=reason, **values)
