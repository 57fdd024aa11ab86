"""`mcfleet nix …`: the Nix side from the command line (pure nix/lib, the flake registry)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from mcfleet.cli.fleetdir import deprecated_folder, fleet_root
from mcfleet.cli.output import emit_json
from mcfleet.errors import EXIT_INVALID, SelectionError
from mcfleet.fleet.load import load_fleet
from mcfleet.nix.attrs import ATTRS
from mcfleet.nix.host_values import host_values
from mcfleet.nix.lib_eval import nix_findings

# Deprecated: the fleet folder as an argument (use the global -C DIR); hidden from --help.
ROOT_ARG = typer.Argument(None, hidden=True, show_default=False)


def check(
    path: Path | None = ROOT_ARG,
    json_out: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Validate the fleet with the pure-Nix rules of nix/lib (what `checks.<system>.fleet` runs).

    Needs only `nix-instantiate`; works on uncommitted files.  Exit 0 when valid, 2 when not.
    A file that is not valid JSON or does not match its schema is reported as `validate` reports
    it (file and pointer), and nix/lib runs once none is left.

    Examples:

      mcfleet nix check

      mcfleet -C ./fleet nix check --json | jq '.findings[].code'
    """
    root = fleet_root(deprecated_folder(path, "the fleet folder as an argument"))
    # nix/lib reads files that parse and match their schema (builtins.fromJSON stops at the first bad byte,
    # and a missing field is an evaluation error naming a .nix line): those problems are the loader's findings,
    # named by file and pointer, and nix/lib runs once there are none
    unreadable = load_fleet(root).findings
    findings, codes = (list(unreadable), []) if unreadable else asyncio.run(nix_findings(root))
    if json_out:
        emit_json({"valid": not findings, "codes": codes, "evaluated": not unreadable,
                   "findings": [f.as_dict() for f in findings]})  # fmt: skip
    elif findings:
        for finding in findings:
            typer.echo(finding.format(), err=True)
        said = "in the files, before nix/lib can read them" if unreadable else "by nix/lib"
        typer.echo(f"{len(findings)} problem(s) found {said}", err=True)
    else:
        typer.echo(f"ok: nix/lib finds no problem ({len(codes)} rules)")
    if findings:
        raise typer.Exit(EXIT_INVALID)


def host(
    name: str = typer.Argument(..., help="A host name (folder under hosts/).", metavar="HOST"),
    path: Path | None = typer.Option(None, "--root", hidden=True),  # deprecated: the global -C DIR
    json_out: bool = typer.Option(False, "--json", help="Print the values as JSON."),
) -> None:
    """Show what the NixOS modules set for a host: users, resolvers, agent unit, /srv dirs, ports.

    Computed from the files (the same values `nix eval .#lib.hosts.<name>` gives).

    Examples:

      mcfleet nix host rift

      mcfleet nix host orion --json | jq .nameservers
    """
    loaded = load_fleet(fleet_root(deprecated_folder(path, "--root DIR")))
    if name not in loaded.hosts:
        raise SelectionError(f"no host named {name!r}", hint=f"known hosts: {', '.join(sorted(loaded.hosts))}")
    values = host_values(loaded, name)
    if json_out:
        emit_json(values)
        return
    for user, spec in values["users"].items():
        typer.echo(f"user {user}: uid {spec['uid']} gid {spec['gid']}")
    for line in _resolver_lines(values["resolvers"]):
        typer.echo(line)
    typer.echo(f"firewall tcp: {values['firewall']['tcp']} udp: {values['firewall']['udp']}")
    typer.echo("tmpfiles:\n  " + "\n  ".join(values["tmpfiles"]))
    typer.echo(f"{values['agentUnit']['name']}:\n{values['agentUnitText']}")


def _resolver_lines(resolvers: dict[str, Any]) -> list[str]:
    """How the node resolves: with systemd-resolved the fleet's zone goes to its own servers per link
    (a routing domain) and the global servers are the public fallbacks; `nameservers: 1.1.1.1 8.8.8.8`
    alone read as if the fleet's resolvers were not used at all."""
    lines = [f"resolver: {resolvers['resolver']}"]
    options = f" (options {' '.join(resolvers['options'])})" if resolvers.get("options") else ""
    zone = resolvers.get("zone")
    if zone:
        lines.append(f"  zone {zone['name']}: {' '.join(zone['servers'])} (per link, routing domain ~{zone['name']})")
        lines.append(f"  other names: {' '.join(resolvers['servers'])}{options}")
    else:
        lines.append(f"  nameservers, in order: {' '.join(resolvers['servers'])}{options}")
    if resolvers.get("fallbackDns"):
        lines.append(f"  FallbackDNS: {' '.join(resolvers['fallbackDns'])}")
    return lines


def attrs(json_out: bool = typer.Option(False, "--json", help="Print the registry as JSON.")) -> None:
    """List the flake attributes mcfleet uses (checked against flake.nix by the tests).

    Examples:

      mcfleet nix attrs
    """
    if json_out:
        emit_json({k: {"template": a.template, "pure": a.pure, "description": a.description} for k, a in ATTRS.items()})
        return
    for key, spec in ATTRS.items():
        typer.echo(f"{key:16} {spec.template:58} {'pure' if spec.pure else 'nixpkgs'}  {spec.description}")


def register(app: typer.Typer) -> None:
    nix = typer.Typer(
        help="The Nix side: pure nix/lib validation, per-host values, flake attributes.", no_args_is_help=True
    )
    nix.command("check")(check)
    nix.command("host")(host)
    nix.command("attrs")(attrs)
    app.add_typer(nix, name="nix")
