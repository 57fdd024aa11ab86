"""Live per-host progress: a rich table on a terminal, plain prefixed lines otherwise.

Small on purpose, shared by `plan` and `apply`:

    with make_progress(title="gathering facts") as progress:
        progress.update("rift", "connecting")
        progress.done("rift", ok=True, detail="debian 12 amd64")

Lines go to stderr so stdout stays clean for `--json`.  Without a TTY each
update is one line `[host] status: detail`, in the order events happen.  A status
or detail may quote a node: its control characters are shown escaped (util/terminal_text.py).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from mcfleet.util.terminal_text import terminal_safe

if TYPE_CHECKING:
    from rich.table import Table


class Progress:
    """Plain-line progress (also the base for the live view)."""

    def __init__(self, stream: TextIO | None = None, *, title: str = "") -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self.rows: dict[str, tuple[str, str, float, bool | None]] = {}
        self.started = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def update(self, host: str, status: str, detail: str = "") -> None:
        status, detail = terminal_safe(status), terminal_safe(detail)
        self.rows[host] = (status, detail, time.monotonic(), None)
        self._line(host, status, detail)

    def done(self, host: str, *, ok: bool, detail: str = "") -> None:
        status, detail = "ok" if ok else "FAILED", terminal_safe(detail)
        self.rows[host] = (status, detail, time.monotonic(), ok)
        self._line(host, status, detail)

    def _line(self, host: str, status: str, detail: str) -> None:
        self.stream.write(f"[{host}] {status}{': ' + detail if detail else ''}\n")
        self.stream.flush()

    def close(self) -> None:
        return None


class LiveProgress(Progress):
    """One table row per host, redrawn in place (rich)."""

    def __init__(self, stream: TextIO | None = None, *, title: str = "") -> None:
        super().__init__(stream, title=title)
        from rich.console import Console  # only on a terminal: rich costs start-up time
        from rich.live import Live

        # get_renderable: redrawn at every refresh, so a long step's clock keeps running between updates
        self.live = Live(
            console=Console(file=self.stream),
            refresh_per_second=4,
            transient=False,
            get_renderable=self._table,
        )
        self.live.start()

    def _line(self, host: str, status: str, detail: str) -> None:
        self.live.refresh()  # every update is drawn (steps report at most once a second each)

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(title=self.title or None, show_header=False, box=None, pad_edge=False)
        now = time.monotonic()
        for host, (status, detail, at, ok) in sorted(self.rows.items()):
            style = "green" if ok else "red" if ok is False else "yellow"
            clock = at if ok is not None else now  # a host still working: its clock runs
            table.add_row(host, f"[{style}]{status}[/{style}]", detail, f"{clock - self.started:.1f}s")
        return table

    def close(self) -> None:
        self.live.refresh()
        self.live.stop()


class NullProgress(Progress):
    def _line(self, host: str, status: str, detail: str) -> None:
        return None


def make_progress(stream: TextIO | None = None, *, title: str = "", quiet: bool = False) -> Progress:
    stream = stream or sys.stderr
    if quiet:
        return NullProgress(stream, title=title)
    if stream.isatty():
        return LiveProgress(stream, title=title)
    return Progress(stream, title=title)
