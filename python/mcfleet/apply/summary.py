"""The final summary of an apply: per host and phase, what happened; and the exit code.

Built from the event log only.  A host's line lists its phases in the order it runs them (a
phase with only removals where those run: after the changes, DNS before routes before containers)
with their outcome; a phase that never ended (the run was cut short) shows as
`skipped`.  Exit code 1 when any phase failed, was rolled back or was blocked
(a rollback is a failure to report, deploy-rs's lesson).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mcfleet.apply.events import ApplyEvents, Event, Phase, Status
from mcfleet.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK


@dataclass(frozen=True)
class PhaseResult:
    phase: Phase
    status: Status
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # wall time from the phase's start event to its end (None: it never started)


@dataclass(frozen=True)
class HostResult:
    host: str
    phases: tuple[PhaseResult, ...]

    @property
    def status(self) -> Status:
        """The host's worst outcome: rolled back > failed > blocked > changed > unchanged > skipped."""
        rank = [Status.rolled_back, Status.failed, Status.blocked, Status.changed, Status.unchanged, Status.skipped]
        found = {p.status for p in self.phases}
        return next((s for s in rank if s in found), Status.skipped)

    @property
    def ok(self) -> bool:
        return not any(p.status.bad for p in self.phases)


@dataclass(frozen=True)
class Summary:
    hosts: tuple[HostResult, ...]
    bytes_sent: int  # agent bundles pushed and a moved service's data (files written by the files phase: not counted)
    files_sent: int  # agent bundles pushed
    seconds: float
    interrupted: bool = False  # stopped at Ctrl-C: the hosts' phases as far as they got
    # (host, phase, why) for each backend the plan could not read: its kind was compared with the manifest
    # alone, so drift there was neither seen nor repaired; shown so that "unchanged" does not hide it
    not_read: tuple[tuple[str, str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(h.ok for h in self.hosts)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.ok else EXIT_FAILURE

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for host in self.hosts:
            out[str(host.status)] = out.get(str(host.status), 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "bytes_sent": self.bytes_sent,
            "files_sent": self.files_sent,
            "hosts": {
                h.host: {
                    "status": str(h.status),
                    "phases": {
                        str(p.phase): {
                            "status": str(p.status),
                            "message": p.message,
                            **({"seconds": round(p.seconds, 3)} if p.seconds is not None else {}),
                        }
                        for p in h.phases
                    },
                    **({"not_read": unread} if (unread := self._not_read(h.host)) else {}),
                }
                for h in self.hosts
            },
        }

    def _not_read(self, host: str) -> dict[str, str]:
        return {phase: why for name, phase, why in self.not_read if name == host}

    def render(self) -> str:
        """The human summary: one block per host, then a totals line."""
        lines = []
        for host in self.hosts:
            lines.append(f"{host.host}: {host.status}")
            rows = [
                (float(i), f"  {p.phase:<9} {p.status!s:<11} {p.message}".rstrip()) for i, p in enumerate(host.phases)
            ]
            rows += [(_place(host, Phase(phase)), f"  {phase:<9} {'not read':<11} {why}")
                     for phase, why in self._not_read(host.host).items()]  # fmt: skip
            lines += [row for _place_at, row in sorted(rows, key=lambda r: r[0])]  # stable
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        lines.append(
            f"{len(self.hosts)} host(s): {counts or 'nothing to do'}; "
            f"{self.files_sent} agent bundle(s) pushed, {self.bytes_sent} bytes sent in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def _place(host: HostResult, phase: Phase) -> float:
    """Where a backend the plan could not read is listed among the host's phases (in the order they ran):
    after its phase's line, or, for a phase that did not run, before the first that comes after it."""
    ran = [p.phase for p in host.phases]
    if phase in ran:
        return ran.index(phase) + 0.5
    later = [i for i, p in enumerate(ran) if p.order > phase.order]
    return (later[0] if later else len(ran)) - 0.5


# Which of a phase's outcomes names it, when it ran more than once: the worst, else the busiest.
_RANK = [Status.rolled_back, Status.failed, Status.blocked, Status.changed, Status.unchanged, Status.skipped]


def _combined(ended: list[Event]) -> Event:
    """One outcome for a phase that ended more than once (its changes, then its removals): the worst
    status, every distinct message (was: the last alone, so `create greet` vanished behind `removed hello`)."""
    if len(ended) == 1:
        return ended[0]
    worst = min(ended, key=lambda e: _RANK.index(e.status) if e.status in _RANK else len(_RANK))
    said = [e.message for e in ended if e.message and e.status != Status.unchanged] or [ended[-1].message]
    data: dict[str, Any] = {}
    for e in ended:
        data.update(e.data)
    return replace(worst, message="; ".join(dict.fromkeys(said)), data=data)


def _took(log: ApplyEvents, host: str, ended: list[Event]) -> float | None:
    """Seconds from each start of the phase to its end, summed (None when it ended without a start)."""
    starts = [e for e in log.events if e.host == host and e.phase == ended[0].phase and e.status == Status.start]
    if not starts:
        return None
    if len(starts) != len(ended):
        return ended[-1].ts - starts[-1].ts
    return sum(end.ts - start.ts for start, end in zip(starts, ended, strict=True))


def summarize(
    log: ApplyEvents, hosts: list[str], phases: list[Phase] | dict[str, list[Phase]], seconds: float
) -> Summary:
    """Per host, the outcome of each phase it was meant to run (a phase that never ended is `skipped`).

    `phases` is one list for every host, or each host's own list.
    """
    results = []
    for host in hosts:
        mine = phases.get(host, []) if isinstance(phases, dict) else phases
        rows = []
        for phase in dict.fromkeys(mine):  # in the order given: the order the host runs them
            ended = log.outcomes(host, phase)
            event = _combined(ended) if ended else None
            if event is None:
                seen = any(e.host == host and e.phase == phase for e in log.events)  # a start or progress
                said = "started, never ended" if seen else "not run"
                rows.append(PhaseResult(phase, Status.skipped, said))
            else:
                rows.append(PhaseResult(phase, event.status, event.message, dict(event.data), _took(log, host, ended)))
        results.append(HostResult(host, tuple(rows)))
    files = sum(1 for e in log.events if e.phase == Phase.push and e.status == Status.changed)
    return Summary(tuple(results), log.total("bytes_sent"), files, seconds)
