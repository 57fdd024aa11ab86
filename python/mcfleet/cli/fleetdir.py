"""Which fleet a command works on: `-C/--fleet DIR`, `$MCFLEET_FLEET`, or the nearest fleet.json upward.

Like git and colmena, a command run anywhere inside a fleet checkout (e.g. in hosts/rift/)
finds the fleet by walking up to the first folder that holds `fleet.json`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from mcfleet.cli.state import STATE
from mcfleet.errors import InputError

FLEET_FILE = "fleet.json"
ENV_VAR = "MCFLEET_FLEET"


def current_folder() -> Path:
    """The working directory; InputError when it no longer exists (removed while a shell was in it)."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise InputError(
            "the current folder no longer exists (it was removed or moved away)",
            location="fleet folder",
            hint="cd to the fleet folder or use -C DIR",
        ) from None


def find_fleet(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding fleet.json, or None."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / FLEET_FILE).is_file():
            return folder
    return None


def deprecated_folder(given: Path | None, how: str, *, command: str | None = None) -> Path | None:
    """A fleet folder given the old way (positional, --root): still honoured; a person at a terminal gets a note.

    `command` (e.g. "plan") marks a positional: there, a word that is no folder but names hosts of
    the fleet (`mcfleet plan rift`, as `nix run .#deploy -- rift` reads) is refused with the --on
    form, rather than read as a folder that lacks fleet.json.
    """
    if given is not None and command is not None:
        refuse_hosts_as_folder(given, command)
    if given is not None and sys.stderr.isatty():
        print(f"note: {how} is deprecated; use `mcfleet -C {given} …` (or set {ENV_VAR})", file=sys.stderr)
    return given


def refuse_hosts_as_folder(given: Path, command: str, *, other_words: bool = True) -> None:
    """InputError when `given` is no folder while a fleet is found the usual way (-C, $MCFLEET_FLEET, upward).

    A host name or selector gets the --on form; any other word is named as neither, rather than
    read as a folder that lacks fleet.json (`other_words=False`: left to the caller, e.g. apply's
    "no such plan file").
    """
    word = str(given)
    if (given / "host.json").is_file() and not (given / FLEET_FILE).exists():  # e.g. `plan rift` in hosts/
        raise InputError(
            f"{word!r} is a host's folder, not a fleet's; hosts are selected with --on",
            location=f"mcfleet {command} {word}",
            hint=f"run `mcfleet {command} --on {shlex.quote(given.resolve().name)}`",
        )
    if given.exists():
        return
    root = STATE.fleet if STATE.fleet is not None else find_fleet(current_folder())
    selector = any(mark in word for mark in ("@", "*", ",", "!"))
    if root is not None and (selector or (root / "hosts" / word / "host.json").is_file()):
        raise InputError(
            f"{word!r} is not a folder; hosts are selected with --on",
            location=f"mcfleet {command} {word}",
            hint=f"run `mcfleet {command} --on {shlex.quote(word)}`",
        )
    if root is not None and other_words:
        raise InputError(
            f"{word!r} is neither a folder nor a host of the fleet in {root}",
            location=f"mcfleet {command} {word}",
            hint="hosts are selected with --on (`mcfleet hosts` lists them); "
            f"another fleet: `mcfleet -C DIR {command}`",
        )


def fleet_root(given: Path | None = None) -> Path:
    """The fleet folder: `given` (a deprecated alias), else -C/--fleet/$MCFLEET_FLEET, else the upward search.

    An explicit folder is returned as given (a missing fleet.json there is the loader's finding).
    """
    explicit = given if given is not None else STATE.fleet
    if explicit is not None:
        if not explicit.is_absolute():
            current_folder()  # a relative folder is read from the working directory: it must still exist
        return explicit
    cwd = current_folder()
    found = find_fleet(cwd)
    if found is None:
        raise InputError(
            f"no {FLEET_FILE} in {cwd} or any folder above it",
            location="fleet folder",
            hint=f"run mcfleet inside a fleet checkout, pass -C DIR (or set {ENV_VAR}=DIR), "
            "or create a fleet with `mcfleet init DIR`",
        )
    return found
