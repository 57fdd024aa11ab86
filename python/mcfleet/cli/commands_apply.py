"""`mcfleet apply`, `mcfleet deploy HOST`, `mcfleet provision HOST`: thin over apply.session.

Exit codes: 0 everything applied (or nothing to do), 1 a host or phase failed or
was rolled back, 2 refused (stale plan, refusal in the plan, fleet locked, invalid
input), 130 interrupted.  With `--json`, stdout is NDJSON: one `{"type": "event"}`
line per event as it happens, then one `{"type": "summary"}` line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer

from mcfleet.apply.activate import ActivateOptions
from mcfleet.apply.events import ndjson_writer
from mcfleet.apply.lock import fleet_lock
from mcfleet.apply.pipeline import ApplyOptions, HostWork, Limits
from mcfleet.apply.planwork import Override
from mcfleet.apply.session import ApplySession, SessionOptions
from mcfleet.apply.summary import Summary
from mcfleet.errors import FleetInvalid, InputError, McfleetError, Refused
from mcfleet.fleet.load import LoadedFleet, load_fleet
from mcfleet.fleet.models import OS
from mcfleet.fleet.rules import check
from mcfleet.fleet.select import select_hosts
from mcfleet.plan.saved import load_plan, read_plan
from mcfleet.report.progress import make_progress
from mcfleet.transport.ssh import SshOptions

TARGET_ARG = typer.Argument(Path("."), help="The fleet's root folder, or a plan file saved by `mcfleet plan -o`.")
ON = typer.Option(None, "--on", help="Hosts: names, globs, @tag or @role, comma-separated.")
ALL = typer.Option(False, "--all", help="Apply to the whole fleet (required without --on, unless --yes).")
YES = typer.Option(False, "--yes", "-y", help="Do not ask before a whole-fleet apply.")
FAIL_FAST = typer.Option(False, "--fail-fast/--keep-going", help="Stop every host at the first failure.")
JSON = typer.Option(False, "--json", help="NDJSON events on stdout, then the summary.")
BUNDLE = typer.Option(None, "--bundle", help="Push this agent bundle instead of building one.")
HEALTH = typer.Option(60.0, "--health-timeout", help="Seconds for the new agent to answer its health check.")
DEADMAN = typer.Option(0, "--confirm-timeout", help="Seconds before an unconfirmed node rolls back (0: health+60).")
PARALLEL = typer.Option(4, "--parallel", help="Hosts pushed/activated at once.")
CONNECT = typer.Option(10.0, "--connect-timeout", help="Seconds per address before trying the next.")


def session_options(
    *, command: str, json_out: bool, fail_fast: bool, bundle: Path | None, health: float, deadman: int, parallel: int,
    connect: float,
) -> SessionOptions:  # fmt: skip
    if deadman and deadman <= health:
        raise InputError(
            f"--confirm-timeout {deadman} must be longer than --health-timeout {health:g}",
            location="--confirm-timeout",
            hint="else a node would roll back while its health check is still running",
        )
    listeners = [ndjson_writer(sys.stdout)] if json_out else []
    return SessionOptions(
        apply=ApplyOptions(
            fail_fast=fail_fast,
            activate=ActivateOptions(health_timeout=health, deadman_s=deadman),
            limits=Limits(push=parallel, activate=parallel, steps=parallel),
        ),
        ssh=SshOptions(connect_timeout=connect),
        bundle=bundle.resolve() if bundle else None,
        command=command,
        listeners=listeners,
        progress=make_progress(title=command, quiet=json_out),
    )


def load_valid(root: Path) -> LoadedFleet:
    loaded = load_fleet(root)
    findings = check(loaded)
    if findings:
        raise FleetInvalid(list(findings), root=str(loaded.root))
    return loaded


def confirm_whole_fleet(loaded: LoadedFleet, on: str | None, all_: bool, yes: bool) -> list[str]:
    """The selected names; a whole-fleet run needs --all, --yes or a 'y' at the prompt."""
    names = [e.host.name for e in select_hosts(loaded, on)]
    if on or all_ or yes:
        return names
    if not sys.stdin.isatty():
        raise Refused(
            f"this would apply to the whole fleet ({len(names)} hosts) and there is no terminal to confirm",
            hint="pass --all (or --yes) for the whole fleet, or --on HOSTS for a part of it",
        )
    if not typer.confirm(f"apply to all {len(names)} hosts ({', '.join(names)})?", default=False, err=True):
        raise typer.Exit(1)
    return names


def run_session(
    loaded: LoadedFleet, options: SessionOptions, body: Callable[[ApplySession], Coroutine[Any, Any, Summary]]
) -> None:
    """Lock, run, journal, print the summary, exit with its code."""
    with fleet_lock(loaded.root, " ".join(["mcfleet", *sys.argv[1:]])):

        async def go() -> Summary:
            async with ApplySession(loaded, options) as session:
                try:
                    result = await body(session)
                except McfleetError as exc:
                    session.record(None, exc)  # a refused or failed run is journalled too
                    raise
                finally:
                    options.progress.close()
                session.record(result)
                return result

        summary = asyncio.run(go())
    print_summary(summary, json_out=bool(options.listeners))
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def print_summary(summary: Summary, *, json_out: bool) -> None:
    if json_out:
        import json

        typer.echo(json.dumps({"type": "summary", **summary.as_dict()}))
    else:
        typer.echo(summary.render())


def apply(  # noqa: PLR0917 (typer maps parameters to options)
    target: Path = TARGET_ARG,
    on: str | None = ON,
    all_: bool = ALL,
    yes: bool = YES,
    override: list[str] = typer.Option([], "--override", help="Run despite the refusal HOST:WHAT (repeatable)."),
    root: Path | None = typer.Option(None, "--root", help="Fleet root for a plan file (default: recorded in it)."),
    fail_fast: bool = FAIL_FAST,
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
    parallel: int = PARALLEL,
    connect_timeout: float = CONNECT,
) -> None:
    """Converge the selected hosts: build, push, activate (health check, rollback), then the later steps.

    Without a plan file: observe, plan and apply in one go.  With a plan file:
    run exactly that plan, refused when stale (fleet files, facts or agent bundle
    changed since).  A plan with a refusal (`!`) is refused unless each refusal is
    overridden; the refused action itself is never done.

    Examples:

      mcfleet apply --on rift

      mcfleet apply --all --json | jq 'select(.type == "summary")'

      mcfleet plan -o plan.json && mcfleet apply plan.json

      mcfleet apply --on orion --override 'orion:user mcp'
    """
    overrides = [Override.parse(o) for o in override]
    opts = dict(json_out=json_out, fail_fast=fail_fast, bundle=bundle, health=health_timeout, deadman=confirm_timeout,
                parallel=parallel, connect=connect_timeout)  # fmt: skip
    if target.is_file():
        if on:
            raise InputError("--on cannot narrow a saved plan", location="--on", hint="make a new plan with --on")
        saved = read_plan(target)
        loaded = load_valid(root or Path(saved.root))
        plan = load_plan(target, root=loaded.root)
        run_session(
            loaded,
            session_options(command="apply PLAN", **opts),  # type: ignore[arg-type]
            lambda s: s.apply_plan(plan, overrides, saved=True),
        )
        return
    loaded = load_valid(target)
    names = confirm_whole_fleet(loaded, on, all_, yes)
    run_session(loaded, session_options(command="apply", **opts), lambda s: _plan_and_apply(s, names, overrides))  # type: ignore[arg-type]


async def _plan_and_apply(session: ApplySession, names: list[str], overrides: list[Override]) -> Summary:
    await session.prebuild(names)
    plan, _facts = await session.observe_and_plan(names)
    return await session.apply_plan(plan, overrides, saved=False)


def deploy(  # noqa: PLR0917
    host: str = typer.Argument(..., help="The host to deploy."),
    path: Path = typer.Option(Path("."), "--root", help="The fleet's root folder."),
    override: list[str] = typer.Option([], "--override", help="Run despite the refusal HOST:WHAT (repeatable)."),
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
) -> None:
    """Validate, plan and apply one host: what `nix run .#deploy -- HOST` runs.

    Examples:

      mcfleet deploy rift

      nix run .#deploy -- rift

      mcfleet deploy svc --root ./fleet --json
    """
    loaded = load_valid(path)
    names = [e.host.name for e in select_hosts(loaded, host)]
    overrides = [Override.parse(o) for o in override]
    opts = session_options(command=f"deploy {host}", json_out=json_out, fail_fast=False, bundle=bundle,
                           health=health_timeout, deadman=confirm_timeout, parallel=1, connect=10.0)  # fmt: skip
    run_session(loaded, opts, lambda s: _plan_and_apply(s, names, overrides))


def provision(  # noqa: PLR0917
    host: str = typer.Argument(..., help="The Debian host to provision."),
    path: Path = typer.Option(Path("."), "--root", help="The fleet's root folder."),
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
) -> None:
    """Prepare a Debian node: the `mcp` user at its pinned UID/GID, subuid/subgid, /srv/mcp/,
    resolvers with fallbacks, the unit and the agent bundle, started and health-checked.

    Idempotent: a second run changes nothing and says so.  Refused before any change
    (exit 1, the summary says "refused: ...") when the pinned UID/GID belongs to
    another account or `mcp` exists with other ids.  NixOS nodes are provisioned by
    their configuration (exit 2).

    Examples:

      mcfleet provision hyperborea

      mcfleet provision svc --root ./fleet --bundle dist/mcp-agent.pex
    """
    loaded = load_valid(path)
    entry = select_hosts(loaded, host)[0]
    if entry.host.os != OS.debian:
        raise Refused(
            f"{entry.host.name} runs {entry.host.os}: NixOS nodes are provisioned by their modules",
            location=f"{entry.host.name}: provision",
            hint="build and switch the node's configuration (nixos-rebuild); `mcfleet provision` is for Debian",
        )
    opts = session_options(command=f"provision {host}", json_out=json_out, fail_fast=True, bundle=bundle,
                           health=health_timeout, deadman=confirm_timeout, parallel=1, connect=10.0)  # fmt: skip
    work = [HostWork(entry, agent=True, provision=True)]
    run_session(loaded, opts, lambda s: s.run(work))


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
    app.command("deploy")(deploy)
    app.command("provision")(provision)
