"""Host selection and confirmation, the same for every command that touches hosts.

- `--on SEL` (repeatable; repeats are merged): names, globs, @role/@tag, !exclusions.
- `deploy HOST`, `provision HOST`, `ssh HOST`, `logs HOST`: exactly one host, by name.
- A command that changes more than one host asks first; `--yes` answers for it.  Without a
  terminal to ask on it refuses (exit 1) and says which flag to pass; "n" exits 1 with a message.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from mcfleet.cli.complete import complete_host, complete_selector
from mcfleet.errors import EXIT_FAILURE, InputError, Refused, SelectionError

if TYPE_CHECKING:
    from mcfleet.fleet.load import HostEntry, LoadedFleet

ON_HELP = "Hosts: names, globs ('orion*'), @role or @tag, !exclude; comma-separated, repeatable (merged)."
YES_HELP = "Do not ask before changing more than one host."


ON_OPT = typer.Option(None, "--on", help=ON_HELP, metavar="SEL", autocompletion=complete_selector)
HOST_HELP = "One host, by name."
HOST_ARG = typer.Argument(..., help=HOST_HELP, autocompletion=complete_host, metavar="HOST")
YES_OPT = typer.Option(False, "--yes", "-y", help=YES_HELP)


def selected(loaded: LoadedFleet, on: Sequence[str] | None) -> list[HostEntry]:
    """Every host when `on` is empty, else what the merged selectors name."""
    from mcfleet.fleet.select import select_hosts

    return select_hosts(loaded, list(on or []))


def one_host(loaded: LoadedFleet, name: str, command: str) -> HostEntry:
    """The single host a one-host command (deploy, provision, ssh, logs) names: a plain host name."""
    from mcfleet.fleet.select import broken_hosts, did_you_mean, left_out

    if not name or any(c in name for c in "*?[@!,"):
        raise InputError(
            f"`mcfleet {command}` takes exactly one host name, not the selector {name!r}",
            location=f"mcfleet {command} HOST",
            hint="name one host (see `mcfleet hosts`); for several, use `mcfleet apply --on SEL`"
            if command in ("deploy", "provision")
            else "name one host (see `mcfleet hosts`)",
        )
    if name not in loaded.hosts and (file := broken_hosts(loaded).get(name)):
        raise left_out(name, file, f"mcfleet {command} {name}", selector=False)
    if name not in loaded.hosts:
        raise SelectionError(
            f"no host named {name!r}",
            location=f"mcfleet {command} {name}",
            hint=did_you_mean(name, loaded.hosts) or f"hosts: {', '.join(sorted(loaded.hosts)) or 'none'}",
        )
    return loaded.hosts[name]


def one_service(entry: HostEntry, name: str, command: str, *, also: str = "") -> None:
    """Refuse a service the host does not run in the fleet's files, naming the ones it does."""
    from mcfleet.fleet.select import did_you_mean

    names = sorted(s.name for s in entry.services)
    if name not in names:
        raise InputError(
            f"{entry.host.name} runs no service named {name!r}",
            location=f"mcfleet {command} {entry.host.name} {name}",
            hint=(did_you_mean(name, names) or f"services on {entry.host.name}: {', '.join(names) or 'none'}") + also,
        )


def confirm_hosts(names: list[str], *, action: str, yes: bool, effect: str = "may change") -> None:
    """Ask before `action` changes more than one host; --yes (or a single host) skips the question.
    `effect` says what it does to them ("would run `uptime` on" for exec); asked before the hosts are
    observed, so apply and agent upgrade "may change" them (an up-to-date host is left alone)."""
    if yes or len(names) <= 1:
        return
    listed = ", ".join(names) if len(names) <= 8 else ", ".join(names[:8]) + f", … ({len(names) - 8} more)"
    if not sys.stdin.isatty():
        raise Refused(
            f"{action} {effect} {len(names)} hosts ({listed}) and there is no terminal to confirm on",
            hint="pass --yes to go ahead, or narrow the hosts with --on SEL",
        )
    if not typer.confirm(f"{action} on {len(names)} hosts ({listed})?", default=False, err=True):
        typer.echo(f"{action}: nothing done (answered no)", err=True)
        raise typer.Exit(EXIT_FAILURE)
