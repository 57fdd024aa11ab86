"""Post-activation steps: deploy (containers) → cert → DNS → route (SPEC §6).

Each step is a `Step`: it runs on one host after the agent is active and healthy,
sees the host's entry, its connection and the manifest being built, and returns
an outcome.  The pipeline runs the registered steps in `Phase` order; a step that
fails stops the later steps on that host (they are reported `skipped`).  Later
work registers its steps in `STEPS`; until then the pipeline runs the agent phase
only and the summary shows no post-activation phases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mcfleet.apply.events import Phase
from mcfleet.apply.nodeio import Node
from mcfleet.fleet.load import HostEntry


@dataclass
class StepContext:
    entry: HostEntry
    node: Node
    manifest: dict[str, Any]  # the manifest being written at the end; steps update their part
    data: dict[str, Any] = field(default_factory=dict)  # free for steps to pass values on


@dataclass(frozen=True)
class StepOutcome:
    status: str  # "changed" | "unchanged" | "failed" | "skipped"
    message: str = ""


class Step(Protocol):
    phase: Phase

    async def run(self, ctx: StepContext) -> StepOutcome: ...


# Registered post-activation steps, in any order (the pipeline sorts them by phase).
STEPS: list[Step] = []
