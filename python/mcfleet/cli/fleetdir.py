"""Which fleet a command works on: `-C/--fleet DIR`, `$MCFLEET_FLEET`, or the nearest fleet.json upward.

Like git and colmena, a command run anywhere inside a fleet checkout (e.g. in hosts/rift/)
finds the fleet by walking up to the first folder that holds `fleet.json`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcfleet.cli.state import STATE
from mcfleet.errors import InputError

FLEET_FILE = "fleet.json"
ENV_VAR = "MCFLEET_FLEET"


def find_fleet(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding fleet.json, or None."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / FLEET_FILE).is_file():
            return folder
    return None


def deprecated_folder(given: Path | None, how: str) -> Path | None:
    """A fleet folder given the old way (positional, --root): still honoured; a person at a terminal gets a note."""
    if given is not None and sys.stderr.isatty():
        print(f"note: {how} is deprecated; use `mcfleet -C {given} …` (or set {ENV_VAR})", file=sys.stderr)
    return given


def fleet_root(given: Path | None = None) -> Path:
    """The fleet folder: `given` (a deprecated alias), else -C/--fleet/$MCFLEET_FLEET, else the upward search.

    An explicit folder is returned as given (a missing fleet.json there is the loader's finding).
    """
    if given is not None:
        return given
    if STATE.fleet is not None:
        return STATE.fleet
    cwd = Path.cwd()
    found = find_fleet(cwd)
    if found is None:
        raise InputError(
            f"no {FLEET_FILE} in {cwd} or any folder above it",
            location="fleet folder",
            hint=f"run mcfleet inside a fleet checkout, pass -C DIR (or set {ENV_VAR}=DIR), "
            "or create a fleet with `mcfleet init DIR`",
        )
    return found
