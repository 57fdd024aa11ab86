"""Commands load lazily: every registered command is reachable, `--help` and `validate` stay light."""

from __future__ import annotations

import subprocess
import sys

from mcfleet.cli.app import commands_of
from mcfleet.cli.main import COMMANDS, LAZY_COMMANDS
from tests.conftest import run_cli


def test_every_lazy_command_is_registered_by_its_module() -> None:
    for name, module in LAZY_COMMANDS.items():
        assert name in commands_of(module), f"{module}.register() does not define {name!r}"


def test_each_summary_in_the_help_is_the_first_line_of_the_commands_own_help() -> None:
    for name, (module, summary) in COMMANDS.items():
        command = commands_of(module)[name]
        assert (command.help or "").strip().splitlines()[0] == summary, name


def _imported_after(argv: list[str]) -> set[str]:
    code = (
        "import sys, io, contextlib\nfrom mcfleet.cli.main import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): main({argv!r})\n"
        "print('MODS=' + ','.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().splitlines()[-1].removeprefix("MODS=").split(","))


def test_validate_does_not_import_ssh_grpc_or_apply() -> None:
    mods = _imported_after(["validate", "--json", "."])
    assert not mods & {"asyncssh", "grpc", "mcfleet.apply.session", "podman"}


def test_top_level_help_imports_no_command_module_nor_typer() -> None:
    mods = _imported_after(["--help"])
    assert not {m for m in mods if m.startswith("mcfleet.cli.commands_")}
    assert "typer" not in mods and "pydantic" not in mods


def test_top_level_help_lists_every_command_with_its_summary() -> None:
    code, out, _err = run_cli("--help")
    assert code == 0
    for name, (_module, summary) in COMMANDS.items():
        assert f"  {name}" in out and summary in out
    assert "-C, --fleet DIR" in out and "Examples:" in out


def test_help_examples_are_printed_line_for_line_not_rewrapped() -> None:
    """Every example line of every command's docstring appears whole in its --help (click re-wraps prose)."""
    for name, (module, _summary) in COMMANDS.items():
        command = commands_of(module)[name]
        subs = getattr(command, "commands", None) or {name: command}
        for sub_name, sub in subs.items():
            argv = [name] if sub is command else [name, sub_name]
            code, out, _err = run_cli(*argv, "--help")
            assert code == 0, argv
            doc = (sub.callback.__doc__ or "") if sub.callback else ""
            if "Examples:" not in doc:
                continue
            for line in doc.split("Examples:", 1)[1].splitlines():
                if line.strip():
                    assert "  " + line.strip() in out, (argv, line.strip())


# Imported where a command connects or applies, never for its --help.  `lab` is left out: its
# commands need root and the lab machinery (they are not an operator's everyday commands).
HEAVY = {"asyncssh", "grpc", "jsonschema", "acme", "dns", "mcfleet.apply.session", "mcfleet.plan.planner"}


def test_no_command_help_imports_ssh_grpc_or_the_apply_machinery() -> None:
    heavy: dict[str, set[str]] = {}
    for name, (module, _summary) in COMMANDS.items():
        if name == "lab":
            continue
        command = commands_of(module)[name]
        subs = getattr(command, "commands", None) or {name: command}
        for sub_name, sub in subs.items():
            argv = [name] if sub is command else [name, sub_name]
            found = _imported_after([*argv, "--help"]) & HEAVY
            if found:
                heavy[" ".join(argv)] = found
    assert not heavy, heavy
