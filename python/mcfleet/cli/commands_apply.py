"""`mcfleet apply`, `mcfleet deploy HOST`, `mcfleet provision HOST`: thin over apply.session.

Exit codes: 0 everything applied (or nothing to do), 1 a host or phase failed, was
rolled back, or was refused (stale plan, refusal in the plan, fleet locked, answered no),
2 invalid input, 130 interrupted.  With `--json`, stdout is NDJSON: one `{"type": "event"}`
line per event as it happens, then one `{"type": "summary"}` line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

from mcfleet.cli.complete import complete_host
from mcfleet.cli.fleetdir import deprecated_folder, fleet_root, refuse_hosts_as_folder
from mcfleet.cli.options import CONNECT, DEADMAN, HEALTH, OVERRIDE, PARALLEL, STAGE_TIMEOUT, agent_pex
from mcfleet.cli.state import STATE
from mcfleet.cli.targets import ON_OPT, YES_OPT, confirm_hosts, one_host, selected
from mcfleet.errors import EXIT_INTERRUPTED, FleetInvalid, InputError, McfleetError, Refused
from mcfleet.util.terminal_text import terminal_safe

if TYPE_CHECKING:
    from mcfleet.apply.events import ApplyEvents
    from mcfleet.apply.session import ApplySession, SessionOptions
    from mcfleet.apply.summary import Summary
    from mcfleet.fleet.load import LoadedFleet

# The apply machinery (asyncssh, grpc, the planner, the providers) is imported where a command
# runs, so that `apply --help` and the commands that only reuse the options below stay light.

TARGET_ARG = typer.Argument(
    None, help="A plan file saved by `mcfleet plan -o` (a folder here: deprecated, use -C).", metavar="PLAN"
)
ON = ON_OPT
ALL = typer.Option(
    False, "--all", help="The whole fleet, without asking (without --on and a terminal to ask on: --all or --yes)."
)
YES = YES_OPT
ROOT_ALIAS = typer.Option(None, "--root", hidden=True)  # deprecated: the global -C DIR
FAIL_FAST = typer.Option(False, "--fail-fast/--keep-going", help="Stop every host at the first failure.")
JSON = typer.Option(False, "--json", help="NDJSON events on stdout, then the summary.")
BUNDLE = typer.Option(
    None, "--bundle", callback=agent_pex, help="Push this agent bundle (a PEX) instead of building one.", metavar="PEX"
)
GOAL = typer.Option(
    "switch",
    "--goal",
    help="NixOS hosts: switch-to-configuration goal: switch (activate and make default), test (activate only), "
    "boot (default at next boot, no activation), dry-activate (show what would change). After boot or "
    "dry-activate nothing else runs; with any goal but switch only NixOS hosts may be selected.",
    metavar="GOAL",
)
GOALS = ("switch", "test", "boot", "dry-activate")


def session_options(
    *, command: str, json_out: bool, fail_fast: bool, bundle: Path | None, health: float, deadman: int, parallel: int,
    connect: float, goal: str = "switch", stage_timeout: float = 0.0,
) -> SessionOptions:  # fmt: skip
    if goal not in GOALS:
        raise InputError(f"--goal {goal!r} is not one of {', '.join(GOALS)}", location="--goal",
                         hint="e.g. --goal test to activate without making it the boot default")  # fmt: skip
    if deadman and deadman <= health:
        raise InputError(
            f"--confirm-timeout {deadman} must be longer than --health-timeout {health:g}",
            location="--confirm-timeout",
            hint="else a node would roll back while its health check is still running",
        )
    from mcfleet.apply.activate import ActivateOptions
    from mcfleet.apply.events import ndjson_writer
    from mcfleet.apply.pipeline import ApplyOptions, Limits
    from mcfleet.apply.session import SessionOptions
    from mcfleet.report.progress import make_progress
    from mcfleet.transport.ssh import SshOptions

    listeners = [ndjson_writer(sys.stdout)] if json_out else []
    return SessionOptions(
        apply=ApplyOptions(
            fail_fast=fail_fast,
            activate=ActivateOptions(health_timeout=health, deadman_s=deadman),
            nixos_goal=goal,
            limits=Limits(push=parallel, activate=parallel, steps=parallel),
            stage_timeout=stage_timeout,
        ),
        ssh=SshOptions(connect_timeout=connect),
        bundle=bundle.resolve() if bundle else None,
        command=command,
        listeners=listeners,
        progress=make_progress(title=command, quiet=json_out),
    )


def load_valid(given: Path | None) -> LoadedFleet:
    """The fleet (`given` is a deprecated folder alias, else -C or the upward search), validated."""
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check

    loaded = load_fleet(fleet_root(given))
    findings = check(loaded)
    if findings:
        raise FleetInvalid(list(findings), root=str(loaded.root))
    return loaded


# What a --goal other than switch promises, which only a NixOS host's switch-to-configuration keeps:
# (the promise, what it would be on another host).
GOAL_PROMISES = {
    "dry-activate": ("leaves only NixOS hosts unchanged now", "would be changed for real"),
    "boot": ("leaves only NixOS hosts unchanged now", "would be changed for real"),
    "test": ("keeps the boot default (the system before, after a reboot) only on NixOS hosts",
             "would be changed for good"),
}  # fmt: skip


def check_goal_hosts(loaded: LoadedFleet, names: Sequence[str], goal: str) -> None:
    """--goal boot / dry-activate change nothing now on a NixOS host, --goal test keeps its boot default;
    on any other host apply would change everything for good, which is not what a dry run, "at the next
    boot" or a trial asks for."""
    if goal not in GOAL_PROMISES:
        return
    others = [
        f"{n} ({loaded.hosts[n].host.os})" for n in names if n in loaded.hosts and loaded.hosts[n].host.os != "nixos"
    ]
    if others:
        promise, instead = GOAL_PROMISES[goal]
        nixos = [n for n in names if n in loaded.hosts and loaded.hosts[n].host.os == "nixos"]
        raise InputError(
            f"{goal} {promise}; {', '.join(others)} {instead}",
            location="--goal",
            hint=f"select the NixOS hosts alone (--on {','.join(nixos)})"
            if nixos
            else "drop --goal (see `mcfleet plan`)",
        )


