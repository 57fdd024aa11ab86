"""`mcfleet completion SHELL`: the completion script (hosts, @roles/@tags and services complete too)."""

from __future__ import annotations

import typer

SHELLS = ("bash", "zsh", "fish")


def completion(shell: str = typer.Argument(..., help="bash, zsh or fish.", metavar="SHELL")) -> None:
    """Print the shell completion script (bash, zsh, fish).

    Commands and options complete, and so do host names, @roles/@tags after --on, and the
    services of a host for `mcfleet logs` (read from the fleet found from the current folder,
    or $MCFLEET_FLEET).

    Examples:

      mcfleet completion bash > /etc/bash_completion.d/mcfleet

      mcfleet completion zsh > "${fpath[1]}/_mcfleet"

      mcfleet completion fish > ~/.config/fish/completions/mcfleet.fish
    """
    from typer._completion_shared import get_completion_script

    from mcfleet.errors import InputError

    if shell not in SHELLS:
        raise InputError(
            f"no completion for the shell {shell!r}", location="mcfleet completion", hint="bash, zsh or fish"
        )
    typer.echo(get_completion_script(prog_name="mcfleet", complete_var="_MCFLEET_COMPLETE", shell=shell))


def register(app: typer.Typer) -> None:
    app.command("completion")(completion)
