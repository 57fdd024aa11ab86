"""A transport that runs commands on this machine: tests of the pure parts, and the lab.

Same `run()` contract as `transport.ssh.SshConnection` (argv quoted, a str is a
`sh -c` script), so observe/ can gather facts from the local machine unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

from mcfleet.transport.base import Command, CommandTimeout, RunResult


@dataclass
class LocalRunner:
    name: str = "local"
    command_timeout: float = 120.0

    async def run(self, command: Command, *, input: str | None = None, timeout: float | None = None) -> RunResult:  # noqa: ASYNC109 (a per-command limit is the API)
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills the children too
        )
        limit = timeout if timeout is not None else self.command_timeout
        try:
            out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), limit)
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.communicate()  # drain to EOF so the pipes are closed, not left to the GC
            raise CommandTimeout(f"command did not finish within {limit:g} s", location=self.name) from exc
        return RunResult(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
