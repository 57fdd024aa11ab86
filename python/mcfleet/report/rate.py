"""How often a long step reports: the first report and the last one always, in between at most one per interval.

A push reports every SFTP block and `nix build -L` every log line; a person at a terminal
and a log file both want a line a second or so, and the JSON event stream the same.
"""

from __future__ import annotations

import time

PROGRESS_INTERVAL = 1.0  # seconds between two progress reports of one step


class Every:
    def __init__(self, seconds: float = PROGRESS_INTERVAL) -> None:
        self.seconds = seconds
        self.last: float | None = None

    def due(self, *, force: bool = False) -> bool:
        """True when a report should go out now (and counts it as sent)."""
        now = time.monotonic()
        if force or self.last is None or now - self.last >= self.seconds:
            self.last = now
            return True
        return False


def megabytes(done: int, total: int) -> str:
    """`12.3/22.0 MB`."""
    return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
