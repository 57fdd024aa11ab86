"""`mcfleet show PLAN`: a plan saved by `mcfleet plan -o`, rendered like `mcfleet plan` prints it."""

from __future__ import annotations

from pathlib import Path

import typer

from mcfleet.cli.output import emit_json, use_color


def show(
    plan_file: Path = typer.Argument(..., help="A plan file written by `mcfleet plan -o`.", metavar="PLAN"),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    show_values: bool = typer.Option(False, "--values", help="Show each action's before/after values."),
) -> None:
    """Render a plan saved by `mcfleet plan -o` (text, or --json).

    Reads only the file: nothing is observed, and staleness is checked by `apply`, not here.

    Examples:

      mcfleet show plan.json

      mcfleet show plan.json --values

      mcfleet show plan.json --json | jq '.actions | length'
    """
    from mcfleet.plan.render import render_text
    from mcfleet.plan.saved import read_plan

    plan = read_plan(plan_file)
    if json_out:
        emit_json(plan.model_dump(mode="json"))
        return
    typer.echo(f"plan {plan_file} (made {plan.created_at or '?'} for {plan.root or '?'})")
    typer.echo(render_text(plan, detailed=show_values, color=use_color()), nl=False)


def register(app: typer.Typer) -> None:
    app.command("show")(show)