# Whether apply asks before it changes anything: go ahead, ask (y/N) on the terminal, or refuse (exit 1).
Confirmation = Literal["go", "ask", "refuse"]


def confirmation(*, saved: bool, whole_fleet: bool, hosts: int, yes: bool, terminal: bool) -> Confirmation:
    """The rule `apply --help` states (`yes`: --yes or --all; `terminal`: stdin is one).

    A saved plan is the approval, as in Terraform: it was reviewed when it was made, and apply refuses
    it when stale or edited, so applying it never asks, on a terminal or not.  A live plan is made and
    applied in one go, unseen: more than one host needs --yes or a 'y', and the whole fleet (no --on)
    --all, --yes or a terminal to ask on, however many hosts it has.  Where there is no terminal to
    ask on, the question is a refusal, never a yes."""
    if saved or yes:
        return "go"
    if whole_fleet and not terminal:
        return "refuse"
    if hosts <= 1:
        return "go"
    return "ask" if terminal else "refuse"


def approve(names: list[str], *, saved: bool, on: list[str] | None, all_: bool, yes: bool) -> None:
    """Go ahead, ask, or refuse, as `confirmation` decides for these hosts (a "no" exits 1)."""
    decision = confirmation(
        saved=saved, whole_fleet=not on, hosts=len(names), yes=yes or all_, terminal=sys.stdin.isatty()
    )
    if decision == "go":
        return
    if decision == "refuse" and not on:
        raise Refused(
            f"this would apply to the whole fleet ({len(names)} hosts) and there is no terminal to confirm",
            hint="pass --all (or --yes) for the whole fleet, or --on HOSTS for a part of it",
        )
    # more than one host: confirm_hosts asks on the terminal, or refuses without one, naming them
    confirm_hosts(names, action="apply", yes=False)


