"""`mcfleet agent upgrade [HOST…]` and `mcfleet agent status`.

`upgrade` pushes and activates the agent bundle on every selected host — all hosts
by default, because an agent and a CLI of different versions fail with
`Unimplemented` — with the same push/activate/rollback as `apply`.
Content-addressed: hosts that already run the bundle get nothing sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from mcfleet.apply.planwork import Override
from mcfleet.apply.status import AgentStatus, agent_status, render
from mcfleet.cli.commands_apply import (
    BUNDLE,
    CONNECT,
    DEADMAN,
    FAIL_FAST,
    HEALTH,
    JSON,
    PARALLEL,
    load_valid,
    run_session,
    session_options,
)
from mcfleet.cli.fleetdir import deprecated_folder
from mcfleet.cli.output import emit_json
from mcfleet.cli.targets import ON_OPT, YES_OPT, confirm_hosts, selected
from mcfleet.errors import InputError
from mcfleet.fleet.load import LoadedFleet
from mcfleet.transport.ssh import SshOptions, SshPool

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
    override: list[str] = typer.Option([], "--override", help="Run despite the refusal HOST:WHAT (repeatable)."),
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

    async def go() -> list[AgentStatus]:
        async with SshPool(SshOptions(connect_timeout=connect_timeout), hosts=loaded.hosts) as pool:
            return await agent_status(pool, entries)

    typed = asyncio.run(go())
    if json_out:
        emit_json({"hosts": [r.as_dict() for r in typed], "ok": all(r.ok for r in typed)})
    else:
        typer.echo(render(typed))
    if not all(r.ok for r in typed):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    agent = typer.Typer(help="The node agent: upgrade it, see its status.", no_args_is_help=True)
    agent.command("upgrade")(upgrade)
    agent.command("status")(status)
    app.add_typer(agent, name="agent")
