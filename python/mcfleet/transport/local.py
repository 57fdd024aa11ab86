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

from mcfleet.transport.base import OUTPUT_CAP, Command, CommandTimeout, RunResult, read_both, read_capped


@dataclass
class LocalNode:
    name: str = "local"
    command_timeout: float = 120.0
    store: str | None = None  # root's store of apply (nodeio.STORE); tests point it at a scratch folder

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-command limit is the API)
        max_output: int = OUTPUT_CAP,
        login: bool = False,  # no escalation here: the same user either way
    ) -> RunResult:
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
            out, err = await asyncio.wait_for(self._collect(proc, input, max_output), limit)
        except TimeoutError as exc:
            raise CommandTimeout(f"command did not finish within {limit:g} s", location=self.name) from exc
        finally:
            if proc.returncode is None:  # timed out or flooded: the whole group goes
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.communicate()  # the group is dead: what is left in the pipes is bounded; EOF closes them
        return RunResult(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def _collect(self, proc: asyncio.subprocess.Process, input: str | None, cap: int) -> tuple[bytes, bytes]:
        assert proc.stdout is not None and proc.stderr is not None  # both are PIPEs above
        if input is not None and proc.stdin is not None:
            proc.stdin.write(input.encode())
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.drain()
            proc.stdin.close()
        out, err = await read_both(
            read_capped(proc.stdout, cap, what="the local command", host=self.name),
            read_capped(proc.stderr, cap, what="the local command (stderr)", host=self.name),
        )
        await proc.wait()
        return out, err
