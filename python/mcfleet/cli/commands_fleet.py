"""Commands that read only the files: validate, hosts, render, schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mcfleet.cli.complete import complete_host_or_service
from mcfleet.cli.fleetdir import deprecated_folder, fleet_root
from mcfleet.cli.output import emit_json, table
from mcfleet.cli.targets import ON_OPT, selected
from mcfleet.errors import InputError
from mcfleet.fleet.causes import merge_typos
from mcfleet.fleet.load import HostEntry, LoadedFleet, load_fleet

if TYPE_CHECKING:
    from mcfleet.fleet.files import RenderedFile
    from mcfleet.fleet.models import Fleet
    from mcfleet.fleet.render import Rendered

# Deprecated: the fleet folder as an argument (use the global -C DIR); hidden from --help.
ROOT_ARG = typer.Argument(None, hidden=True, show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of text.")


NO_CACHE = typer.Option(False, "--no-cache", help="Validate from scratch (ignore the remembered valid result).")


def validate(path: Path | None = ROOT_ARG, json_out: bool = JSON_OPT, no_cache: bool = NO_CACHE) -> None:
    """Check every host and service file, then the fleet-wide rules.

    Schema problems come first (file + JSON pointer; line and column for JSON syntax
    errors), then each rule's findings with a stable code, a message and a hint.  The
    findings go to stdout, the summary to stderr.  While a file does not load, the fleet
    rules' findings are held back (they may only follow from it; --json lists them under
    "held_back"); a misspelt key is one finding with "did you mean".  Exit 0 when valid,
    2 when there are findings.  A valid result is remembered (in ~/.cache/mcfleet) until a
    file of the fleet or mcfleet itself changes, so validating again is quick.

    Examples:

      mcfleet validate

      mcfleet -C ./fleet validate --json | jq '.findings[].code'

      mcfleet validate --no-cache
    """
    from mcfleet.cli.validate_report import run_validate

    given = deprecated_folder(path, "the fleet folder as an argument")
    code = run_validate(given, json_out=json_out, use_cache=not no_cache)
    if code:
        raise typer.Exit(code)


def _load_usable(path: Path | None, *, warn: bool = True) -> tuple[LoadedFleet, Fleet]:
    """A fleet good enough to read from: fleet.json must load; other problems are a warning."""
    loaded = load_fleet(fleet_root(path))
    if loaded.fleet is None:
        first = loaded.findings[0]
        raise InputError(first.message, location=first.location(), hint=first.hint)
    if loaded.findings and warn:
        files = sorted({f.file for f in loaded.findings})
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        typer.echo(
            f"warning: {len(files)} file(s) have problems and are left out ({shown}); run `mcfleet validate`",
            err=True,
        )
    return loaded, loaded.fleet


def _host_row(entry: HostEntry) -> dict[str, object]:
    host = entry.host
    return {
        "name": host.name,
        "os": str(host.os),
        "arch": str(host.arch),
        "roles": [str(r) for r in host.roles],
        "tags": list(host.tags),
        "addresses": list(host.addresses),
        "ssh": f"{host.ssh.user}@{host.addresses[0]}:{host.ssh.port}",
        "users": {n: {"uid": u.uid, "gid": u.gid} for n, u in sorted(host.users.items())},
        "services": sorted(s.name for s in entry.services),
        "description": host.description,
    }


def hosts(
    path: Path | None = ROOT_ARG,
    on: list[str] | None = ON_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """List the inventory from the files alone (no SSH, no Nix).

    Examples:

      mcfleet hosts

      mcfleet hosts --on @edge

      mcfleet hosts --on 'rift,orion*' --json
    """
    loaded, _ = _load_usable(deprecated_folder(path, "the fleet folder as an argument", command="hosts"), warn=False)
    chosen = selected(loaded, on)
    broken = {} if on else broken_hosts(loaded)  # a selector cannot match what did not load
    if broken:
        typer.echo(
            f"warning: {len(broken)} host file(s) do not load and are listed as invalid; run `mcfleet validate`",
            err=True,
        )
    if json_out:
        emit_json(
            {
                "root": str(loaded.root),
                "hosts": [_host_row(e) for e in chosen],
                "invalid": [{"name": n, "problems": p} for n, p in sorted(broken.items())],
            }
        )
        return
    rows: list[list[object]] = []
    for e in chosen:
        h = e.host
        labels = [",".join(map(str, h.roles)), ",".join(h.tags)]
        rows.append([h.name, h.os, h.arch, *labels, ",".join(h.addresses), len(e.services)])
    headers = ["NAME", "OS", "ARCH", "ROLES", "TAGS", "ADDRESSES", "SERVICES"]
    if broken:  # a NOTE column only when there is something to note
        headers.append("NOTE")
        rows = [[*r, ""] for r in rows]
        rows += [[name, "?", "?", "", "", "", "", f"invalid: {problems[0]}"] for name, problems in broken.items()]
    rows.sort(key=lambda r: str(r[0]))
    typer.echo(table(headers, rows), nl=False)


def routes(
    on: list[str] | None = ON_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """List every route and DNS name the files declare: its proxy, backend, certificate and A record.

    From the files alone (no SSH): what `apply` makes, not what runs.  A public route is on the
    edge's proxy and its name (inside the zone) leads there; another route is on its service's
    own host.  A CERT or A RECORD of "-": an l4 route (its backend ends TLS), or a name
    outside the zone (mcfleet makes no record for it).  --on keeps the routes whose proxy or
    backend host is selected, and the names those hosts own.

    Examples:

      mcfleet routes

      mcfleet routes --on @edge

      mcfleet routes --json | jq '.routes[] | select(.public)'
    """
    from mcfleet.fleet.desired import desired_state
    from mcfleet.fleet.routes import declared_routes

    loaded, _fleet = _load_usable(None)
    chosen = {e.host.name for e in selected(loaded, on)}
    desired = desired_state(loaded)
    owner = {name: host for host, d in desired.items() for name in d.records}
    found = []  # (route, its certificate's path, its name's A record)
    for r in declared_routes(loaded):
        if r.proxy_host in chosen or r.backend_host in chosen:
            certs = desired[r.proxy_host].certs.values() if r.terminates_tls else ()  # l4: the backend's own TLS
            cert = next((c.path for c in certs if r.hostname in c.sans), None)
            record = desired[owner[r.hostname]].records[r.hostname].value if r.hostname in owner else None
            found.append((r, cert, record))
    routed = {r.hostname for r, _cert, _record in found}
    names = [
        (n, rec.value, host)
        for host, d in sorted(desired.items()) if host in chosen
        for n, rec in sorted(d.records.items()) if n not in routed
    ]  # fmt: skip
    if json_out:
        emit_json({
            "root": str(loaded.root),
            "routes": [
                {"route": r.key, "mode": r.mode, "public": r.public, "proxy": r.proxy_host, "backend": r.backend,
                 "backend_host": r.backend_host, "service": r.service, "cert": cert, "a_record": record,
                 "file": r.file}
                for r, cert, record in found
            ],
            "names": [{"name": n, "a_record": value, "owner": host} for n, value, host in names],
        })  # fmt: skip
        return
    if not found and not names:
        typer.echo("no routes or DNS names declared" + (" for these hosts" if on else ""))
        return
    if found:
        rows: list[list[object]] = [
            [r.key, r.mode + (" public" if r.public else ""), r.proxy_host, f"{r.backend} ({r.backend_host})",
             cert or "-", record or "-"]
            for r, cert, record in found
        ]  # fmt: skip
        typer.echo(table(["ROUTE", "MODE", "PROXY", "BACKEND", "CERT", "A RECORD"], rows), nl=False)
    if names:
        typer.echo(("\n" if found else "") + "names without a route:")
        typer.echo(table(["NAME", "A RECORD", "OWNER"], [list(n) for n in names]), nl=False)


def broken_hosts(loaded: LoadedFleet) -> dict[str, list[str]]:
    """Host folders whose host.json did not load -> their problems, one line each."""
    out: dict[str, list[str]] = {}
    for f in merge_typos(list(loaded.findings)):
        parts = f.file.split("/")
        if len(parts) >= 3 and parts[0] == "hosts" and parts[1] not in loaded.hosts:
            out.setdefault(parts[1], []).append(f"{f.location()}: {f.message}")
    return out


def render(
    names: list[str] = typer.Argument(
        None,
        metavar="[HOST] [SERVICE]",
        help="A service, a host (all of its services), or HOST SERVICE.",
        autocompletion=complete_host_or_service,
        show_default=False,
    ),
    host: str = typer.Option(
        "", "--host", help="The host the service is placed on (default: where it is).", metavar="HOST"
    ),
    root: Path | None = typer.Option(None, "--root", hidden=True),  # deprecated: the global -C DIR
    json_out: bool = JSON_OPT,
) -> None:
    """Print the exact `podman run` command of each component of a service.

    For recovery by hand, when mcfleet itself is not at hand: run the commands as the service user
    (e.g. mcp) on the host.  Given a host (or --host alone), every service of that
    host is rendered in boot-stage order (foundation, core, management, services).  A service's
    declared files come first, rendered (templates filled), each written from a here-document
    by mcfleet's node helper, which never follows a link on the way (run those as root).

    Examples:

      mcfleet render mcns

      mcfleet render rift mcr --json

      mcfleet render rift > recover-rift.sh
    """
    from mcfleet.fleet.render import find_host, find_service, render_host, render_service  # only render needs it

    loaded, fleet = _load_usable(deprecated_folder(root, "--root DIR"))
    host_name, service = _render_target(loaded, names or [], host)
    rendered: list[Rendered]
    if service:
        entry, svc = find_service(loaded, service, host_name or None)
        rendered = render_service(entry, svc, fleet)
    elif host_name:
        rendered = render_host(find_host(loaded, host_name), fleet)
    else:
        raise InputError("name a service or a host", hint="e.g. `mcfleet render mcns` or `mcfleet render rift`")
    files = _rendered_files(loaded, {(r.host, r.service) for r in rendered})
    if json_out:
        emit_json([*[f.as_dict() for f in files], *[r.as_dict() for r in rendered]])
        return
    if any(f.writes for f in files):
        from mcfleet.apply.nodeio import helper_source
        from mcfleet.fleet.files import writer_preamble

        typer.echo(writer_preamble(helper_source()))
    for f in files:
        typer.echo(f.script())
    for r in rendered:
        typer.echo(f"# {r.service}/{r.component} on {r.host}")
        typer.echo(r.command(multiline=True))


def _render_target(loaded: LoadedFleet, names: list[str], host: str) -> tuple[str, str]:
    """(host, service) from `render`'s words: SERVICE, HOST, or HOST SERVICE (as `logs` and
    `snapshot` take them); --host HOST goes with a SERVICE word only."""
    if len(names) > 2:
        raise InputError(f"too many names: {' '.join(names)}", hint="give SERVICE, HOST, or HOST SERVICE")
    if len(names) == 2:
        if host and host != names[0]:
            raise InputError(f"two hosts: {names[0]} and --host {host}", hint="give the host once")
        return names[0], names[1]
    if not names:
        return host, ""
    (name,) = names
    is_service = any(svc.name == name for entry in loaded.hosts.values() for svc in entry.services)
    if not is_service and not host and name in loaded.hosts:
        return name, ""
    return host, name


def _rendered_files(loaded: LoadedFleet, placed: set[tuple[str, str]]) -> list[RenderedFile]:
    from mcfleet.fleet.desired import desired_state
    from mcfleet.fleet.files import RenderedFile

    if not any(svc.files for e in loaded.hosts.values() for svc in e.services):
        return []
    return [
        RenderedFile(host, f)
        for host, d in desired_state(loaded).items()
        for f in d.files.values()
        if (host, f.service) in placed
    ]


def schema_dump(
    out: Path = typer.Option(Path("schemas"), "--out", "-o", help="Folder to write the schemas to.", metavar="DIR"),
    check_only: bool = typer.Option(False, "--check", help="Exit 1 if the files in --out differ from the models."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written (or found stale) as JSON."),
) -> None:
    """Write the JSON Schemas generated from the models (fleet, host, service).

    Examples:

      mcfleet schema dump

      mcfleet schema dump --check    # CI: fail when schemas/ drifted

      mcfleet schema dump --check --json | jq '.stale'
    """
    from mcfleet.fleet.schema import render_schemas, write_schemas  # pydantic's JSON Schema generator: only here

    if check_only:
        stale = [n for n, t in render_schemas().items() if not (out / n).exists() or (out / n).read_text() != t]
        if json_out:
            emit_json({"dir": str(out), "stale": stale, "up_to_date": not stale})
        elif stale:
            typer.echo(f"schemas out of date: {', '.join(stale)}\n  hint: run `mcfleet schema dump`", err=True)
        else:
            typer.echo("schemas up to date")
        if stale:
            raise typer.Exit(1)
        return
    from mcfleet.util.files import file_in_the_way

    blocking = file_in_the_way(out, itself=True)
    if blocking is not None:  # was an internal FileExistsError
        raise InputError(f"{blocking} is a file, not a folder", location=f"--out {out}",
                         hint="--out names the folder the schemas go to")  # fmt: skip
    written = write_schemas(out)
    if json_out:
        emit_json({"dir": str(out), "written": [str(p) for p in written]})
        return
    for path in written:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("hosts")(hosts)
    app.command("routes")(routes)
    app.command("render")(render)
    schema = typer.Typer(help="JSON Schemas of the fleet files.", no_args_is_help=True)
    schema.command("dump")(schema_dump)
    app.add_typer(schema, name="schema")
