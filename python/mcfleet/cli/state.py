"""Process-wide CLI flags (--debug, --no-color, -C/--fleet); library code never reads this.

A plain class, not a dataclass: `mcfleet --help` imports this module, and `dataclasses`
costs more start-up than the whole help text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class CliState:
    def __init__(self) -> None:
        self.debug = False
        self.no_color = False
        self.fleet: Path | None = None  # -C/--fleet DIR or $MCFLEET_FLEET; None: search upward from the cwd


STATE = CliState()
