"""`mcfleet plan`'s work, without typer: cli/commands_plan.py maps the options to `run_plan`, and
cli/plan_fast.py calls it directly for the forms of the command it parses itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mcfleet.cli.echo import echo
from mcfleet.cli.fleetdir import deprecated_folder, fleet_root
from mcfleet.cli.output import emit_json, use_color
from mcfleet.errors import EXIT_CHANGES, EXIT_FAILURE, EXIT_OK, FleetInvalid, InputError
from mcfleet.util.terminal_text import terminal_safe

if TYPE_CHECKING:
    from mcfleet.fleet.load import LoadedFleet
    from mcfleet.kinds.base import ResourceKind
    from mcfleet.plan.model import Plan

# asyncssh, grpc, the planner and the bundle code are imported where a plan is made, so that
# `mcfleet plan --help` (and the command list) cost none of them.


def select(loaded: LoadedFleet, selector: str | list[str] | None) -> list[str]:
    from mcfleet.fleet.select import select_hosts

    return [e.host.name for e in select_hosts(loaded, selector)]


def bundle_hashes(
    loaded: LoadedFleet, hosts: list[str], *, build_missing: bool = False
) -> tuple[dict[str, str], str | None, str]:
    """The agent each Debian host should run: the bundle already built for these sources (built first only
    with `build_missing`: a plan saved for apply must compare every agent, or apply, which builds it,
    plans an agent upgrade the saved plan lacks and refuses it).

    Returns the hashes; when the bundle is not built yet, a note saying so (the plan then compares
    the node with what the last apply recorded, and `apply` builds and compares again); and the
    inputs hash of the bundle the hashes came from ("" when none), which a saved plan records.
    """
    from mcfleet.apply.artifact_key import build_key
    from mcfleet.bundle.build import cached_bundle

    debian = [h for h in hosts if build_key(loaded.hosts[h].host) == "pex"]  # the hosts apply gives the PEX
    if not debian:
        return {}, None, ""
    inputs, sha = cached_bundle()
    if sha is None and build_missing:
        from mcfleet.bundle.build import build_agent_bundle

        echo("building the agent bundle for these sources first (the saved plan compares each Debian host's "
             "agent with it; ~15 s, then cached)", err=True)  # fmt: skip
        bundle = build_agent_bundle()
        inputs, sha = bundle.inputs_hash, bundle.sha256
    if sha is None:
        return (
            {},
            "note: the agent bundle for these sources is not built yet, so an agent upgrade shows at apply time",
            "",
        )
    return dict.fromkeys(debian, sha), None, inputs


def kinds_kept(skip: list[str], *, saving: bool) -> tuple[list[ResourceKind], list[str]]:
    """The kinds to plan and the phases left out (`--skip`); a partial plan is never saved."""
    from mcfleet.kinds import KINDS

    phases = [str(k.phase) for k in KINDS]
    wanted = [p.strip() for item in skip for p in item.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in phases]
    if unknown:
        raise InputError(f"not a kind: {', '.join(unknown)}", location="--skip", hint=f"one of {', '.join(phases)}")
    if wanted and saving:
        raise InputError("a plan with --skip leaves kinds out, so it cannot be saved for apply",
                         location="--skip", hint="save a full plan: drop --skip (or -o)")  # fmt: skip
    return [k for k in KINDS if str(k.phase) not in wanted], [p for p in phases if p in wanted]


def writable_plan_path(out: Path | None) -> None:
    """Refuse an `-o` that cannot become a file before any host is observed: a folder, a path under a
    file, or one whose folder does not exist (no folder is made for it).  Both forms of the command
    (typer's and cli/plan_fast.py's) reach this through `run_plan`."""
    if out is None:
        return
    if out.is_dir():
        raise InputError("is a folder: -o names the plan file", location=str(out), hint=f"e.g. -o {out / 'plan.json'}")
    from mcfleet.plan.saved import refuse_missing_plan_folder
    from mcfleet.util.files import file_in_the_way

    blocking = file_in_the_way(out)
    if blocking is not None:
        raise InputError(f"{blocking} is a file, so no folder can hold the plan there", location=str(out),
                         hint="choose another path for -o")  # fmt: skip
    refuse_missing_plan_folder(out)


def save_or_say(plan: Plan, out: Path) -> None:
    """Save the plan (atomically); a failed write names the path and why, not an internal error."""
    from mcfleet.plan.saved import save_plan

    try:
        save_plan(plan, out)
    except OSError as exc:
        raise InputError(f"cannot write the plan: {exc.strerror or exc}", location=str(out),
                         hint="choose a path you can write for -o") from exc  # fmt: skip


def mark_skipped(plan: Plan, skipped: list[str]) -> Plan:
    """Each observed host lists the skipped kinds as not planned (the plan says it is partial)."""
    from mcfleet.plan.model import Blocked

    if not skipped:
        return plan
    observed = [h for h in plan.hosts if h not in plan.unreachable]
    extra = [Blocked(host=h, phase=p, reason=f"not planned (--skip {p})") for h in observed for p in skipped]
    return plan.model_copy(update={"blocked": [*plan.blocked, *extra]})


def exit_code(plan: Plan, *, detailed: bool) -> int:
    """1 when hosts were unreachable or something is refused; 2 for pending changes with --detailed-exitcode.

    With --detailed-exitcode, 0 says the fleet matches its files: a backend that was not read (the DNS
    server, a proxy, an agent) leaves that unknown, and a host gone from hosts/ left things nothing
    declares, so a plan without changes exits 1 then."""
    if plan.unreachable or plan.refusals:
        return EXIT_FAILURE
    if detailed and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_FAILURE if detailed and (plan.unobserved or plan.gone) else EXIT_OK


def unknown_drift_note(plan: Plan) -> str:
    """Why --detailed-exitcode gives 1 for a plan without changes (said on stderr)."""
    if not plan.unobserved:
        return f"exit 1: gone from hosts/, with things left on their nodes: {', '.join(plan.gone)} (see above)"
    where = ", ".join(sorted({f"{u.host} {u.phase}" for u in plan.unobserved}))
    return f"exit 1: not read, so drift there is unknown: {where} (see `not read:` above)"


def run_plan(  # noqa: PLR0917 (one parameter per option of the command)
    path: Path | None,
    on: list[str] | None,
    out: Path | None,
    json_out: bool,
    detailed_exitcode: bool,
    show_values: bool,
    connect_timeout: float,
    skip: list[str],
) -> int:
    """Observe the selected hosts and show (or save) what `apply` would change; returns the exit code."""
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check
    from mcfleet.kinds.system import add_closure_diffs, evaluated_toplevels
    from mcfleet.plan.planner import plan_fleet
    from mcfleet.plan.render import render_text
    from mcfleet.report.progress import make_progress
    from mcfleet.transport.ssh import SshOptions
    from mcfleet.util.aio import run as run_async

    loaded = load_fleet(fleet_root(deprecated_folder(path, "the fleet folder as an argument", command="plan")))
    findings = check(loaded)
    if findings:
        raise FleetInvalid(list(findings), root=str(loaded.root))
    hosts = select(loaded, on)
    kinds, skipped = kinds_kept(skip, saving=out is not None)
    writable_plan_path(out)
    options = SshOptions(connect_timeout=connect_timeout)
    agent_hashes, note, agent_inputs = bundle_hashes(loaded, hosts, build_missing=out is not None)

    async def observe_and_diff() -> tuple[Plan, str | None]:  # one event loop for the whole plan
        with make_progress(title="gathering facts", quiet=json_out) as progress:
            if (loaded.root / "flake.nix").is_file():  # `nix eval` of each NixOS system first: it takes seconds
                for name in (h for h in hosts if str(loaded.hosts[h].host.os) == "nixos"):
                    progress.update(name, "nix eval", "its system's store path, offline (for `~ system old → new`)")
            systems, system_note = await evaluated_toplevels(loaded, hosts)  # NixOS: `~ system old → new`
            hashes = {**agent_hashes, **systems}
            made, _facts = await plan_fleet(
                loaded, hosts, options=options, progress=progress, agent_hashes=hashes, kinds=kinds
            )
        await add_closure_diffs(made)
        return made, system_note

    result, system_note = run_async(observe_and_diff())
    result = mark_skipped(result, skipped)
    if agent_inputs:
        result.agent_inputs = agent_inputs  # apply of the saved plan: mcfleet's sources changed? (before it builds)
    if out is not None:
        save_or_say(result, out)
    if json_out:
        emit_json(result.model_dump(mode="json"))
    else:
        echo(render_text(result, detailed=show_values, color=use_color()), nl=False)
        for line in (note, system_note):
            if line:
                echo(terminal_safe(line), err=True)
        if out is not None and out.is_file():
            echo(f"saved to {out}; apply it with `mcfleet apply {out}`")
        elif out is not None:  # a device or a pipe: nothing to apply later
            echo(f"written to {out}", err=True)
    code = exit_code(result, detailed=detailed_exitcode)
    if (
        code == EXIT_FAILURE
        and (result.unobserved or result.gone)
        and not (result.unreachable or result.refusals or json_out)
    ):
        echo(unknown_drift_note(result), err=True)
    return code
