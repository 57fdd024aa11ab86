"""`mcfleet <command> --help` is printed from cli/help_text.py without typer: the text must be typer's."""

from __future__ import annotations

import os
import subprocess
import sys

from mcfleet.cli.help_render import command_paths, module_source, render, render_all
from mcfleet.cli.help_text import HELP


def test_the_pre_rendered_help_is_what_typer_renders_for_every_command() -> None:
    """Fails when a command's options or docstring changed without `python -m mcfleet.cli.help_render`."""
    live = render_all()
    assert set(HELP) == set(live), "commands added or removed: run `python -m mcfleet.cli.help_render`"
    drifted = [key for key in live if HELP[key] != live[key]]
    assert not drifted, f"help changed for {drifted}: run `python -m mcfleet.cli.help_render`"


def test_the_generated_module_is_exactly_what_the_generator_writes() -> None:
    from mcfleet.cli import help_text

    with open(help_text.__file__, encoding="utf-8") as f:
        assert f.read() == module_source(render_all())


def test_every_option_and_argument_names_what_it_takes() -> None:
    """`--override HOST:WHAT`, `--parallel N`, `restore {HOST} {SERVICE} {PATH}`: not typer's type labels
    (`--override <list[str]>`, `--connect-timeout <float>`, `HOST <str>`) nor parameter names (`{host}`)."""
    import re

    for key, text in HELP.items():
        usage = text.splitlines()[0]
        assert not re.search(r"[{\[][a-z_]+[}\]]", usage.replace("[OPTIONS]", "")), (key, usage)
        options = text.partition("\nOptions:\n")[2]
        labelled = re.findall(r"^ +(?:-\w, )?(--[\w-]+ <[^>]+>)", options, flags=re.MULTILINE)
        assert not labelled, (key, labelled)
        arguments = text.partition("\nArguments:\n")[2].partition("\nOptions:\n")[0]
        typed = re.findall(
            r"^ +([A-Z\[][A-Z_\[\] .]* <[^>]+>)", arguments, flags=re.MULTILINE
        )  # "HOST <str>", "PLAN <path>"
        assert not typed, (key, typed)


def test_sub_commands_are_covered() -> None:
    assert ("lab", "up") in command_paths() and "lab up" in HELP and "Usage: mcfleet lab up" in HELP["lab up"]


def _help_in_a_fresh_process(argv: list[str], columns: int) -> tuple[str, set[str]]:
    code = (
        "import sys, io, contextlib\nfrom mcfleet.cli.main import main\nbuf = io.StringIO()\n"
        f"with contextlib.redirect_stdout(buf): rc = main({argv!r})\n"
        "assert rc == 0, rc\nsys.stdout.write(buf.getvalue() + '\\0' + ','.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "COLUMNS": str(columns)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    text, _, mods = out.rpartition("\0")
    return text, set(mods.split(","))


def test_plan_help_is_printed_without_typer_pydantic_or_the_command_module() -> None:
    text, mods = _help_in_a_fresh_process(["plan", "--help"], columns=120)
    assert text == render(("plan",)) and text.startswith("Usage: mcfleet plan [OPTIONS]")
    assert not mods & {"typer", "pydantic", "asyncssh", "mcfleet.cli.commands_plan"}


def test_a_narrow_terminal_gets_typer_s_own_wrapping() -> None:
    text, mods = _help_in_a_fresh_process(["plan", "-h"], columns=60)
    assert "typer" in mods and text != HELP["plan"]
    assert text == render(("plan",), columns=60)


def test_a_group_lists_its_commands_with_their_whole_summary() -> None:
    """click cuts a sub-command's summary at ~45 characters with '...' unless short_help is set."""
    listed = HELP["agent"].partition("Commands:")[2]
    assert "..." not in listed
    assert "with health check and rollback." in " ".join(listed.split())
    assert all("..." not in HELP[group].partition("Commands:")[2] for group in ("lab", "nix", "secret", "schema"))
