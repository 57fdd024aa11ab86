"""The `mcfleet` command: typer only, and the one place errors become exit codes.

Each command lives in its own `commands_*` module, loaded lazily (LAZY_COMMANDS).  Library code
raises `McfleetError`; `main()` prints it (no traceback unless --debug) and exits
with the documented code: 0 ok, 1 failure, 2 invalid input, 130 interrupted.
"""

from __future__ import annotations

import functools
import importlib
import sys
import traceback
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from mcfleet import __version__
from mcfleet.cli.state import STATE
from mcfleet.errors import EXIT_FAILURE, EXIT_INTERRUPTED, McfleetError

# Command name -> the module that registers it.  A module is imported only when one of its
# commands runs (or for the full --help listing): `mcfleet validate` must not pay for
# asyncssh, grpc and the apply pipeline (~0.4 s of start-up on every call otherwise).
LAZY_COMMANDS: dict[str, str] = {
    "validate": "commands_fleet",
    "hosts": "commands_fleet",
    "render": "commands_fleet",
    "schema": "commands_fleet",
    "plan": "commands_plan",
    "apply": "commands_apply",
    "deploy": "commands_apply",
    "provision": "commands_apply",
    "agent": "commands_agent",
    "lab": "commands_lab",
    "nix": "commands_nix",
}


@functools.cache
def _commands_of(module_name: str) -> dict[str, Any]:
    """The click commands a `commands_*` module registers, built on a private Typer."""
    module = importlib.import_module(f"mcfleet.cli.{module_name}")
    sub = typer.Typer(rich_markup_mode=None)
    module.register(sub)
    return dict(typer.main.get_group(sub).commands)


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(LAZY_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module_name = LAZY_COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        return _commands_of(module_name).get(cmd_name)


app = typer.Typer(
    cls=LazyGroup,
    name="mcfleet",
    help="Declarative fleet toolkit: validate host files, plan and apply changes to NixOS and Debian nodes.\n\n"
    "Examples:\n\n"
    "  mcfleet validate            # check every host and service file\n\n"
    "  mcfleet hosts --on @edge    # list the edge nodes\n\n"
    "  mcfleet plan --on rift      # what would change on rift\n\n"
    "  mcfleet apply --all         # converge the whole fleet",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mcfleet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    STATE.debug = debug


def main(argv: list[str] | None = None) -> int:
    try:
        # standalone_mode=False: typer returns the exit code instead of calling sys.exit.
        result = app(args=argv, standalone_mode=False)
    except McfleetError as exc:
        if STATE.debug:
            traceback.print_exc()
        typer.echo(exc.format(), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except Abort:
        typer.echo("aborted", err=True)
        return EXIT_INTERRUPTED
    except TyperException as exc:  # usage errors: unknown option, bad value...
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        return int(exc.exit_code)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except Exception as exc:  # the one boundary that catches everything
        if STATE.debug:
            traceback.print_exc()
        typer.echo(f"internal error: {type(exc).__name__}: {exc}\n  hint: re-run with --debug and report it", err=True)
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
