"""Transport pieces that need no peer: the remote command line, escalation, run results."""

from __future__ import annotations

import asyncio
import shlex

import pytest

from mcfleet.transport.base import CommandFailed, CommandTimeout, RunResult, shell_line
from mcfleet.transport.local import LocalNode


def test_argv_items_are_quoted_and_survive_the_remote_shell() -> None:
    line = shell_line(["printf", "%s|", "a b", "$HOME", "it's"], become=None)
    assert shlex.split(line) == ["printf", "%s|", "a b", "$HOME", "it's"]


def test_a_script_runs_under_sh_c_and_escalation_is_non_interactive() -> None:
    assert shlex.split(shell_line("echo $HOME", become=None)) == ["sh", "-c", "echo $HOME"]
    assert shlex.split(shell_line(["id", "-u"], become="sudo")) == ["sudo", "-n", "--", "id", "-u"]
    assert shlex.split(shell_line("id -u", become="doas")) == ["doas", "-n", "--", "sh", "-c", "id -u"]


def test_the_same_line_runs_locally() -> None:
    res = asyncio.run(LocalNode().run(["sh", "-c", shell_line(["printf", "%s", "a b"], become=None)]))
    assert res == RunResult(0, "a b", "")


def test_local_runner_timeout_and_input() -> None:
    runner = LocalNode()
    assert asyncio.run(runner.run("read x; echo got-$x", input="hi\n")).stdout == "got-hi\n"
    with pytest.raises(CommandTimeout):
        asyncio.run(runner.run(["sleep", "5"], timeout=0.2))


def test_check_names_the_command_host_and_output() -> None:
    with pytest.raises(CommandFailed) as err:
        RunResult(4, "", "useradd: UID 850 is not unique\n").check("useradd mcp", "orion")
    assert err.value.format() == (
        "command failed: orion: useradd mcp exited with status 4: useradd: UID 850 is not unique\n"
        "  hint: run the command on the host by hand to see the full output"
    )


def test_check_says_a_program_is_missing_when_the_shell_or_sudo_cannot_find_it() -> None:
    """The shell's status 127, and sudo's own `command not found` (status 1), name the missing program in
    the output and say to install it (NixOS has no python3 on PATH by default)."""
    res = asyncio.run(LocalNode().run(["sh", "-c", "mcfleet-no-such-program --version"]))
    assert res.exit_status == 127
    with pytest.raises(CommandFailed) as err:
        res.check("writing /srv/web/app.conf", "rift")
    assert "mcfleet-no-such-program" in err.value.format() and "not installed on the host" in err.value.format()
    with pytest.raises(CommandFailed) as err:
        RunResult(1, "", "sudo: python3: command not found\n").check("writing /srv/web/app.conf", "rift")
    assert "sudo: python3: command not found" in err.value.format()
    assert "mcfleet.python" in err.value.format()
    with pytest.raises(CommandFailed) as err:
        RunResult(1, "", "mkdir: cannot create directory\n").check("mkdir", "rift")
    assert "not installed" not in err.value.format()
