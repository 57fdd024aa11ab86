"""What every transport returns and raises; shared by the SSH and the local transport.

`RunResult` is the outcome of one remote (or local) command.  The errors are all
`PeerError`s so the CLI boundary prints them without a traceback:

- `Unreachable`: no address of the host answered (every attempt is listed);
- `HostKeyMismatch`: the host answered with a key that is not the pinned one
  (never retried on another address: a changed key is a security signal);
- `LocalSshConfigError`: a known_hosts or identity file named by the host file is
  missing or unreadable here (reported before any address is tried);
- `CommandTimeout`: a command ran longer than its timeout;
- `CommandFailed`: `RunResult.check()` on a non-zero exit status;
- `OutputTooLarge`: a command printed more than its output cap (`OUTPUT_CAP` by
  default): reading stops there, so a flooding node costs bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcfleet.errors import McfleetError, PeerError

OUTPUT_CAP = 16 * 1024 * 1024  # bytes read from one command's stdout (and again from its stderr)
READ_CHUNK = 64 * 1024

Command = Sequence[str] | str


@dataclass(frozen=True)
class RunResult:
    """A finished command on a node: exit status and output."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self, what: str, host: str) -> RunResult:
        """Raise CommandFailed unless the command exited 0; returns self for chaining."""
        if self.exit_status != 0:
            tail = (self.stderr.strip() or self.stdout.strip())[-400:]
            raise CommandFailed(
                f"{what} exited with status {self.exit_status}: {tail}",
                location=host,
                hint=MISSING_PROGRAM
                if self.program_missing
                else "run the command on the host by hand to see the full output",
            )
        return self

    @property
    def program_missing(self) -> bool:
        """The shell could not find a program (status 127), or sudo/doas could not (`…: command not found`)."""
        return self.exit_status == 127 or "command not found" in self.stderr


MISSING_PROGRAM = (
    "a program the command runs is not installed on the host: install it there (mcfleet runs python3, openssl "
    "and flock on nodes; on NixOS its module installs python3 and openssl: mcfleet.python, mcfleet.observe.openssl)"
)


class Node(Protocol):
    """One host mcfleet runs commands on: an SSH connection to it (`transport.ssh.SshConnection`)
    or this machine (`transport.local.LocalNode`).  `run(..., login=True)` runs as the login
    user without sudo/doas; everything else is escalated."""

    name: str

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-command limit is the API)
        max_output: int = OUTPUT_CAP,
        login: bool = False,
    ) -> RunResult: ...


class Unreachable(PeerError):
    kind = "unreachable"


class HostKeyMismatch(PeerError):
    kind = "host key mismatch"


class LocalSshConfigError(McfleetError):
    """This machine's side is missing: a known_hosts or identity file the host file names."""

    kind = "ssh setup"


class CommandTimeout(PeerError):
    kind = "timeout"


class CommandFailed(PeerError):
    kind = "command failed"


class BecomeRefused(PeerError):
    """`sudo -n` / `doas -n` would ask for a password (or the user has no rule at all)."""

    kind = "escalation refused"


# What sudo/doas print when `-n` meets a rule that needs a password, or no rule (OpenBSD's doas
# says "Authorization required", opendoas "Authentication required"; opendoas without any
# /etc/doas.conf: "doas is not enabled, /etc/doas.conf: No such file or directory").
_BECOME_REFUSALS = (
    "a password is required",
    "a terminal is required",
    "is not in the sudoers file",
    "is not allowed to execute",
    "may not run sudo",
    "authorization required",
    "authentication required",
    "authentication failed",
    "operation not permitted",
    "doas is not enabled",
)


def become_rule(become: str, user: str) -> str:
    """The line that lets `user` escalate without a password, in the program's own syntax."""
    if become == "doas":
        return f"permit nopass {user} as root   (in /etc/doas.conf)"
    return f"{user} ALL=(ALL) NOPASSWD: ALL   (in /etc/sudoers.d/{user}, mode 0440)"


