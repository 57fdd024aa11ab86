"""`mcfleet snapshot HOST SERVICE`, `mcfleet restore HOST SERVICE PATH` and `mcfleet snapshots HOST
[SERVICE] [--prune]` (apply/snapshot.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import typer

from mcfleet.cli.commands_apply import load_valid
from mcfleet.cli.complete import complete_host, complete_placed_service
from mcfleet.cli.fleetdir import deprecated_folder
from mcfleet.cli.options import CONNECT, OVERRIDE
from mcfleet.cli.output import emit_json
from mcfleet.util.terminal_text import terminal_safe

JSON_REPORT = typer.Option(False, "--json", help="Print the report as JSON.")


def _run(command: str, host: str, op: Callable[..., Awaitable[object]], *args: object, override: list[str],
         json_out: bool, connect_timeout: float) -> None:  # fmt: skip
    from mcfleet.apply import journal
    from mcfleet.apply.lock import fleet_lock
    from mcfleet.apply.planwork import Override
    from mcfleet.apply.session import ApplySession, SessionOptions
    from mcfleet.apply.snapshot import SnapshotList, SnapshotReport
    from mcfleet.cli.targets import one_host
    from mcfleet.report.progress import make_progress
    from mcfleet.transport.ssh import SshOptions

    loaded = load_valid(deprecated_folder(None, "--root DIR"))
    entry = one_host(loaded, host, command)
    overrides = [Override.parse(o) for o in override]
    line = " ".join([command, entry.host.name, *(str(a) for a in args if a is not None)])
    options = SessionOptions(ssh=SshOptions(connect_timeout=connect_timeout), command=line,
                             progress=make_progress(title=line, quiet=json_out))  # fmt: skip
    with fleet_lock(loaded.root, " ".join(["mcfleet", *sys.argv[1:]])):

        async def go() -> SnapshotReport | SnapshotList:
            async with ApplySession(loaded, options) as session:
                try:
                    report = await op(session, entry.host.name, *args, overrides=overrides)
                    assert isinstance(report, SnapshotReport | SnapshotList)
                    return report
                finally:
                    options.progress.close()

        report = journal.run_journalled(loaded.root, line, lambda: asyncio.run(go()), [entry.host.name])
    if json_out:
        emit_json(report.as_dict())
    else:
        typer.echo(terminal_safe(report.render()))  # it quotes the node: no control sequence runs


def snapshot(
    host: str = typer.Argument(..., help="The host the service runs on.", autocompletion=complete_host, metavar="HOST"),
    service: str = typer.Argument(
        ...,
        help="The service whose /srv/<service>/ folder to snapshot.",
        autocompletion=complete_placed_service,
        metavar="SERVICE",
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """Snapshot a service's folder /srv/SERVICE/ on its node (stopped meanwhile, started again).

    The snapshot is a zstd tar with numeric owners in root's store on the node
    (/var/lib/mcfleet/snapshots/SERVICE-<UTC time>.tar.zst); it is kept until you remove it.

    Examples:

      mcfleet snapshot rift mcq

      mcfleet snapshot rift mcq --json | jq -r .path
    """
    from mcfleet.apply.snapshot import snapshot as take

    _run("snapshot", host, take, service, override=override, json_out=json_out, connect_timeout=connect_timeout)


def restore(  # noqa: PLR0917 (typer: one parameter per argument and option)
    host: str = typer.Argument(..., help="The host the service runs on.", autocompletion=complete_host, metavar="HOST"),
    service: str = typer.Argument(
        ..., help="The service whose folder to restore.", autocompletion=complete_placed_service, metavar="SERVICE"
    ),
    path: str = typer.Argument(
        ...,
        help="The snapshot on the node: `latest`, its path as `snapshot` printed it, or its file name.",
        metavar="PATH",
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """Restore /srv/SERVICE/ on its node from a snapshot there (the current folder is kept aside).

    Examples:

      mcfleet restore rift mcq latest             # the newest snapshot of mcq on rift

      mcfleet restore rift mcq mcq-20260101T120000Z.tar.zst

      mcfleet restore rift mcq /var/lib/mcfleet/snapshots/mcq-20260101T120000Z.tar.zst

      mcfleet restore rift mcq "$(mcfleet snapshot rift mcq --json | jq -r .path)" --json
    """
    from mcfleet.apply.snapshot import restore as put_back

    _run("restore", host, put_back, service, path, override=override, json_out=json_out,
         connect_timeout=connect_timeout)  # fmt: skip


def list_snapshots(  # noqa: PLR0917 (typer: one parameter per argument and option)
    host: str = typer.Argument(
        ..., help="The host whose snapshots to list.", autocompletion=complete_host, metavar="HOST"
    ),
    service: str | None = typer.Argument(
        None, help="Only this service's snapshots.", autocompletion=complete_placed_service, metavar="SERVICE"
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Remove the older snapshots and set-aside folders (each service keeps --keep)."
    ),
    keep: int = typer.Option(
        1, "--keep", min=0, help="With --prune: the newest snapshots kept per service.", metavar="N"
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """List the snapshots in root's store on a node; --prune removes the older ones.

    Snapshots (from `mcfleet snapshot`, and the source's copy a move between hosts
    leaves behind) are kept until you prune them; so are the folders restores set
    aside (/srv/.SERVICE.before-restore.<UTC>) and the folder a move to this host
    replaced (/srv/.SERVICE.before-migrate.<UTC>), listed here and pruned by the
    same rule (--json: "set_aside").

    Examples:

      mcfleet snapshots rift

      mcfleet snapshots rift mcq --prune --keep 0      # remove all of mcq's snapshots on rift

      mcfleet snapshots rift --prune --json | jq -r '.removed[]'
    """
    from mcfleet.apply.snapshot import snapshots

    async def op(session: object, name: str, svc: str | None, **kw: object) -> object:
        return await snapshots(session, name, svc, prune=prune, keep=keep, **kw)  # type: ignore[arg-type]

    _run("snapshots", host, op, service, override=override, json_out=json_out, connect_timeout=connect_timeout)


def register(app: typer.Typer) -> None:
    app.command("snapshot")(snapshot)
    app.command("restore")(restore)
    app.command("snapshots")(list_snapshots)
