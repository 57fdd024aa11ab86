"""What the agent did, in order: an in-memory log (served in Facts) mirrored to the agent log.

Events carry a sequence number so a caller can see the order things happened in, e.g. that
the foundation stage was healthy before any core container was started.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("mcfleet.agent")


@dataclass
class Event:
    seq: int
    time: float
    kind: str  # stage-start | stage-healthy | stage-failed | create | recreate | start | stop | remove | ...
    message: str
    stage: str = ""
    service: str = ""
    component: str = ""


# A failed boot is tried again after 5 s, then 10, 20, ... up to every 5 minutes: a quick retry
# catches what was merely late, and a long outage costs one podman ping and an image check a while.
BOOT_RETRY_S = 5.0
BOOT_RETRY_MAX_S = 300.0


@dataclass
class BootStatus:
    state: str = "pending"  # pending | running | ok | failed | superseded (gave way to a deploy)
    stage: str = ""
    error: str = ""
    finished_at: float = 0.0
    what: str = ""  # the sequence: boot (agent start) or recover
    attempt: int = 1  # a failed boot is tried again (Reconciler.boot_until_healthy)
    retry_at: float = 0.0  # when the next attempt starts (time.time()); 0: none is due


@dataclass
class EventLog:
    limit: int = 2000
    _events: deque[Event] = field(default_factory=deque)
    _seq: int = 0

    def add(self, kind: str, message: str, *, error: bool = False, **where: str) -> Event:
        self._seq += 1
        event = Event(self._seq, time.time(), kind, message, **where)
        self._events.append(event)
        while len(self._events) > self.limit:
            self._events.popleft()
        scope = "/".join(v for v in (where.get("stage"), where.get("service"), where.get("component")) if v)
        (log.error if error else log.info)("%s%s: %s", kind, f" [{scope}]" if scope else "", message)
        return event

    def recent(self, count: int = 200) -> list[dict[str, Any]]:
        return [asdict(e) for e in list(self._events)[-count:]]


def boot_text(state: str, stage: str, *, what: str = "", attempt: int = 0, retry_at: float = 0.0, now: float) -> str:
    """The agent's boot sequence in a few words while it has not ended healthy: "failed at stage core, next
    try in 35 s (attempt 3)", "running stage core (attempt 2)"; '' once it is ok, gave way to a deploy, or
    was a recover.  An older agent says neither `what` nor the attempts ('', 0)."""
    if what not in ("", "boot"):
        return ""
    tries = f" (attempt {attempt})" if attempt > 1 else ""
    if state == "failed":
        when = f", next try in {max(0, round(retry_at - now))} s" if retry_at else ""
        return f"failed at stage {stage or '?'}{when}{tries}"
    if state == "running" and tries:
        return f"running stage {stage or '?'}{tries}"
    return ""
