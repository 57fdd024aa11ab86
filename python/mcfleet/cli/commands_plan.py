"""`mcfleet plan`: its options as typer parses them (the work: cli/plan_run.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from mcfleet.cli.options import CONNECT
from mcfleet.cli.plan_run import bundle_hashes, exit_code, kinds_kept, mark_skipped, run_plan, select
from mcfleet.cli.targets import ON_OPT

__all__ = ["bundle_hashes", "exit_code", "kinds_kept", "mark_skipped", "plan", "register", "select"]

# The work is cli/plan_run.py's (no typer there: cli/plan_fast.py runs the plain forms without it).

# Deprecated: the fleet folder as an argument (use the global -C DIR); hidden from --help.
ROOT_ARG = typer.Argument(None, hidden=True, show_default=False)


def plan(  # noqa: PLR0917 (typer maps parameters to options)
    path: Path | None = ROOT_ARG,
    on: list[str] | None = ON_OPT,
    out: Path | None = typer.Option(
        None, "-o", "--out", help="Save the plan (JSON) for `mcfleet apply PLAN`.", metavar="FILE"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON (same data as the text view)."),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when changes are pending (0: none, 1: error)."
    ),
    show_values: bool = typer.Option(False, "--values", help="Show each action's before/after values."),
    connect_timeout: float = CONNECT,
    skip: list[str] = typer.Option(
        [],
        "--skip",
        help="Leave a kind out of the plan: host, agent, files, deploy, cert, dns or route (repeatable). "
        "The facts are gathered all the same; the plan lists the kind as not planned and cannot be saved.",
        metavar="KIND",
    ),
) -> None:
    """Observe the selected hosts and show what `apply` would change.

    Symbols: + create, ~ update, - delete, -/+ replace, ! refuse.  Exit codes: 0 no
    changes, 1 error (unreachable hosts are listed; refusals count as errors),
    2 changes pending (only with --detailed-exitcode; there a backend that was not
    read, so drift unknown, is 1 too).

    Examples:

      mcfleet plan

      mcfleet plan --on rift,@edge --values

      mcfleet plan -o plan.json && mcfleet apply plan.json

      mcfleet plan --json | jq '.actions[] | select(.kind == "refuse")'

      mcfleet plan --skip agent      # hosts without systemd (e.g. the lab's fast nodes)
    """
    code = run_plan(path, on, out, json_out, detailed_exitcode, show_values, connect_timeout, skip)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
