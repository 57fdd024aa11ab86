"""The `mcfleet` command's entry: the one place errors become exit codes.

Library code raises `McfleetError`; `main()` prints it (no traceback unless --debug) and
returns the documented code (errors.EXIT_TABLE): 0 ok, 1 failure or refusal, 2 invalid input
or usage, 130 interrupted.  With `--detailed-exitcode` every outcome other than "no changes"
(0) and "changes pending" (2) is 1, so a script can tell pending changes from bad input.

`mcfleet`, `mcfleet --help` and `--version` are answered from the registry before typer is
imported (start-up of the help is the Python interpreter's and little else); the plain forms
of `validate` (cli/validate_report.py) and `plan` (cli/plan_fast.py) run without typer too.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING

from mcfleet.cli.registry import (
    COMMANDS,
    GLOBAL_FLAGS,
    GLOBAL_VALUED,
    LAZY_COMMANDS,
    hoist_globals,
    root_help,
    version_text,
)
from mcfleet.cli.state import STATE
from mcfleet.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_INVALID, McfleetError

if TYPE_CHECKING:  # annotations only: `mcfleet --help` imports as little as it can
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["COMMANDS", "LAZY_COMMANDS", "main", "run"]

INTERRUPTED = "interrupted: stopped at Ctrl-C (what finished is kept; run the command again to go on)"
# Commands that only read (a following `logs -f` or `status --watch` ends at Ctrl-C as a rule): nothing to keep
READ_ONLY = frozenset({"plan", "show", "status", "logs", "validate", "journal", "schema", "hosts", "routes"})
STOPPED = "interrupted: stopped at Ctrl-C (this command changes nothing)"


def interrupted_text(args: list[str]) -> str:
    """What Ctrl-C ends a command with: a command that only reads has nothing to keep or to go on with."""
    rest = _args_before_dashdash(args)
    while rest and rest[0].startswith("-"):  # the global options hoist_globals put in front
        rest = rest[2:] if rest[0] in GLOBAL_VALUED else rest[1:]
    return STOPPED if rest and rest[0] in READ_ONLY else INTERRUPTED


def _fast_path(argv: list[str]) -> int | None:
    """Answers that need no command module and no typer: the top-level help and the version."""
    if argv in ([], ["--help"], ["-h"]):
        sys.stdout.write(root_help())
        return 0
    if argv == ["--version"]:
        sys.stdout.write(version_text() + "\n")
        return 0
    return _command_help(argv)


def _command_help(argv: list[str]) -> int | None:
    """`mcfleet <command> [<sub>] --help` from the pre-rendered text (cli/help_render.py), when the
    terminal is at least 80 columns wide: typer renders exactly that text there (click caps help at
    80 columns).  Any other form, or a narrower terminal, goes through typer."""
    words = [a for a in argv if a not in GLOBAL_FLAGS]
    if len(words) < 2 or words[-1] not in ("--help", "-h"):
        return None
    import shutil

    from mcfleet.cli.help_render import HELP_WIDTH
    from mcfleet.cli.help_text import HELP

    text = HELP.get(" ".join(words[:-1]))
    if text is None or shutil.get_terminal_size().columns < HELP_WIDTH:
        return None
    sys.stdout.write(text)
    return 0


def _validate_fast(argv: list[str]) -> int | None:
    """`[--debug] [--no-color] [-C DIR] validate [--json] [--no-cache]` without typer; any other form -> None (typer).

    typer 0.29 builds a pydantic TypeAdapter per parameter at start-up; validate needs none of it.
    """
    from mcfleet.cli.plan_fast import parse_globals

    found = parse_globals(argv, "validate")
    if found is None:
        return None
    globals_, rest = found
    if not set(rest) <= {"--json", "--no-cache"} or len(set(rest)) != len(rest):
        return None

    def validate() -> int:
        from mcfleet.cli.validate_report import run_validate

        return run_validate(None, json_out="--json" in rest, use_cache="--no-cache" not in rest)

    return _without_typer(globals_, validate, detailed=False)


def _plan_fast(argv: list[str]) -> int | None:
    """The plain forms of `plan` (cli/plan_fast.py parses them as typer would) run without typer."""
    if "plan" not in argv:
        return None
    from mcfleet.cli.echo import click_uses_as_is
    from mcfleet.cli.plan_fast import parse

    parsed = parse(argv)
    if parsed is None or not (click_uses_as_is(sys.stdout) and click_uses_as_is(sys.stderr)):
        return None
    globals_, args = parsed

    def plan() -> int:
        from mcfleet.cli.plan_run import run_plan

        return run_plan(*args)

    return _without_typer(globals_, plan, detailed=args[4])  # args[4]: --detailed-exitcode


def _without_typer(globals_: tuple[bool, bool, Path | None], command: Callable[[], int], *, detailed: bool) -> int:
    """Run a command parsed without typer; its errors end as _run_app ends them."""
    STATE.debug, STATE.no_color, STATE.fleet = globals_
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _skip_pydantic_plugin_scan()
    from mcfleet.cli.echo import echo
    from mcfleet.util.terminal_text import terminal_safe  # an error may quote a node: no control sequence

    try:
        return command()
    except McfleetError as exc:
        if STATE.debug:
            _print_traceback()
        echo(terminal_safe(exc.format()), err=True)
        return EXIT_FAILURE if detailed else exc.exit_code
    except KeyboardInterrupt:  # typer: Exit(130), which _run_app reports as below
        echo(STOPPED, err=True)  # `plan`, the one command run this way, only reads
        return EXIT_FAILURE if detailed else EXIT_INTERRUPTED
    except EOFError:  # typer: a newline on stderr, then Abort
        echo(err=True)
        echo("interrupted: aborted", err=True)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # typer: stdout and stderr made quiet on flush, then exit 1
            _pacify_streams()
            return EXIT_FAILURE
        return _internal_error(exc)
    except Exception as exc:  # the one boundary that catches everything
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    from mcfleet.cli.echo import echo
    from mcfleet.util.terminal_text import terminal_safe

    if STATE.debug:
        _print_traceback()
    echo(
        terminal_safe(f"internal error: {type(exc).__name__}: {exc}\n  hint: re-run with --debug and report it"),
        err=True,
    )
    return EXIT_FAILURE


def _pacify_streams() -> None:
    from typer._click.utils import PacifyFlushWrapper

    sys.stdout = PacifyFlushWrapper(sys.stdout)
    sys.stderr = PacifyFlushWrapper(sys.stderr)


def _skip_pydantic_plugin_scan() -> None:
    """With PYDANTIC_DISABLE_PLUGINS=__all__, pydantic's plugin loader returns no plugins, but importing it
    still imports importlib.metadata (~25 ms).  Its one function that pydantic calls, get_plugins(),
    is provided here as that answer, before pydantic is imported."""
    name = "pydantic.plugin._loader"
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") != "__all__" or name in sys.modules or "pydantic" in sys.modules:
        return
    import types

    stub = types.ModuleType(name)
    stub.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules[name] = stub


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def _args_before_dashdash(argv: list[str]) -> list[str]:
    return argv[: argv.index("--")] if "--" in argv else argv


def main(argv: list[str] | None = None) -> int:
    args = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    quick = None if "_MCFLEET_COMPLETE" in os.environ else _fast_path(args)  # completion asks typer
    if quick is not None:
        return quick
    if "_MCFLEET_COMPLETE" not in os.environ:
        quick = _validate_fast(args)
        if quick is not None:
            return quick
    code = None if "_MCFLEET_COMPLETE" in os.environ else _plan_fast(args)
    if code is None:
        code = _run_app(args)
    if "--detailed-exitcode" in _args_before_dashdash(args) and code not in (0, 2):
        return EXIT_FAILURE
    return code


def _run_app(args: list[str]) -> int:
    # pydantic looks for plugins by scanning every installed distribution's metadata the first
    # time a model is built (~40 ms); the CLI uses none (child processes inherit this: harmless).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _skip_pydantic_plugin_scan()
    import typer
    from typer.exceptions import Abort, TyperException

    from mcfleet.cli.app import app
    from mcfleet.util.terminal_text import terminal_safe  # an error may quote a node: no control sequence

    detailed = "--detailed-exitcode" in _args_before_dashdash(args)
    try:
        # standalone_mode=False: typer returns the exit code instead of calling sys.exit.
        result = app(args=args, prog_name="mcfleet", standalone_mode=False)
    except McfleetError as exc:
        if STATE.debug:
            _print_traceback()
        typer.echo(terminal_safe(exc.format()), err=True)
        return EXIT_FAILURE if detailed else exc.exit_code
    except KeyboardInterrupt:
        typer.echo(interrupted_text(args), err=True)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except Abort:
        typer.echo("interrupted: aborted", err=True)
        return EXIT_INTERRUPTED
    except TyperException as exc:  # usage errors: unknown option, bad value...
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        hint = _hosts_hint(exc)
        if hint:
            typer.echo(hint, err=True)
        return EXIT_FAILURE if detailed else int(exc.exit_code or EXIT_INVALID)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except Exception as exc:  # the one boundary that catches everything
        if STATE.debug:
            _print_traceback()
        typer.echo(
            terminal_safe(f"internal error: {type(exc).__name__}: {exc}\n  hint: re-run with --debug and report it"),
            err=True,
        )
        return EXIT_FAILURE
    if result == EXIT_INTERRUPTED:  # typer turns Ctrl-C into a silent return of 130
        typer.echo(interrupted_text(args), err=True)
        return EXIT_FAILURE if detailed else EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


def _hosts_hint(exc: Exception) -> str | None:
    """`mcfleet status rift`: a word where none goes, to a command that selects hosts with --on."""
    import re
    import shlex

    ctx = getattr(exc, "ctx", None)
    found = re.fullmatch(r"Got unexpected extra argument\(s\) \((.+)\)", str(getattr(exc, "message", "")))
    if ctx is None:
        return None
    params = ctx.command.params
    if found is None or not any("--on" in getattr(p, "opts", ()) for p in params):
        return None
    if any(getattr(p, "param_type_name", "") == "argument" for p in params):  # the words went there first
        return None
    words = ",".join(found.group(1).split())
    return f"  hint: hosts are selected with --on: `mcfleet {ctx.info_name} --on {shlex.quote(words)}`"


# The cyclic garbage collector is off for a command's first seconds: a plan's imports and
# its pydantic models allocate ~300,000 objects that live until the process ends, and the
# collector's passes over them cost ~10 % of the plan's CPU (~70 ms at 20 hosts).  A command
# still running after GC_PAUSE_S gets it back, without re-scanning what exists by then.
GC_PAUSE_S = 20.0


def _pause_gc() -> None:
    import gc
    import threading

    def resume() -> None:
        gc.freeze()  # what the start-up built lives until exit: never scanned again
        gc.enable()

    gc.disable()
    timer = threading.Timer(GC_PAUSE_S, resume)
    timer.daemon = True
    timer.start()


def run() -> None:
    """The console script: main(), then exit without the interpreter's teardown.

    Everything mcfleet opens is closed by the commands themselves (SSH connections, forwarded
    sockets and their temp folders, the fleet lock); what is left for the teardown is freeing
    module objects, about 60 ms of CPU.  Output is flushed first, so nothing printed is lost.
    """
    _pause_gc()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or EXIT_FAILURE
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
