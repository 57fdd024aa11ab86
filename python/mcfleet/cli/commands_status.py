"""`mcfleet status`: one table of the fleet — reachable, agent, services, drift — read-only."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import typer

from mcfleet.cli.fleetdir import fleet_root
from mcfleet.cli.options import CONNECT
from mcfleet.cli.output import emit_json, table, use_color
from mcfleet.cli.targets import ON_OPT, selected
from mcfleet.errors import EXIT_FAILURE, FleetInvalid, McfleetError
from mcfleet.util.aio import run as run_async

if TYPE_CHECKING:
    from mcfleet.fleet.findings import Finding


@dataclass(frozen=True)
class HostStatus:
    host: str
    reachable: bool
    error: str | None = None
    agent_version: str | None = None
    agent_health: str | None = None  # SERVING | NOT_SERVING | what went wrong
    services_up: int | None = None
    services_total: int = 0
    drift: bool | None = None  # pending changes in a plan; None when the host could not be observed
    changes: int = 0
    refused: int = 0
    unread: int = 0  # backends the plan could not read (a proxy, the DNS server): drift there unknown
    note: str | None = None  # the first refusal (shortened for the table), or a backend the plan could not read
    refusals: tuple[str, ...] = ()  # every refusal in full ("subject: reason"), for --json
    # why each declared service is not up: no container, a container not running or failing its check
    not_up: tuple[str, ...] = ()
    # the agent's boot sequence while it has not ended healthy (boot_note): why later stages are down
    boot: str | None = None
    # the TLS routes of the host's proxy for which a handshake at the host's address got no certificate
    not_served: tuple[str, ...] = ()
    # why the host was not observed: unreachable, host-key (a changed key), escalation (no sudo/doas rule),
    # invalid (a file of its folder does not load: `error` is its first problem, `file` that file)
    cause: str | None = None
    file: str | None = None
    # the ids of changes left out of DRIFT while a host file does not load: they may follow from it
    held_back: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        serving = self.reachable and self.agent_health == "SERVING"
        clean = not self.drift and not self.refused and not self.unread
        return serving and clean and not self.not_up and not self.not_served

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def row(self) -> list[object]:
        # not tried: without its host.json there is no address, and a plan without one of its service files
        # would take that service for one to remove
        if self.cause == "invalid":
            error = self.error or ""
            said = error if len(error) <= 120 else error[:119] + "…"
            return [self.host, "?", "-", "-", "-", "?", f"not observed: {said}; run `mcfleet validate`"]
        if not self.reachable:
            if self.cause == "escalation":  # it answered SSH: the login may not become root
                return [self.host, "yes", "-", "-", "-", "?", f"cannot run as root: {self.error}"]
            label = "host key changed" if self.cause == "host-key" else "unreachable"
            return [self.host, "no", "-", "-", "-", "?", f"{label}: {self.error}"]
        services = (
            f"{self.services_up}/{self.services_total}" if self.services_up is not None else f"?/{self.services_total}"
        )
        drift = "refused" if self.refused else ("yes" if self.drift else ("unknown" if self.unread else "no"))
        if self.drift:
            drift += f" ({self.changes} change{'s' if self.changes != 1 else ''})"
        # An outage comes first, before a refusal or a backend not read (a colleague without the age
        # identity saw only "no operator identity…" while api was down): services down, then names
        # clients get no TLS for.
        parts = []
        if self.not_up:
            first = self.not_up[0] if len(self.not_up[0]) <= 80 else self.not_up[0][:79] + "…"
            more = f" (+{len(self.not_up) - 1} more)" if len(self.not_up) > 1 else ""
            parts.append(f"boot {self.boot}; not up: {first}{more}" if self.boot else f"not up: {first}{more}")
        if self.not_served:
            more = f" (+{len(self.not_served) - 1} more)" if len(self.not_served) > 1 else ""
            parts.append(f"no TLS: {self.not_served[0]}{more}")
        if self.held_back:
            parts.append(f"{len(self.held_back)} change(s) held back while a host file does not load")
        note = "; ".join([*parts, self.note] if self.note else parts) or None
        return [self.host, "yes", self.agent_version or "-", self.agent_health or "-", services, drift, note]


def services_up(
    wanted: set[str], containers: list[Any], checks: dict[str, str] | None, stopped: Collection[str] = ()
) -> tuple[int, list[str]]:
    """How many of the wanted services are up, and why each other one is not: "hello: no container",
    "hello: exited" (a container's state), "api-db: tcp check: …" (a failing check).

    A service is up when every container of it runs and passes its health check (`checks`: the
    agent's answer, container -> "" or why; None from an agent too old to check: running counts).
    `stopped`: the services an operator stopped (`mcfleet agent stop`): said so, as down on purpose."""
    from mcfleet.agent.spec import ASIDE

    by_service: dict[str, list[Any]] = {}
    for c in containers:
        if c.name.endswith(ASIDE):
            continue  # the old container of a replace under way (removed at the agent's next converge)
        by_service.setdefault(c.labels.get("io.mcfleet.service", ""), []).append(c)
    checks = checks or {}
    up, why_not = 0, []
    for service in sorted(wanted):
        mine = by_service.get(service, [])
        said = [f"{c.name}: {c.crash_loop}" for c in mine if c.crash_loop]
        on_purpose = " (stopped with `mcfleet agent stop`)" if service in stopped else ""
        said += [f"{c.name}: {c.state}{on_purpose}" for c in mine if c.state != "running" and not c.crash_loop]
        said += [
            f"{c.name}: nothing listens on {', '.join(c.unforwarded)} (its port forwarder is gone)"
            for c in mine
            if c.state == "running" and c.unforwarded and not c.crash_loop
        ]
        said += [
            f"{c.name}: {checks[c.name]}"
            for c in mine
            if c.state == "running" and checks.get(c.name) and not c.crash_loop and not c.unforwarded
        ]
        if not mine:
            said = [f"{service}: no container"]
        up += not said
        why_not += said
    return up, why_not


def routes_not_served(served: dict[str, str] | None, address: str) -> tuple[str, ...]:
    """The TLS routes (`<listener>/<hostname>`) for which a handshake for the name at the host's address got
    no certificate (the facts' served_certs: ''), each with where it was asked; none when not asked."""
    return tuple(
        f"{key} (a handshake at {address}:{key.partition('/')[0]} gets no certificate)"
        for key, fingerprint in sorted((served or {}).items())
        if not fingerprint
    )


def boot_note(boot: Any, now: float) -> str | None:
    """`boot_text` of Facts' `boot` (a dict; None from an agent that does not say, or when there is nothing to say)."""
    from mcfleet.agent.events import boot_text

    if not isinstance(boot, dict):
        return None
    attempt, retry_at = boot.get("attempt"), boot.get("retry_at")
    text = boot_text(str(boot.get("state", "")), str(boot.get("stage") or ""), what=str(boot.get("what") or ""),
                     attempt=attempt if isinstance(attempt, int) else 0,
                     retry_at=retry_at if isinstance(retry_at, int | float) else 0.0, now=now)  # fmt: skip
    return text or None


def collect(loaded: Any, names: list[str], connect_timeout: float) -> tuple[list[HostStatus], dict[str, Any]]:
    """Facts (one round trip per host), the agent's health, and a plan for the drift column; and the
    plan's hosts gone from hosts/ with things left on their nodes (name -> GoneHost)."""
    from mcfleet.apply.status import host_status
    from mcfleet.cli.commands_plan import bundle_hashes
    from mcfleet.fleet.desired import ipv4_address
    from mcfleet.observe.facts import Facts
    from mcfleet.plan.planner import plan_fleet
    from mcfleet.transport.ssh import SshOptions, SshPool

    hashes, _note, _inputs = bundle_hashes(loaded, names)

    async def go() -> tuple[Any, Any, list[Any], dict[str, tuple[dict[str, str] | None, Any]]]:
        # A host's agent health and its containers' checks need only its connection: they start once the
        # plan has connected to the host, beside its facts and reads, rather than after every host's plan.
        agents: dict[str, asyncio.Future[Any]] = {}
        checks: dict[str, asyncio.Future[tuple[dict[str, str] | None, Any]]] = {}

        def connected(name: str) -> None:
            # the binary, unit and manifest are in the facts: the probe only for an agent that does not serve
            agents[name] = asyncio.ensure_future(host_status(pool, loaded.hosts[name], probe_if_serving=False))
            if loaded.hosts[name].services:
                checks[name] = asyncio.ensure_future(health_checks(pool, loaded.hosts[name]))

        async with SshPool(SshOptions(connect_timeout=connect_timeout), hosts=loaded.hosts) as pool:
            try:
                plan, facts = await plan_fleet(loaded, names, pool=pool, agent_hashes=hashes, connected=connected)
                reachable = [n for n in names if isinstance(facts[n], Facts) and n in agents]
                # every host with services whose agent answered: its checks, and its boot when they are not up
                checked = [n for n in reachable if n in checks and getattr(facts[n], "containers", None) is not None]
                return plan, facts, [await agents[n] for n in reachable], {n: await checks[n] for n in checked}
            finally:
                started = [*agents.values(), *checks.values()]
                for task in started:  # the ones not awaited (and all, when the plan failed)
                    task.cancel()
                await asyncio.gather(*started, return_exceptions=True)

    plan, facts, agents, checks = run_async(go())
    by_host = {a.host: a for a in agents}
    broken = bool(invalid_hosts(loaded))
    rows = []
    for name in names:
        item = facts[name]
        entry = loaded.hosts[name]
        if not isinstance(item, Facts):
            rows.append(
                HostStatus(
                    name,
                    False,
                    error=item.reason,
                    services_total=sum(s.active for s in entry.services),
                    cause=item.cause,
                )
            )
            continue
        agent = by_host.get(name)
        wanted = {s.name for s in entry.services if s.active}  # "active": false: not meant to run on the node
        up: int | None = None
        not_up: list[str] = []
        checked, boot = checks.get(name, (None, None))
        if item.containers is not None:
            up, not_up = services_up(wanted, item.containers, checked, item.services_held_stopped)
        actions = plan.for_host(name)
        held = held_back_changes(actions) if broken else ()
        changes = [a for a in actions if a.kind != "refuse" and a.id not in held]
        rows.append(
            HostStatus(
                name,
                True,
                agent_version=(agent.version if agent else None) or (item.agent.version if item.agent else None),
                agent_health=agent.health if agent else None,
                services_up=up,
                services_total=len(wanted),
                drift=bool(changes),
                changes=len(changes),
                refused=sum(1 for a in actions if a.kind == "refuse"),
                unread=sum(1 for u in plan.unobserved if u.host == name),
                note=status_note(name, actions, plan),
                refusals=refusal_lines(actions),
                not_up=tuple(not_up),
                boot=boot_note(boot, time.time()) if not_up else None,
                not_served=routes_not_served(item.served_certs, ipv4_address(entry)),
                held_back=held,
            )
        )
    return rows, dict(plan.gone)


def held_back_changes(actions: list[Any]) -> tuple[str, ...]:
    """The ids of a host's changes that may follow from another host whose host.json or service file does
    not load, and so cannot be told from drift: its removals (a service that moved to the broken host is
    "no longer declared" here; the public routes and certs the edge holds for the broken host's services
    and host.json are declared by no file the plan read), and the manifest update when nothing else is
    left to record."""
    from mcfleet.phase import Phase

    removals = [a.id for a in actions if a.kind == "delete"]
    if not removals:
        return ()
    rest = [a for a in actions if a.kind not in ("refuse", "delete")]
    if all(a.phase == Phase.manifest for a in rest):
        return (*removals, *(a.id for a in rest))
    return tuple(removals)


def host_folder(file: str) -> str | None:
    """The host folder a fleet file is in (`hosts/<name>/…`), None for fleet.json or hosts/ itself."""
    parts = file.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "hosts" and parts[1] else None


def invalid_hosts(loaded: Any) -> dict[str, Finding]:
    """Each host folder holding a file that did not load (its host.json, a service file) -> the first
    problem found in it (a Finding; a misspelt key is one, with "did you mean")."""
    from mcfleet.fleet.causes import merge_typos

    out: dict[str, Finding] = {}
    for finding in merge_typos(list(loaded.findings)):
        if (folder := host_folder(finding.file)) is not None:
            out.setdefault(folder, finding)
    return out


def invalid_warning(invalid: dict[str, Finding], held_back: int, changes: int = 0) -> str:
    """The stderr line under the table: which host files do not load, and what was held back for them."""
    listed = ", ".join(f"{h} ({f.file})" for h, f in sorted(invalid.items()))
    line = (
        f"warning: {len(invalid)} host(s) not observed, a file of theirs does not load: {listed}; "
        "the other hosts' DRIFT is planned without them; run `mcfleet validate`"
    )
    if held_back:
        line += f" ({held_back} finding(s) of the fleet rules held back: they may follow from these files)"
    if changes:
        line += (
            f"; {changes} change(s) of the other hosts held back from DRIFT (a removal there may be a service "
            "that moved to a host that does not load): `mcfleet plan` lists them once the files load"
        )
    return line


def may_select(on: list[str] | None, folder: str) -> bool:
    """Whether `--on` may select a host folder whose host.json does not load: without --on, or when a term
    is a role or tag (its roles and tags cannot be read) or the selector only excludes (it starts from every
    host), unless it leaves that host out by name.  A name or a glob that matches it is refused already."""
    terms = [t.strip() for part in on or [] for t in part.split(",") if t.strip()]
    if not terms:
        return True
    if f"!{folder}" in terms:
        return False
    return all(t.startswith("!") for t in terms) or any(t.startswith("@") for t in terms)


def gone_lines(gone: dict[str, Any]) -> list[str]:
    """Below the table: each host whose folder left hosts/ while its node held services, records or routes."""
    from mcfleet.plan.gone import summary

    return [f"{host}: gone from hosts/, its node still holds {summary(entry)}: `mcfleet plan` lists them; "
            f"`mcfleet forget {host}` once dealt with" for host, entry in gone.items()]  # fmt: skip


async def health_checks(pool: Any, entry: Any) -> tuple[dict[str, str] | None, Any]:
    """The agent's health check of each running container, run now (None when it cannot tell), and
    its boot sequence's state (Facts' `boot`)."""
    from mcfleet.agent.client import AgentClient
    from mcfleet.kinds.service import AGENT_TIMEOUT, agent_socket

    try:
        node = await pool.connect(entry)
        target = await agent_socket(node, entry.host.agent.socket)
        async with AgentClient(target, timeout=AGENT_TIMEOUT) as client:
            answer = await client.facts(events=0, check_health=True)
    except McfleetError:
        return None, None  # the plan's read of the same agent already says why
    got = answer.get("checks")
    return ({str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else None), answer.get("boot")


def refusal_lines(actions: list[Any]) -> tuple[str, ...]:
    """Every refusal in full, "subject: reason" (the JSON's `refusals`; NOTE shows the first, shortened)."""
    return tuple(f"{a.subject}: {a.reason}" for a in actions if a.kind == "refuse")


def status_note(host: str, actions: list[Any], plan: Any) -> str | None:
    """Why DRIFT says "refused" (the first refusal, shortened), else what the plan could not read:
    the table's one line says where to look, `mcfleet plan --on HOST` says it all."""
    refusals = [a for a in actions if a.kind == "refuse"]
    if refusals:
        first = refusals[0]
        reason = first.reason if len(first.reason) <= 80 else first.reason[:79] + "…"
        more = f" (+{len(refusals) - 1} more)" if len(refusals) > 1 else ""
        return f"{first.subject}: {reason}{more}"
    unread = [u for u in plan.unobserved if u.host == host]
    return f"{unread[0].phase} not read: see `mcfleet plan --on {host}`" if unread else None


def status(
    on: list[str] | None = ON_OPT,
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Redraw every --interval seconds until Ctrl-C."),
    interval: float = typer.Option(
        5.0, "--interval", min=1.0, help="Seconds between redraws with --watch.", metavar="SECONDS"
    ),
    connect_timeout: float = CONNECT,
) -> None:
    """One table of the fleet: reachable, agent version and health, services up, drift.

    SERVICES counts the services whose containers all run and pass their health check, run
    once now by the agent (NOTE says why one is not up: its check, its container's state;
    and "no TLS:" a route of the host's proxy for which a TLS handshake for its name at the
    host's address gets no certificate).
    With --watch --json, one JSON document per line (NDJSON), each with its time `at`.
    DRIFT is what `mcfleet plan` would change on the host (yes/no and how many changes;
    "refused" when the plan has a refusal).  Read-only.  Exit 0 when every host is reachable,
    its agent serving, every service up, every TLS route answering and nothing drifted, else 1
    (DRIFT "unknown": a backend the plan could not read, such as a stopped proxy).  Below the
    table, a host whose folder left hosts/ while its node still held services, DNS records or
    routes (a plan's `gone`; it makes the exit 1 too, until `mcfleet forget`).
    A host whose host.json or a service file does not load is not observed: its row names the
    file and the first problem (--json: "cause": "invalid", "file", "error"; shown also under
    an --on @role or @tag, which cannot read its roles), a warning says so, and the exit is 1;
    every other host is observed, its removals held back from DRIFT (one may be a service that
    moved to the host that does not load; --json: "held_back").  A fleet.json that does not
    load still refuses (exit 2).

    Examples:

      mcfleet status

      mcfleet status --on @edge --watch

      mcfleet status --json | jq '.hosts[] | select(.drift)'
    """
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check
    from mcfleet.util.terminal_text import terminal_safe

    loaded = load_fleet(fleet_root())
    findings = check(loaded)
    # A file under hosts/<name>/ that does not load leaves that host out of `loaded.hosts` (or without the
    # service): that host alone cannot be observed, every other host still can.  A file that is no host's
    # (fleet.json, hosts/ itself) leaves no fleet to observe.  The rules' findings may be only the knock-on
    # of a host that did not load (a master whose host.json is broken makes "no master"): they are held
    # back while one does not.
    invalid = invalid_hosts(loaded)
    fleet_wide = [f for f in loaded.findings if host_folder(f.file) is None]
    held_back = findings[len(loaded.findings) :] if invalid else []
    if fleet_wide or (findings and not invalid):
        raise FleetInvalid(list(findings), root=str(loaded.root))
    chosen = selected(loaded, on)  # a selector naming a host whose host.json does not load is refused there
    names = [e.host.name for e in chosen if e.dir.name not in invalid]
    # without --on, a row for each; with it, for those the selection holds, and a host whose host.json does
    # not load wherever a role or tag may match it (it has none to read: shown rather than left out)
    chosen_folders = {e.dir.name for e in chosen}
    not_loaded = [
        HostStatus(folder, False, error=f"{f.location()}: {f.message}", cause="invalid", file=f.file)
        for folder, f in sorted(invalid.items())
        if folder in chosen_folders or (folder not in loaded.hosts and may_select(on, folder))
    ]
    headers = ["HOST", "REACHABLE", "AGENT", "HEALTH", "SERVICES", "DRIFT", "NOTE"]
    while True:
        rows, gone = collect(loaded, names, connect_timeout)
        rows = sorted([*rows, *not_loaded], key=lambda r: r.host)
        gone = {h: e for h, e in gone.items() if h not in invalid}  # its folder is there: not gone, just broken
        # a broken host file fails the exit also under --on: a role or tag selector cannot tell whether it
        # would have matched a host whose host.json does not load (a false OK for monitoring)
        ok = all(r.ok for r in rows) and not gone and not invalid
        if json_out:
            data = {"hosts": [r.as_dict() for r in rows],
                    "gone": {h: e.model_dump(mode="json") for h, e in gone.items()}, "ok": ok,
                    "held_back": [f.as_dict() for f in held_back]}  # fmt: skip
            if watch:  # one document per line (NDJSON), each when it is read: `| jq -c` or a line reader follows
                typer.echo(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}, default=str))
            else:
                emit_json(data)
        else:
            if watch and use_color():
                typer.echo("\x1b[2J\x1b[H", nl=False)  # clear the screen, cursor home
            if watch:
                typer.echo(f"mcfleet status — {time.strftime('%H:%M:%S')} (every {interval:g} s, Ctrl-C stops)")
            typer.echo(table(headers, [r.row() for r in rows]), nl=False)
            for line in gone_lines(gone):
                typer.echo(terminal_safe(line))  # names from the node's manifest: no control sequence runs
        if invalid:
            changes = sum(len(r.held_back) for r in rows)
            typer.echo(terminal_safe(invalid_warning(invalid, len(held_back), changes)), err=True)
        if not watch:
            break
        time.sleep(interval)
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
