"""Numeric options of the commands that reach hosts, checked when the command line is parsed.

A value no run can work with is a usage error (exit 2) that names the option, not a hang or an
internal error later: `--parallel 0` would make every host wait for a free slot forever,
asyncssh reads a connect timeout of 0 as no timeout at all and refuses a negative one with a
ValueError, and a health check or a command given no time can only fail.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer


def more_than_zero(value: float) -> float:
    """A number of seconds that leaves time to do something: finite and above 0."""
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter("Input should be a number of seconds greater than 0")
    return value


def zero_or_more(value: float) -> float:
    """0 (no limit) or a finite number of seconds."""
    if not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter("Input should be 0 (no limit) or a number of seconds greater than 0")
    return value


def agent_pex(value: Path | None) -> Path | None:
    """--bundle: a file that is a PEX (a zip archive with PEX-INFO at its root), checked before any host
    is touched: pushed, anything else would replace the agent, fail its health check and roll back."""
    if value is None:
        return None
    import zipfile

    try:
        with zipfile.ZipFile(value) as archive:
            archive.getinfo("PEX-INFO")
    except FileNotFoundError:
        raise typer.BadParameter(f"{value}: no such file") from None
    except (OSError, zipfile.BadZipFile, KeyError):
        raise typer.BadParameter(
            f"{value} is not an agent PEX (a zip archive with PEX-INFO): build one with "
            "`python -m mcfleet.bundle --out DIR`, or leave --bundle out and mcfleet builds it"
        ) from None
    return value


CONNECT = typer.Option(
    10.0,
    "--connect-timeout",
    callback=more_than_zero,
    help="Seconds per address before trying the next.",
    metavar="SECONDS",
)
HEALTH = typer.Option(
    60.0,
    "--health-timeout",
    callback=more_than_zero,
    help="Seconds for the new agent to answer its health check.",
    metavar="SECONDS",
)
DEADMAN = typer.Option(
    0,
    "--confirm-timeout",
    min=0,
    help="Seconds before an unconfirmed node rolls back (0: health+60).",
    metavar="SECONDS",
)
PARALLEL = typer.Option(
    4,
    "--parallel",
    min=1,
    help="Hosts pushed, activated, or in a cert/DNS/route step at once (deploy: by stage).",
    metavar="N",
)
STAGE_TIMEOUT = typer.Option(
    0.0,
    "--stage-timeout",
    min=0.0,
    max=3600.0,
    help="Seconds each boot stage of a deploy may take to get healthy (0: the agent's own, 120 s); a changed "
    "definition that does not is put back on the previous one.",
    metavar="SECONDS",
)
COMMAND_TIMEOUT = typer.Option(
    0.0, "--timeout", callback=zero_or_more, help="Seconds per host before giving up (0: no limit).", metavar="SECONDS"
)
OVERRIDE = typer.Option([], "--override", help="Run despite the refusal HOST:WHAT (repeatable).", metavar="HOST:WHAT")
