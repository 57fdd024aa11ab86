"""`mcfleet plan`'s plain forms parsed without typer (typer and its parameter set-up: ~70 M instructions).

Only what typer would accept and read the same way is taken; any other form (a help flag, an
unknown or repeated option, a missing or dash-led value, `-oFILE`, an unusual number or 0, the
deprecated folder argument) gives None, and the command goes through typer, which answers it
(usage errors included) as always.  tests/unit/test_plan_fast.py holds both parsers to the same
result for every form this one takes, and to None for the others.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FLAGS = {"--json": "json_out", "--detailed-exitcode": "detailed_exitcode", "--values": "show_values"}
REPEATED = {"--on": "on", "--skip": "skip"}
SINGLE = {"-o": "out", "--out": "out", "--connect-timeout": "connect_timeout"}
# a number click's FLOAT reads exactly as float() does; other spellings ("1e3", "inf", " 5") go to typer
PLAIN_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


# Plain tuples, not NamedTuples: creating a NamedTuple class costs ~4 M instructions at import.
# (debug, no_color, fleet): the global options
Globals = tuple[bool, bool, Path | None]
# run_plan's parameters in its order, as typer gives them:
# (path, on, out, json_out, detailed_exitcode, show_values, connect_timeout, skip)
PlanArgs = tuple[Path | None, list[str] | None, Path | None, bool, bool, bool, float, list[str]]


def parse_globals(argv: list[str], command: str) -> tuple[Globals, list[str]] | None:
    """`[--debug] [--no-color] [-C DIR | --fleet DIR | --fleet=DIR] COMMAND ...`: (globals, the words after it)."""
    fleet = os.environ.get("MCFLEET_FLEET") or None
    debug = no_color = False
    i = 0
    while i < len(argv) and argv[i] != command:
        arg = argv[i]
        if arg == "--debug":
            debug = True
        elif arg == "--no-color":
            no_color = True
        elif arg in ("-C", "--fleet") and i + 1 < len(argv) and argv[i + 1]:
            fleet, i = argv[i + 1], i + 1
        elif arg.startswith("--fleet=") and len(arg) > len("--fleet="):
            fleet = arg.partition("=")[2]
        else:
            return None
        i += 1
    if i == len(argv):
        return None
    return (debug, no_color, Path(fleet) if fleet else None), argv[i + 1 :]


def _option_values(rest: list[str]) -> dict[str, object] | None:
    values: dict[str, object] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        name, eq, given = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in FLAGS and not eq:
            if FLAGS[name] in values:
                return None
            values[FLAGS[name]] = True
        elif name in REPEATED or name in SINGLE:
            if not eq:
                if i + 1 == len(rest):
                    return None
                given, i = rest[i + 1], i + 1
            if not given or given.startswith("-"):
                return None
            key = REPEATED.get(name) or SINGLE[name]
            if name in REPEATED:
                values.setdefault(key, [])
                values[key].append(given)  # type: ignore[attr-defined]
            elif key in values:
                return None
            else:
                values[key] = given
        else:
            return None
        i += 1
    return values


def parse(argv: list[str]) -> tuple[Globals, PlanArgs] | None:
    """The global options and the plan's parameters, or None: typer parses this form."""
    found = parse_globals(argv, "plan")
    if found is None:
        return None
    globals_, rest = found
    values = _option_values(rest)
    if values is None:
        return None
    timeout = str(values.get("connect_timeout", "10.0"))
    if not PLAIN_NUMBER.match(timeout) or float(timeout) == 0:  # 0: typer refuses it (cli/options.py)
        return None
    out = values.get("out")
    on = values.get("on")
    skip = values.get("skip", [])
    assert on is None or isinstance(on, list)
    assert isinstance(skip, list)
    args: PlanArgs = (
        None,  # the deprecated folder argument: typer's
        on,
        Path(str(out)) if out is not None else None,
        bool(values.get("json_out", False)),
        bool(values.get("detailed_exitcode", False)),
        bool(values.get("show_values", False)),
        float(timeout),
        skip,
    )
    return globals_, args