def run_session(
    loaded: LoadedFleet, options: SessionOptions, body: Callable[[ApplySession], Coroutine[Any, Any, Summary]]
) -> None:
    """Lock, run, journal, print the summary, exit with its code."""
    import asyncio

    from mcfleet.apply.lock import fleet_lock
    from mcfleet.apply.session import ApplySession
    from mcfleet.util.aio import run as run_async

    stopped: list[ApplyEvents] = []  # the events of a run stopped at Ctrl-C
    with fleet_lock(loaded.root, " ".join(["mcfleet", *sys.argv[1:]])):

        async def go() -> Summary:
            async with ApplySession(loaded, options) as session:
                try:
                    result = await body(session)
                except McfleetError as exc:
                    session.record(None, exc)  # a refused or failed run is journalled too
                    raise
                except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
                    # the pipeline recorded in each host's manifest what finished before it gave this up
                    session.record_interrupted()
                    stopped.append(session.log)
                    raise
                finally:
                    options.progress.close()
                session.record(result)
                return result

        try:
            summary = run_async(go())
        except KeyboardInterrupt:
            if not stopped:  # Ctrl-C before the run began: the usual message
                raise
            typer.echo(terminal_safe(interrupted_text(stopped[0])), err=True)
            # not typer.Exit(130): the CLI's boundary would add its generic "interrupted" line to this one
            raise SystemExit(EXIT_INTERRUPTED) from None
    print_summary(summary, json_out=bool(options.listeners))
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def interrupted_text(log: ApplyEvents) -> str:
    """What Ctrl-C left: the usual line, and what each host's manifest now records (or why it does not)."""
    from mcfleet.apply.events import Phase, Status

    said = [e for e in log.events if e.phase == Phase.manifest and e.status in (Status.changed, Status.failed)]
    lines = [f"  {e.host}: manifest {e.message}" for e in said]
    if not lines:
        return "interrupted: stopped at Ctrl-C (what finished is kept: nothing new to record in a host's manifest; "\
               "run the command again to go on)"  # fmt: skip
    return "\n".join([
        "interrupted: stopped at Ctrl-C (what finished is kept, and recorded in each host's manifest as below, "
        "so that a later plan can remove it; run the command again to go on)", *lines])  # fmt: skip


def print_summary(summary: Summary, *, json_out: bool) -> None:
    if json_out:
        import json

        typer.echo(json.dumps({"type": "summary", **summary.as_dict()}))
    else:
        typer.echo(terminal_safe(summary.render()))  # it quotes nodes and agents: no control sequence runs


def apply(  # noqa: PLR0917 (typer maps parameters to options)
    target: Path | None = TARGET_ARG,
    on: list[str] | None = ON,
    all_: bool = ALL,
    yes: bool = YES,
    override: list[str] = OVERRIDE,
    root: Path | None = ROOT_ALIAS,
    fail_fast: bool = FAIL_FAST,
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
    parallel: int = PARALLEL,
    connect_timeout: float = CONNECT,
    goal: str = GOAL,
    stage_timeout: float = STAGE_TIMEOUT,
) -> None:
    """Converge the selected hosts: build, push, activate (health check, rollback), then the later steps.

    Without a plan file: observe, plan and apply in one go.  With a plan file:
    run exactly that plan, refused when stale (fleet files, facts or agent bundle
    changed since).  A plan with a refusal (`!`) is refused unless each refusal is
    overridden; the refused action itself is never done.

    When it asks: applying a saved plan never asks, on a terminal or not (the
    plan is the approval: it was reviewed when it was made; --yes and --all
    change nothing there).  Without a plan file, apply asks (y/N) before it
    changes more than one host, and the whole fleet (no --on) needs --all or
    --yes or a terminal, even with one host; --yes or --all never asks.  With
    no terminal on stdin, a question is a refusal instead (exit 1).

    Examples:

      mcfleet apply --on rift

      mcfleet apply --all --json | jq 'select(.type == "summary")'

      mcfleet plan -o plan.json && mcfleet apply plan.json

      mcfleet apply --on orion --override 'orion:user mcp'

      mcfleet apply --on rift --goal test        # NixOS: activate, but keep the boot default

      mcfleet apply --on svc --stage-timeout 30  # a definition not healthy in 30 s is put back
    """
    from mcfleet.apply.planwork import Override
    from mcfleet.plan.saved import load_plan, read_plan

    overrides = [Override.parse(o) for o in override]
    opts = dict(json_out=json_out, fail_fast=fail_fast, bundle=bundle, health=health_timeout, deadman=confirm_timeout,
                parallel=parallel, connect=connect_timeout, goal=goal, stage_timeout=stage_timeout)  # fmt: skip
    if target is not None:
        refuse_hosts_as_folder(target, "apply", other_words=False)
    if target is not None and not target.exists():  # else the loader's "no fleet.json in plan.json"
        raise InputError(
            "no such plan file (nor fleet folder)",
            location=str(target),
            hint="save a plan with `mcfleet plan -o FILE`; the fleet folder goes before the command: "
            "`mcfleet -C DIR apply`",
        )
    if target is not None and target.is_file():
        if on:
            raise InputError("--on cannot narrow a saved plan", location="--on", hint="make a new plan with --on")
        saved = read_plan(target)
        loaded = load_valid(deprecated_folder(root, "--root DIR") or STATE.fleet or Path(saved.root))
        plan = load_plan(target, root=loaded.root)
        check_goal_hosts(loaded, plan.hosts, goal)
        approve(plan.hosts, saved=True, on=on, all_=all_, yes=yes)  # never asks: the plan is the approval
        run_session(
            loaded,
            session_options(command="apply PLAN", **opts),  # type: ignore[arg-type]
            lambda s: s.apply_plan(plan, overrides, saved=True),
        )
        return
    loaded = load_valid(deprecated_folder(target, "the fleet folder as an argument") or root)
    names = [e.host.name for e in selected(loaded, on)]
    check_goal_hosts(loaded, names, goal)
    approve(names, saved=False, on=on, all_=all_, yes=yes)
    run_session(loaded, session_options(command="apply", **opts), lambda s: s.plan_and_apply(names, overrides))  # type: ignore[arg-type]


