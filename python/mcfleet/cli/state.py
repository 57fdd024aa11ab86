"""Process-wide CLI flags (only --debug); library code never reads this."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliState:
    debug: bool = False


STATE = CliState()
