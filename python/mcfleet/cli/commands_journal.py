"""`mcfleet journal`: the local apply journal (`<fleet>/.mcfleet/journal.jsonl`) as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mcfleet.cli.fleetdir import fleet_root
from mcfleet.cli.output import emit_json, table
from mcfleet.cli.targets import ON_OPT


def _mapping(value: object) -> dict[str, Any]:
    """A record's part as a dict: a journal edited by hand (or torn) may hold anything there."""
    return value if isinstance(value, dict) else {}


def _outcome(record: dict[str, Any]) -> str:
    if "error" in record:
        error = _mapping(record["error"])
        return f"{error.get('kind', 'error')}: {error.get('message', '')}"
    result = _mapping(record.get("result"))
    if "hosts" not in result and "host" in result:
        return _one_host_outcome(result)
    counts: dict[str, int] = {}
    for info in _mapping(result.get("hosts")).values():
        status = str(_mapping(info).get("status"))
        counts[status] = counts.get(status, 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do"
    return ("ok: " if result.get("ok") else "failed: ") + text


def _one_host_outcome(result: dict[str, Any]) -> str:
    """A one-host operation's report (snapshot, restore, snapshots, agent restart …): it has no `hosts`;
    a failed one that raised is an `error` record instead, so one without `ok` succeeded."""
    listed, removed = result.get("snapshots"), result.get("removed")
    if isinstance(listed, list):
        what = f"{len(listed)} snapshot(s)" + (
            f", removed {len(removed)}" if isinstance(removed, list) and removed else ""
        )
    else:
        what = " ".join(str(result[k]) for k in ("operation", "service") if result.get(k)) or "done"
        if isinstance(result.get("bytes"), int) and result["bytes"]:
            what += f" ({result['bytes']} bytes)"
    if result.get("error"):
        what += f": {result['error']}"
    return ("ok: " if result.get("ok", True) else "failed: ") + what


def _hosts_of(record: dict[str, Any]) -> list[str]:
    result = _mapping(record.get("result"))
    hosts = sorted(str(h) for h in _mapping(result.get("hosts"))) or ([str(result["host"])] if "host" in result else [])
    planned = record.get("hosts")  # a run refused before it had a result: the hosts of its plan
    return hosts or ([str(h) for h in planned] if isinstance(planned, list) else [])


def _succeeded(record: dict[str, Any]) -> bool:
    """Not refused, not failed, not interrupted: what `--failed` leaves out."""
    if "error" in record:
        return False
    result = _mapping(record.get("result"))
    return bool(result.get("ok", "hosts" not in result and "host" in result))


def _row(record: dict[str, Any]) -> list[object]:
    result = _mapping(record.get("result"))
    hosts = _hosts_of(record)
    seconds = result.get("seconds")
    argv = record.get("argv")
    words = [str(a) for a in argv] if isinstance(argv, list) else [str(record.get("command", "?"))]
    return [
        record.get("when", "?"),
        record.get("who", "?"),
        "mcfleet " + " ".join(words),
        ",".join(hosts) or "-",
        f"{seconds:.1f}" if isinstance(seconds, int | float) else "-",
        _outcome(record),
    ]


def _hosts_named(root: Path, on: list[str]) -> set[str]:
    """The names `--on` selects in the fleet's files as they are now."""
    from mcfleet.cli.targets import selected
    from mcfleet.fleet.load import load_fleet

    return {entry.host.name for entry in selected(load_fleet(root), on)}


def journal(
    last: int = typer.Option(20, "--last", "-n", min=0, help="Show the last N records (0: all).", metavar="N"),
    on: list[str] | None = ON_OPT,
    failed: bool = typer.Option(False, "--failed", help="Only the runs that failed, were refused or interrupted."),
    json_out: bool = typer.Option(False, "--json", help="Print the records as JSON (secrets already blanked)."),
) -> None:
    """Show the local apply journal (.mcfleet/journal.jsonl) as a table.

    One record per apply, deploy, provision, agent operation, snapshot and restore, refused and
    failed ones too: when, who, the command, the hosts, seconds and the outcome.  --on keeps the
    records that touched (or, refused, planned) a selected host; --last counts what is kept.

    Examples:

      mcfleet journal

      mcfleet journal --on rift --last 5     # what was last done on rift

      mcfleet journal --failed

      mcfleet journal --json | jq '.records[] | select(.command == "restore")'
    """
    from mcfleet.apply.journal import journal_path, read_counting

    root = fleet_root()
    records, unreadable = read_counting(root)
    kept = records
    if on:
        names = _hosts_named(root, on)
        kept = [r for r in kept if names.intersection(_hosts_of(r))]
    if failed:
        kept = [r for r in kept if not _succeeded(r)]
    shown = kept[-last:] if last else kept
    if unreadable:
        typer.echo(f"note: {unreadable} line(s) of {journal_path(root)} are not records: skipped", err=True)
    if json_out:
        emit_json({"journal": str(journal_path(root)), "total": len(records), "matched": len(kept),
                   "unreadable": unreadable, "records": shown})  # fmt: skip
        return
    if not records:
        typer.echo(f"no applies recorded yet ({journal_path(root)} does not exist or is empty)", err=True)
        return
    if not kept:
        typer.echo(f"none of the {len(records)} record(s) in {journal_path(root)} matches", err=True)
        return
    typer.echo(table(["WHEN", "WHO", "COMMAND", "HOSTS", "SECONDS", "OUTCOME"], [_row(r) for r in shown]), nl=False)


def register(app: typer.Typer) -> None:
    app.command("journal")(journal)
