"""The typer application: commands loaded lazily from their `commands_*` module.

A module is imported only when one of its commands runs: `mcfleet validate` must not pay for
asyncssh, grpc and the apply pipeline.  `mcfleet --help` never gets here (main prints it
from the registry).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from mcfleet.cli.registry import COMMANDS, LAZY_COMMANDS, ROOT_EXAMPLES, ROOT_SUMMARY
from mcfleet.cli.state import STATE


def keep_examples_verbatim(text: str | None) -> str | None:
    """Help text whose "Examples:" block is printed line for line (click re-wraps other paragraphs).

    click leaves a paragraph alone when it starts with a line holding only `\\b`; the examples
    become one such paragraph, so long command lines and their aligned comments stay intact.
    """
    if not text or "Examples:" not in text:
        return text
    head, _, tail = text.partition("Examples:")
    lines = [line for line in tail.splitlines() if line.strip()]
    indent = min(len(line) - len(line.lstrip()) for line in lines) if lines else 0
    body = "\n".join("  " + line[indent:] for line in lines)
    return f"{head}Examples:\n\n\b\n{body}\n"


def summary_of(text: str | None) -> str:
    """A command's help up to its first blank line, as one line."""
    first, _, _ = (text or "").strip().partition("\n\n")
    return " ".join(first.split())


def _no_usage_pieces(ctx: Any) -> list[str]:
    return []


def _no_type_label(ctx: Any) -> None:
    return None


def _verbatim_examples(command: Any) -> None:
    command.help = keep_examples_verbatim(command.help)
    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument":
            # An argument's name says what it takes (HOST, PLAN, COMMAND); typer's help table adds its
            # Python type after it ("HOST <str>", "PLAN <path>", "COMMAND <list[str]>").
            param.display_type_rich = _no_type_label
        if getattr(param, "hidden", False) and param.param_type_name == "argument":
            # A deprecated positional (the fleet folder, now -C DIR) is left out of the help's table by
            # `hidden`, but click still prints it in the usage line ("validate [OPTIONS] [path]").
            param.get_usage_pieces = _no_usage_pieces
    for sub in getattr(command, "commands", {}).values():
        # A group lists its commands with click's short help, cut at ~45 characters with "...";
        # the whole first paragraph is wrapped instead ("Push the agent bundle to the hosts and
        # restart it there, with..." said nothing of what comes after).
        sub.short_help = sub.short_help or summary_of(sub.help)
        _verbatim_examples(sub)


@functools.cache
def commands_of(module_name: str) -> dict[str, Any]:
    """The click commands a `commands_*` module registers, built on a private Typer."""
    module = importlib.import_module(f"mcfleet.cli.{module_name}")
    sub = typer.Typer(rich_markup_mode=None)
    module.register(sub)
    commands = dict(typer.main.get_group(sub).commands)
    for command in commands.values():
        _verbatim_examples(command)
    return commands


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(LAZY_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module_name = LAZY_COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        return commands_of(module_name).get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the registry's summaries (no command module imported)."""
        rows = [(name, summary) for name, (_module, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
    name="mcfleet",
    help=keep_examples_verbatim(f"{ROOT_SUMMARY}\n\nExamples:\n\n{ROOT_EXAMPLES}"),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from mcfleet.cli.registry import version_text

        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    fleet: Path | None = typer.Option(
        None,
        "-C",
        "--fleet",
        envvar="MCFLEET_FLEET",
        metavar="DIR",
        help="The fleet folder; default: the nearest folder upward holding fleet.json.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    no_color: bool = typer.Option(False, "--no-color", help="No colours (also: NO_COLOR set, or not a terminal)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    STATE.debug = debug
    STATE.fleet = fleet
    STATE.no_color = no_color
