"""Printing data: JSON for machines; text and tables for people (colour only on a terminal)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from mcfleet.cli.echo import echo
from mcfleet.cli.state import STATE
from mcfleet.util.terminal_text import terminal_safe


def emit_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def use_color(stream: Any = None) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (any value) or --no-color."""
    stream = stream or sys.stdout
    if STATE.no_color or os.environ.get("NO_COLOR", "") != "":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table for a terminal or a pipe: rich lays it out, no borders, never truncated.

    A cell's control characters are shown escaped (util/terminal_text.py): cells hold what nodes said."""
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, header_style="bold" if use_color() else "")
    for head in headers:
        grid.add_column(head, overflow="fold", no_wrap=False)
    for row in rows:
        grid.add_row(*("-" if cell is None or cell == "" else terminal_safe(str(cell)) for cell in row))
    console = Console(
        width=None if use_color() else 10_000,  # a pipe gets whole lines, a terminal its own width
        force_terminal=use_color(),
        no_color=not use_color(),
        highlight=False,
    )
    with console.capture() as capture:
        console.print(grid)
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"
