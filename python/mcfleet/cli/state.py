"""Process-wide CLI flags (--debug, -C/--fleet); library code never reads this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliState:
    debug: bool = False
    no_color: bool = False
    fleet: Path | None = None  # -C/--fleet DIR or $MCFLEET_FLEET; None: search upward from the current folder


STATE = CliState()
