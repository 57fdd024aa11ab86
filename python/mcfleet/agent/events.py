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


@dataclass
class BootStatus:
    state: str = "pending"  # pending | running | ok | failed | superseded (gave way to a deploy)
    stage: str = ""
    error: str = ""
    finished_at: float = 0.0
    what: str = ""  # the sequence: boot (agent start) or recover


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
