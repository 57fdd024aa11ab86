"""The event stream of an apply: every step on every host says when it starts and how it ends.

Events are the one record of what happened.  The live progress view, the NDJSON
stream of `--json`, the final summary and the journal are all built from them, so
they cannot disagree.  An event is plain data (host, phase, status, message, data);
`data` carries numbers such as bytes pushed, never secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import IO, Any

from mcfleet.apply.journal import redact
from mcfleet.phase import PHASE_ORDER, Phase

__all__ = ["PHASE_ORDER", "ApplyEvents", "Event", "Listener", "Phase", "Status", "ndjson_writer"]


class Status(StrEnum):
    """`start`/`progress` are live; the others end a phase on a host."""

    start = "start"
    progress = "progress"
    changed = "changed"  # did something
    unchanged = "unchanged"  # already as wanted: nothing done, nothing sent
    skipped = "skipped"  # not run (an earlier phase failed, --fail-fast, nothing to do for it yet)
    blocked = "blocked"  # cannot run on this machine (e.g. NixOS build without nixpkgs)
    failed = "failed"
    rolled_back = "rolled back"

    @property
    def terminal(self) -> bool:
        return self not in (Status.start, Status.progress)

    @property
    def bad(self) -> bool:
        """Outcomes that make the apply exit 1: a rollback is a failure to report."""
        return self in (Status.failed, Status.rolled_back, Status.blocked)


@dataclass(frozen=True)
class Event:
    host: str
    phase: Phase
    status: Status
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["phase"] = str(self.phase)
        out["status"] = str(self.status)
        return dict(redact(out))

    def line(self) -> str:
        """One plain, prefixed line for logs and non-TTY output."""
        text = f"[{self.host}] {self.phase}: {self.status}"
        return f"{text}: {self.message}" if self.message else text


Listener = Callable[[Event], None]


class ApplyEvents:
    """Collects events and hands each to the listeners (progress view, NDJSON writer)."""

    def __init__(self, listeners: list[Listener] | None = None) -> None:
        self.events: list[Event] = []
        self.listeners: list[Listener] = list(listeners or [])

    def emit(self, host: str, phase: Phase, status: Status, message: str = "", **data: Any) -> Event:
        event = Event(host, phase, status, message, data)
        self.events.append(event)
        for listener in self.listeners:
            listener(event)
        return event

    def outcome(self, host: str, phase: Phase) -> Event | None:
        """The event that ended `phase` on `host` (the last terminal one), if any."""
        for event in reversed(self.events):
            if event.host == host and event.phase == phase and event.status.terminal:
                return event
        return None

    def outcomes(self, host: str, phase: Phase) -> list[Event]:
        """Every event that ended `phase` on `host`, in order: a phase runs twice when a host has both
        changes and removals in it (the changes first; the removals after the later phases' changes)."""
        return [e for e in self.events if e.host == host and e.phase == phase and e.status.terminal]

    def started(self, host: str, phase: Phase) -> Event | None:
        """The event that started `phase` on `host` (the last `start`), if any."""
        for event in reversed(self.events):
            if event.host == host and event.phase == phase and event.status == Status.start:
                return event
        return None

    def count(self, status: Status | None = None, phase: Phase | None = None) -> int:
        return sum(
            1
            for e in self.events
            if (status is None or e.status == status) and (phase is None or e.phase == phase) and e.status.terminal
        )

    def total(self, key: str) -> int:
        """Sum of a numeric data field over all events (e.g. `bytes_sent`)."""
        return sum(int(e.data.get(key, 0)) for e in self.events)


def ndjson_writer(stream: IO[str]) -> Listener:
    """A listener writing one JSON object per line, flushed at once (machines read it live)."""

    def write(event: Event) -> None:
        stream.write(json.dumps({"type": "event", **event.as_dict()}, default=str) + "\n")
        stream.flush()

    return write