# `deploy` and `provision` change the one host they are given and never ask; `--yes` is accepted so a
# script that passes it as it does to `apply` works with them too.
ONE_HOST_YES = typer.Option(False, "--yes", "-y", help="Accepted for scripts written for apply: one host, never asks.")


def deploy(  # noqa: PLR0917
    host: str = typer.Argument(
        ..., help="The one host to deploy (a host name).", autocompletion=complete_host, metavar="HOST"
    ),
    path: Path | None = ROOT_ALIAS,
    override: list[str] = OVERRIDE,
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
    goal: str = GOAL,
    stage_timeout: float = STAGE_TIMEOUT,
    yes: bool = ONE_HOST_YES,
) -> None:
    """Validate, plan and apply one host: what `nix run .#deploy -- HOST` runs.

    Examples:

      mcfleet deploy rift

      nix run .#deploy -- rift

      mcfleet -C ./fleet deploy svc --json
    """
    from mcfleet.apply.planwork import Override

    del yes  # one host: nothing to confirm
    loaded = load_valid(deprecated_folder(path, "--root DIR"))
    names = [one_host(loaded, host, "deploy").host.name]
    check_goal_hosts(loaded, names, goal)
    overrides = [Override.parse(o) for o in override]
    opts = session_options(command=f"deploy {host}", json_out=json_out, fail_fast=False, bundle=bundle,
                           health=health_timeout, deadman=confirm_timeout, parallel=1, connect=10.0,
                           goal=goal, stage_timeout=stage_timeout)  # fmt: skip
    run_session(loaded, opts, lambda s: s.plan_and_apply(names, overrides))


def provision(  # noqa: PLR0917
    host: str = typer.Argument(
        ..., help="The one Debian host to provision (a host name).", autocompletion=complete_host, metavar="HOST"
    ),
    path: Path | None = ROOT_ALIAS,
    override: list[str] = OVERRIDE,
    json_out: bool = JSON,
    bundle: Path | None = BUNDLE,
    health_timeout: float = HEALTH,
    confirm_timeout: int = DEADMAN,
    yes: bool = ONE_HOST_YES,
) -> None:
    """Prepare a Debian node: the pinned `mcp` user, resolvers, /srv/mcp/, the agent.

    In detail: the `mcp` user at its pinned UID/GID, subuid/subgid, /srv/mcp/, resolvers with
    fallbacks (and, where dhclient, dhcpcd or NetworkManager is installed, a hook or drop-in that
    keeps it from rewriting resolv.conf), the unit and the agent bundle, started and health-checked.

    Idempotent: a second run changes nothing and says so.  Goes through the plan's
    refusal gate first: refused before any change (exit 1) when the pinned UID/GID
    belongs to another account or `mcp` exists with other ids.  NixOS nodes are
    provisioned by their configuration (refused, exit 1).

    Examples:

      mcfleet provision hyperborea

      mcfleet -C ./fleet provision svc --bundle dist/mcp-agent.pex
    """
    from mcfleet.apply.planwork import Override
    from mcfleet.fleet.models import OS

    del yes  # one host: nothing to confirm
    loaded = load_valid(deprecated_folder(path, "--root DIR"))
    entry = one_host(loaded, host, "provision")
    if entry.host.os != OS.debian:
        raise Refused(
            f"{entry.host.name} runs {entry.host.os}: NixOS nodes are provisioned by their modules",
            location=f"{entry.host.name}: provision",
            hint="build and switch the node's configuration (nixos-rebuild); `mcfleet provision` is for Debian",
        )
    opts = session_options(command=f"provision {host}", json_out=json_out, fail_fast=True, bundle=bundle,
                           health=health_timeout, deadman=confirm_timeout, parallel=1, connect=10.0)  # fmt: skip
    overrides = [Override.parse(o) for o in override]
    run_session(loaded, opts, lambda s: s.provision(entry.host.name, overrides))


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
    app.command("deploy")(deploy)
    app.command("provision")(provision)
