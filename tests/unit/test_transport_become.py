"""Escalation errors and the remote process group wrapper of the SSH transport (pure parts)."""

from __future__ import annotations

import subprocess

from mcfleet.transport.base import become_refused, grouped, shell_line, split_pgid


def test_a_sudo_password_prompt_names_the_rule_to_add() -> None:
    err = become_refused("sudo", "kyle", "sudo: a password is required\n", "orion")
    assert err is not None
    assert "kyle ALL=(ALL) NOPASSWD: ALL" in (err.hint or "")
    assert err.location == "orion"


def test_doas_without_a_nopass_rule_names_the_rule_to_add() -> None:
    for said in (
        "doas: Authorization required",
        "doas: Authentication required",
        "doas: Operation not permitted",
        "doas: doas is not enabled, /etc/doas.conf: No such file or directory",
    ):
        err = become_refused("doas", "kyle", said, "rift")
        assert err is not None and "permit nopass kyle as root" in (err.hint or ""), said


def test_sudo_that_wants_a_terminal_names_the_requiretty_rule() -> None:
    err = become_refused("sudo", "kyle", "sudo: sorry, you must have a tty to run sudo\n", "orion")
    assert err is not None and err.location == "orion" and "requiretty" in err.message
    assert err.hint == "add the rule: Defaults:kyle !requiretty   (in /etc/sudoers.d/kyle, mode 0440)"


def test_other_failures_are_not_taken_for_a_missing_rule() -> None:
    assert become_refused("sudo", "kyle", "cp: cannot stat 'x': Permission denied", "h") is None
    assert become_refused(None, "root", "sudo: a password is required", "h") is None
    # sudo's host-name warning before the real refusal: still found
    err = become_refused("sudo", "kyle", "sudo: unable to resolve host x\nsudo: a password is required", "h")
    assert err is not None


def test_the_group_wrapper_runs_the_command_and_reports_its_process_group() -> None:
    line = shell_line(grouped("echo out; echo err >&2; exit 7"), become=None)
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=False)
    pgid, stderr = split_pgid(done.stderr)
    assert done.returncode == 7 and done.stdout == "out\n" and stderr == "err\n"
    assert pgid is not None and pgid > 1


def test_an_argv_keeps_its_quoting_through_the_wrapper() -> None:
    line = shell_line(grouped(["printf", "%s|", "a b", "$HOME", "'q'"]), become=None)
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=False)
    assert done.stdout == "a b|$HOME|'q'|"
