"""`mcfleet forget`: stop a plan's `gone from hosts/` notice for hosts whose folder was deleted."""

from __future__ import annotations

import typer

from mcfleet.cli.complete import complete_gone_host
from mcfleet.cli.fleetdir import fleet_root
from mcfleet.cli.output import emit_json
from mcfleet.errors import InputError


def forget(
    hosts: list[str] = typer.Argument(
        ..., help="The gone hosts to stop listing.", metavar="HOST", autocompletion=complete_gone_host
    ),
    json_out: bool = typer.Option(False, "--json", help="Print what was forgotten as JSON."),
) -> None:
    """Stop listing a host whose folder left hosts/ (a plan's `gone`); nothing on its node changes.

    A plan lists, under `gone from hosts/`, each host whose folder was deleted while its node still
    held services, DNS records or routes that mcfleet made: nothing plans that host's node again, so
    they stay (its DNS records at the server are removed by an apply of the whole fleet).  Once you
    have dealt with them (the node is wiped), forget the host: the notice ends and nothing is changed
    anywhere.  To have mcfleet remove them instead, restore the folder, take its services away,
    apply, then delete the folder.

    Examples:

      mcfleet forget orion

      mcfleet forget orion hyperborea --json
    """
    from mcfleet.fleet.load import load_fleet
    from mcfleet.plan.gone import forget as drop
    from mcfleet.plan.gone import read_seen, seen_path, summary

    root = fleet_root()
    declared = set(load_fleet(root).hosts)
    still = sorted(h for h in hosts if h in declared)
    if still:
        raise InputError(
            f"{', '.join(still)} still {'has a folder' if len(still) == 1 else 'have folders'} under hosts/: not gone",
            location="HOST",
            hint="take its services away in its files and apply (that removes them), or delete the folder first",
        )
    seen, problem = read_seen(root)
    if problem:
        raise InputError(problem, location=str(seen_path(root)))
    unknown = sorted(set(hosts) - set(seen))
    if unknown:
        listed = ", ".join(sorted(h for h in seen if h not in declared)) or "none"
        raise InputError(f"not a gone host: {', '.join(unknown)}",
                         hint=f"the gone hosts (a plan lists them): {listed}")  # fmt: skip
    try:
        dropped = drop(root, hosts)
    except OSError as exc:
        raise InputError(f"cannot update {seen_path(root)}: {exc.strerror or exc}", location=str(seen_path(root)),
                         hint="check the fleet's .mcfleet/ folder is yours and writable") from exc  # fmt: skip
    if json_out:
        emit_json({"forgotten": {h: e.model_dump(mode="json") for h, e in dropped.items()}})
        return
    for host, entry in dropped.items():
        typer.echo(f"forgot {host}: left as they are: {summary(entry)}")


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
