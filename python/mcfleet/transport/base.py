"""What every transport returns and raises; shared by the SSH and the local transport.

`RunResult` is the outcome of one remote (or local) command.  The errors are all
`PeerError`s so the CLI boundary prints them without a traceback:

- `Unreachable`: no address of the host answered (every attempt is listed);
- `HostKeyMismatch`: the host answered with a key that is not the pinned one
  (never retried on another address: a changed key is a security signal);
- `LocalSshConfigError`: a known_hosts or identity file named by the host file is
  missing or unreadable here (reported before any address is tried);
- `CommandTimeout`: a command ran longer than its timeout;
- `CommandFailed`: `RunResult.check()` on a non-zero exit status.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mcfleet.errors import McfleetError, PeerError

Command = Sequence[str] | str


@dataclass(frozen=True)
class RunResult:
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
                hint="run the command on the host by hand to see the full output",
            )
        return self


class Runner(Protocol):
    """Anything that runs commands on one host (an SSH connection, the local machine)."""

    name: str

    async def run(self, command: Command, *, input: str | None = None, timeout: float | None = None) -> RunResult: ...  # noqa: ASYNC109 (a per-command limit is the API)


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


def shell_line(command: Command, *, become: str | None) -> str:
    """The command line sent to the remote shell.

    A sequence is an argv (each item quoted); a string is a shell script run by
    `sh -c`, so both behave the same with and without escalation.  `become` is
    the escalation program (`sudo` or `doas`), always non-interactive (`-n`):
    a password prompt would hang a fleet run.
    """
    line = shlex.join(command) if not isinstance(command, str) else shlex.join(["sh", "-c", command])
    return f"{become} -n -- {line}" if become else line
