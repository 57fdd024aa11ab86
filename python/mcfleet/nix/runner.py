"""Run nix commands (asyncio subprocesses) and turn their failures into McfleetErrors.

Everything that starts a `nix` process goes through `run_nix`, so NIX_CONFIG, the
missing-tool error and the error text are handled once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcfleet.errors import McfleetError, ToolMissing
from mcfleet.nix import argv as nixargv


class NixError(McfleetError):
    """A nix command failed; the message carries nix's own error lines."""

    kind = "nix error"


@dataclass(frozen=True)
class NixResult:
    """A finished nix command: its argv, exit code and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _error_text(stderr: str) -> str:
    """nix's `error: …` block, without the `warning:` and progress lines before it (dirty tree,
    experimental, `building '…'`, `copying 2 paths...`)."""
    lines = stderr.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("error:")), None)
    if start is None:
        lines = [ln for ln in lines if not ln.startswith(("warning:", "building '", "copying "))]
    else:
        lines = lines[start:]
    text = "\n".join(lines).strip()
    return text.removeprefix("error: ") if text else "nix failed without an error message"


async def run_nix(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    settings: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    check: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> NixResult:
    """Run one nix command with mcfleet's NIX_CONFIG; raise NixError on failure when `check`.

    `on_line` gets each non-empty stderr line as nix writes it (what it is building or copying,
    build log lines with `-L`), so a long build shows what it does.
    Bound it with `async with asyncio.timeout(...)`; on cancellation the process is killed.
    """
    if shutil.which(argv[0]) is None:
        raise ToolMissing(
            f"{argv[0]} is not installed",
            hint="install Nix (Debian: `apt-get install nix-bin`) or run this on a machine that has it",
        )
    env = nixargv.nix_env(settings)
    env.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await (proc.communicate() if on_line is None else _communicate_lines(proc, on_line))
    except asyncio.CancelledError:
        # A caller's asyncio.timeout() expired: do not leave nix running.
        proc.kill()
        await proc.wait()
        raise
    result = NixResult(tuple(argv), proc.returncode or 0, out.decode(), err.decode())
    if check and result.returncode != 0:
        raise NixError(_error_text(result.stderr), location=" ".join(argv[:3]))
    return result


async def _communicate_lines(proc: asyncio.subprocess.Process, on_line: Callable[[str], None]) -> tuple[bytes, bytes]:
    """(stdout, stderr) like communicate(), handing each stderr line to `on_line` as it arrives."""
    assert proc.stdout is not None and proc.stderr is not None
    out_task = asyncio.ensure_future(proc.stdout.read())
    err = bytearray()
    pending = b""
    try:
        while chunk := await proc.stderr.read(65536):
            err += chunk
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                text = raw.decode(errors="replace").rstrip()
                if text:
                    on_line(text)
        if pending.strip():
            on_line(pending.decode(errors="replace").rstrip())
        out = await out_task
    finally:
        out_task.cancel()
    await proc.wait()
    return out, bytes(err)


async def eval_json(flake: str, attr: str, *, apply: str | None = None, offline: bool = False) -> Any:
    result = await run_nix(nixargv.eval_argv(flake, attr, apply=apply, offline=offline))
    return json.loads(result.stdout)


async def build(
    flake: str, attrs: Sequence[str], *, offline: bool = False, on_line: Callable[[str], None] | None = None
) -> list[str]:
    """Build attributes; return their `out` paths (from `--json`, which Nix 2.8 has).

    With `on_line`, nix prints the builders' log lines too (`-L`) and each stderr line goes to it.
    """
    argv = nixargv.build_argv(flake, attrs, offline=offline, print_build_logs=on_line is not None)
    result = await run_nix(argv, on_line=on_line)
    return [item["outputs"]["out"] for item in json.loads(result.stdout)]


async def eval_expr(expr: str) -> Any:
    """Evaluate a pure Nix expression (no flake) as JSON."""
    result = await run_nix(nixargv.instantiate_eval_argv(expr))
    return json.loads(result.stdout)