def become_refused(become: str | None, user: str, stderr: str, host: str) -> BecomeRefused | None:
    """The error for a run that failed because escalation asked for a password, else None."""
    if not become:
        return None
    said = [line.strip().lower() for line in stderr.splitlines() if line.lower().startswith(f"{become}:")]
    if any("must have a tty" in line for line in said):  # `Defaults requiretty` (older RHEL's default)
        return BecomeRefused(
            f"`{become} -n` runs commands for {user} only from a terminal (requiretty), and mcfleet opens none",
            location=host,
            hint=f"add the rule: Defaults:{user} !requiretty   (in /etc/sudoers.d/{user}, mode 0440)",
        )
    first = next((line for line in said if any(text in line for text in _BECOME_REFUSALS)), None)
    if first is None:
        return None
    return BecomeRefused(
        f"`{become} -n` refuses to run commands as root for {user} without a password ({first})",
        location=host,
        hint=f"add the rule: {become_rule(become, user)}",
    )


def shell_line(command: Command, *, become: str | None) -> str:
    """The command line sent to the remote shell.

    A sequence is an argv (each item quoted); a string is a shell script run by
    `sh -c`, so both behave the same with and without escalation.  `become` is
    the escalation program (`sudo` or `doas`), always non-interactive (`-n`):
    a password prompt would hang a fleet run.
    """
    line = shlex.join(command) if not isinstance(command, str) else shlex.join(["sh", "-c", command])
    return f"{become} -n -- {line}" if become else line


class OutputTooLarge(PeerError):
    kind = "output too large"


class _Readable(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


async def read_capped(stream: _Readable, cap: int, *, what: str, host: str) -> bytes:
    """Everything `stream` yields up to EOF, or OutputTooLarge as soon as it passes `cap` bytes.

    Reads in chunks, so memory stays near `cap` whatever the other side sends.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise output_too_large(what, cap, host)
        chunks.append(chunk)


def output_too_large(what: str, cap: int, host: str) -> OutputTooLarge:
    """The error for output past its cap (`what`: "the command `…`", with " (stderr)" for stderr)."""
    return OutputTooLarge(
        f"{what} printed more than {cap // 1024} KiB; mcfleet stopped reading it",
        location=host,
        hint="a node's output is capped so that one node cannot exhaust this machine: "
        "find what on the node produces so much output (an oversized file, a looping command)",
    )


async def read_both(out: Coroutine[Any, Any, bytes], err: Coroutine[Any, Any, bytes]) -> tuple[bytes, bytes]:
    """stdout and stderr read at once (either may fill while the other is awaited); the first error wins.

    When one read fails (its cap passed) the other is cancelled, so nothing is left reading.
    """
    tasks = [asyncio.ensure_future(out), asyncio.ensure_future(err)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            failed = task.exception() if task.done() else None
            if failed is not None:
                raise failed  # the read that passed its cap
        return tasks[0].result(), tasks[1].result()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


PGID_MARK = "mcfleet-pgid="
# Runs the command as the leader of its own process group and says which on stderr's first
# line, so a timed-out command can be killed on the node with all its children.
_GROUP_WRAPPER = f'echo "{PGID_MARK}$$" >&2; exec "$@"'


def grouped(command: Command) -> list[str]:
    """`command` as an argv run by `setsid -w` in a new process group whose id it prints first."""
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    return ["setsid", "-w", "sh", "-c", _GROUP_WRAPPER, "sh", *argv]


def split_pgid(stderr: str) -> tuple[int | None, str]:
    """(the process group id the wrapper printed, stderr without that line)."""
    head, sep, rest = stderr.partition("\n")
    if head.startswith(PGID_MARK) and head[len(PGID_MARK) :].isdecimal():
        return int(head[len(PGID_MARK) :]), rest if sep else ""
    return None, stderr
