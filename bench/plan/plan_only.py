"""`mcfleet plan` with only the plan command registered: what plan costs without the
start-up imports of every other command (cli/main.py imports all of them eagerly).

    .venv/bin/python bench/plan/plan_only.py FLEET_DIR --json
"""

from __future__ import annotations

import sys

import typer

from mcfleet.cli import commands_plan

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
commands_plan.register(app)
app.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps the `plan` sub-command name

if __name__ == "__main__":
    try:
        app(args=["plan", *sys.argv[1:]], standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
