"""`mcfleet agent upgrade|status|recover|restart|stop|start`.

`upgrade` pushes and activates the agent bundle on every selected host — all hosts
by default, because an agent and a CLI of different versions fail with
`Unimplemented` — with the same push/activate/rollback as `apply`.
Content-addressed: hosts that already run the bundle get nothing sent.  `recover`,
`restart`, `stop` and `start` ask one host's agent (apply.agentops), after the same
refusal gate as apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mcfleet.cli.commands_apply import BUNDLE, FAIL_FAST, JSON, load_valid, run_session, session_options
from mcfleet.cli.complete import complete_host, complete_placed_service
from mcfleet.cli.fleetdir import deprecated_folder
from mcfleet.cli.options import CONNECT, DEADMAN, HEALTH, OVERRIDE, PARALLEL
from mcfleet.cli.output import emit_json, table
from mcfleet.cli.targets import ON_OPT, YES_OPT, confirm_hosts, selected
from mcfleet.errors import InputError
from mcfleet.util.terminal_text import terminal_safe

if TYPE_CHECKING:
    from mcfleet.apply.status import AgentStatus
    from mcfleet.fleet.load import LoadedFleet

# SSH, gRPC and the apply machinery are imported where a command runs (`agent … --help` stays light).

ROOT = typer.Option(None, "--root", hidden=True)  # deprecated: the global -C DIR
# Deprecated: hosts as arguments (use --on); hidden from --help.
HOSTS_ARG = typer.Argument(None, hidden=True, show_default=False)


def load_fleet_for_hosts(path: Path | None, hosts: list[str] | None) -> LoadedFleet:
    """The fleet; a fleet folder given where host names go gets a hint, not a puzzle."""
    for item in hosts or []:
        if (Path(item) / "fleet.json").is_file():
            raise InputError(
                f"{item!r} is a fleet folder, but the arguments here are host names",
                location=f"mcfleet agent … {item}",
                hint=f"pass the folder with -C: mcfleet -C {item} agent …",
            )
    return load_valid(deprecated_folder(path, "--root DIR"))


def upgrade(  # noqa: PLR0917 (typer maps parameters to options)
    hosts: list[str] | None = HOSTS_ARG,
    on: list[str] | None = ON_OPT,
    yes: bool = YES_OPT,
    path: Path | None = ROOT,
    override: list[str] = OVERRIDE,
    fail_fast: bool = FAIL_FAST,
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
    parallel: int = PARALLEL,
    connect_timeout: float = CONNECT,
) -> None:
    """Push the agent bundle to the hosts and restart it there, with health check and rollback.

    All hosts by default (avoids version skew between agents and the CLI); more than one
    host asks first (--yes to skip).  The hosts are observed first and a refusal (a
    pinned UID held by another account, ...) refuses the upgrade before anything is
    pushed, as for `apply`.

    Examples:

      mcfleet agent upgrade --yes

      mcfleet agent upgrade --on svc --on hyperborea

      mcfleet agent upgrade --bundle dist/mcp-agent.pex --json

      mcfleet agent upgrade --on orion --override 'orion:user mcp'
    """
    loaded = load_fleet_for_hosts(path, hosts)
    entries = selected(loaded, [*(hosts or []), *(on or [])])
    confirm_hosts([e.host.name for e in entries], action="agent upgrade", yes=yes)
    opts = session_options(command="agent upgrade", json_out=json_out, fail_fast=fail_fast, bundle=bundle,
                           health=health_timeout, deadman=confirm_timeout, parallel=parallel,
                           connect=connect_timeout)  # fmt: skip
    from mcfleet.apply.planwork import Override

    overrides = [Override.parse(o) for o in override]
    names = [e.host.name for e in entries]
    run_session(loaded, opts, lambda s: s.upgrade(names, overrides))


def status(
    hosts: list[str] | None = HOSTS_ARG,
    on: list[str] | None = ON_OPT,
    path: Path | None = ROOT,
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    connect_timeout: float = CONNECT,
) -> None:
    """Every node's agent: version, bundle hash, unit state and health (read-only).

    Exit 1 when a host is unreachable or its agent does not answer.

    Examples:

      mcfleet agent status --on @full

      mcfleet agent status --json | jq '.hosts[] | select(.skew)'
    """
    loaded = load_fleet_for_hosts(path, hosts)
    entries = selected(loaded, [*(hosts or []), *(on or [])])

    import asyncio

    from mcfleet.apply.status import agent_status, status_row
    from mcfleet.transport.ssh import SshOptions, SshPool

    async def go() -> list[AgentStatus]:
        async with SshPool(SshOptions(connect_timeout=connect_timeout), hosts=loaded.hosts) as pool:
            return await agent_status(pool, entries)

    typed = asyncio.run(go())
    if json_out:
        emit_json({"hosts": [r.as_dict() for r in typed], "ok": all(r.ok for r in typed)})
    else:
        typer.echo(
            table(["HOST", "VERSION", "SHA256", "UNIT", "HEALTH", "NOTE"], [status_row(r) for r in typed]), nl=False
        )
    if not all(r.ok for r in typed):
        raise typer.Exit(1)


JSON_REPORT = typer.Option(False, "--json", help="Print the report as JSON.")


def _agent_op(host: str, operation: str, service: str | None, *, override: list[str], json_out: bool,
              connect_timeout: float) -> None:  # fmt: skip
    import asyncio
    import sys

    from mcfleet.apply import journal
    from mcfleet.apply.agentops import AgentOpReport, agent_op
    from mcfleet.apply.lock import fleet_lock
    from mcfleet.apply.planwork import Override
    from mcfleet.apply.session import ApplySession, SessionOptions
    from mcfleet.cli.targets import one_host, one_service
    from mcfleet.report.progress import make_progress
    from mcfleet.transport.ssh import SshOptions

    loaded = load_valid(deprecated_folder(None, "--root DIR"))
    entry = one_host(loaded, host, f"agent {operation}")
    if service is not None:  # before connecting: the agent would only say NOT_FOUND
        one_service(entry, service, f"agent {operation}")
    overrides = [Override.parse(o) for o in override]
    command = " ".join(["agent", operation, entry.host.name, *([service] if service else [])])
    options = SessionOptions(
        ssh=SshOptions(connect_timeout=connect_timeout),
        command=command,
        progress=make_progress(title=command, quiet=json_out),
    )
    with fleet_lock(loaded.root, " ".join(["mcfleet", *sys.argv[1:]])):

        async def go() -> AgentOpReport:
            async with ApplySession(loaded, options) as session:
                try:
                    return await agent_op(session, entry.host.name, operation, service=service, overrides=overrides)
                finally:
                    options.progress.close()

        report = journal.run_journalled(loaded.root, command, lambda: asyncio.run(go()), [entry.host.name])
    if json_out:
        emit_json(report.as_dict())
    else:
        typer.echo(terminal_safe(report.render()))  # it quotes the agent: no control sequence runs
    if not report.ok:
        raise typer.Exit(1)


def recover(
    host: str = typer.Argument(
        ..., help="The host whose containers to recreate.", autocompletion=complete_host, metavar="HOST"
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """Recreate every container of a host from its agent's registry, in boot-stage order.

    For a node whose podman state was lost (e.g. `podman system reset`): the agent
    recreates each registered service's containers stage by stage (foundation, core,
    management, services), waiting for each stage to be healthy; volumes are not
    touched.  Prints what was recreated per stage.  Exit 1 when a stage does not get
    healthy or the plan has a refusal for the host.

    Examples:

      mcfleet agent recover rift

      mcfleet agent recover rift --json | jq '.stages[] | select(.healthy | not)'
    """
    _agent_op(host, "recover", None, override=override, json_out=json_out, connect_timeout=connect_timeout)


def restart(
    host: str = typer.Argument(..., help="The host the service runs on.", autocompletion=complete_host, metavar="HOST"),
    service: str = typer.Argument(
        ..., help="The service to restart.", autocompletion=complete_placed_service, metavar="SERVICE"
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """Restart one service's containers on a host (its health check must pass again).

    Examples:

      mcfleet agent restart rift mcq

      mcfleet agent restart rift mcq --json
    """
    _agent_op(host, "restart", service, override=override, json_out=json_out, connect_timeout=connect_timeout)


def stop(
    host: str = typer.Argument(..., help="The host the service runs on.", autocompletion=complete_host, metavar="HOST"),
    service: str = typer.Argument(
        ..., help="The service to stop.", autocompletion=complete_placed_service, metavar="SERVICE"
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """Stop one service on a host; it stays stopped across agent restarts until `start`.

    Examples:

      mcfleet agent stop rift mcq

      mcfleet agent stop rift mcq --json
    """
    _agent_op(host, "stop", service, override=override, json_out=json_out, connect_timeout=connect_timeout)


def start(
    host: str = typer.Argument(..., help="The host the service runs on.", autocompletion=complete_host, metavar="HOST"),
    service: str = typer.Argument(
        ..., help="The service to start.", autocompletion=complete_placed_service, metavar="SERVICE"
    ),
    override: list[str] = OVERRIDE,
    json_out: bool = JSON_REPORT,
    connect_timeout: float = CONNECT,
) -> None:
    """Start a stopped service on a host (and wait for its health check).

    Examples:

      mcfleet agent start rift mcq

      mcfleet agent start rift mcq --json
    """
    _agent_op(host, "start", service, override=override, json_out=json_out, connect_timeout=connect_timeout)


def register(app: typer.Typer) -> None:
    agent = typer.Typer(help="The node agent: upgrade, status, recover, restart/stop/start a service.",
                        no_args_is_help=True)  # fmt: skip
    agent.command("upgrade")(upgrade)
    agent.command("status")(status)
    agent.command("recover")(recover)
    agent.command("restart")(restart)
    agent.command("stop")(stop)
    agent.command("start")(start)
    app.add_typer(agent, name="agent")
