"""Commands that read only the files: validate, hosts, render, schema."""

from __future__ import annotations

from pathlib import Path

import typer

from mcfleet.cli.output import emit_json
from mcfleet.errors import EXIT_INVALID
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.fleet.schema import render_schemas, write_schemas

ROOT_ARG = typer.Argument(Path("."), help="The fleet's root folder (holds fleet.json and hosts/).")


def validate(
    path: Path = ROOT_ARG,
    json_out: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check every host and service file, then the fleet-wide rules.

    Exit 0 when valid, 2 when there are findings.

    Examples:

      mcfleet validate

      mcfleet validate ./fleet --json | jq '.findings[].code'
    """
    loaded = load_fleet(path)
    findings = check(loaded)
    if json_out:
        emit_json(
            {
                "root": str(loaded.root),
                "valid": not findings,
                "hosts": sorted(loaded.hosts),
                "findings": [f.as_dict() for f in findings],
            }
        )
    elif findings:
        for finding in findings:
            typer.echo(finding.format(), err=True)
        typer.echo(f"{len(findings)} problem(s) in {loaded.root}", err=True)
    else:
        services = sum(len(e.services) for e in loaded.hosts.values())
        typer.echo(f"ok: {len(loaded.hosts)} hosts, {services} services valid")
    if findings:
        raise typer.Exit(EXIT_INVALID)


def schema_dump(
    out: Path = typer.Option(Path("schemas"), "--out", "-o", help="Folder to write the schemas to."),
    check_only: bool = typer.Option(False, "--check", help="Exit 1 if the files in --out differ from the models."),
) -> None:
    """Write the JSON Schemas generated from the models (fleet, host, service).

    Examples:

      mcfleet schema dump

      mcfleet schema dump --check    # CI: fail when schemas/ drifted
    """
    if check_only:
        stale = [n for n, t in render_schemas().items() if not (out / n).exists() or (out / n).read_text() != t]
        if stale:
            typer.echo(f"schemas out of date: {', '.join(stale)}\n  hint: run `mcfleet schema dump`", err=True)
            raise typer.Exit(1)
        typer.echo("schemas up to date")
        return
    for path in write_schemas(out):
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    schema = typer.Typer(help="JSON Schemas of the fleet files.", no_args_is_help=True)
    schema.command("dump")(schema_dump)
    app.add_typer(schema, name="schema")
