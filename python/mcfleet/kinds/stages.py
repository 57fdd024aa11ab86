"""Boot stages across the fleet: every host's foundation services before any host's core, and so on.

The service kind deploys stage by stage; before a host starts a stage it waits at the
gate until every host taking part has finished the earlier stages.  A stage that failed
on any host ends the sequence: the later stages of every host are skipped, with the
host and stage that failed as the reason.  A host that leaves the apply early (its
agent failed to activate, say) withdraws, so nobody waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from mcfleet.fleet.models import Stage

STAGES: tuple[Stage, ...] = tuple(Stage)


class StageGate:
    def __init__(self, hosts: Iterable[str]) -> None:
        self.pending: dict[Stage, set[str]] = {stage: set(hosts) for stage in STAGES}
        self.failed: list[str] = []  # "<stage> on <host>: <why>"
        self.changed = asyncio.Condition()

    async def ready(self, stage: Stage) -> str | None:
        """Wait until every host finished the stages before `stage`; the failure that stops it, if any."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.failed or all(not self.pending[s] for s in STAGES[: stage.order]))
        return self.failed[0] if self.failed else None

    async def done(self, host: str, stage: Stage, error: str | None = None) -> None:
        async with self.changed:
            if error is not None:
                self.failed.append(f"stage {stage} failed on {host}: {error}")
            self.pending[stage].discard(host)
            self.changed.notify_all()

    async def withdraw(self, host: str) -> None:
        async with self.changed:
            for waiting in self.pending.values():
                waiting.discard(host)
            self.changed.notify_all()
