"""Health checks for a component: tcp connect (that the far end keeps), HTTP GET (2xx/3xx), or a
command in the container.

tcp and http checks run from the node against the container's published port, so they need
nothing inside the image; a command check runs in the container (podman exec).
`Health.timeout_s` bounds each attempt; the caller's deadline bounds the whole wait
(a stage gets `stage_timeout` seconds to become healthy).  A command the image does not have
(exit 126/127: e.g. no `dig` or `curl` in a distroless image) can never pass, so it ends the
wait at once with that reason instead of stalling the boot sequence until the stage timeout.
A component without a health check counts as healthy once its container is running.

A container that stops while it is waited for is judged by what podman does next.  Not
restarted (restart "no", or "on-failure" after exit 0): it cannot get healthy, and the wait
ends at once.  Restarted: podman restarts it at once, again and again (~16 times a second
measured for a command the image lacks), and the service it replaces is down meanwhile; a
deploy's wait (`crash_loop_ends`) ends once it has stopped CRASH_LOOP_EXITS times and
CRASH_LOOP_AFTER_S have passed, so that a container that exits a few times while something
it needs comes up is still waited for.  The boot sequence waits the stage timeout all the
same (at node boot what a service needs may come up late, and nothing older is there to put
back); its timeout message counts the restarts.

A tcp check, or a container without a check, counts as healthy only for a run of the container
that has lasted STEADY_S and is still the same run (podman's StartedAt) afterwards: neither proves
that the program works.  A connection that stays open may be podman's forwarder's (it accepts for
the container, and on a loaded machine held a check's connection past TCP_SETTLE_S while the
program behind it was already exiting: a file the program rejected was reported applied), and a
container that exits at once is running for a moment.  Either shows up as a new run.  An http
answer or a command run in the container is the program's own: those pass at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from mcfleet.agent.podman_ops import Podman, RunState
from mcfleet.agent.registry import RUNNING, Entry
from mcfleet.agent.spec import ContainerSpec, container_specs
from mcfleet.fleet.models import Health

RETRY_S = 0.25
CATCH_EXIT_S = 0.02
# Exit codes of the OCI runtime/shell for "cannot execute" and "command not found".
NOT_EXECUTABLE = (126, 127)
CRASH_LOOP_EXITS = 5
CRASH_LOOP_AFTER_S = 3.0
TCP_SETTLE_S = 0.3  # a tcp check's connection must stay open this long (or bring data)
# a passed tcp check (or none) counts for a run that has lasted this long: podman restarts a container
# that exits at once ~16 times a second, so within it a crash loop always shows a new run
STEADY_S = 1.0
# Rootless podman publishes a port with a `rootlessport` process that listens on it from before the
# container's start returns until the container stops, and accepts even while nothing listens inside.
# A published port that *refuses* connections while the container runs has lost that forwarder: seen
# after a restart of a container podman was restarting in a loop (podman 4.3, lab node), its service
# unreachable until someone restarted it.  Only a restart of the container brings the forwarder back.
FORWARDER_GONE_AFTER_S = 3.0


class CheckCannotPass(RuntimeError):
    """A health check that no retry can fix (its command is missing from the image)."""


class RunEnded(RuntimeError):
    """The run a passed check counted for ended within STEADY_S; `exit_code` when it was seen stopped."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def _tcp(host: str, port: int) -> None:
    """Connected, and not closed at once.  Rootless podman's port forwarder (rootlessport) accepts every
    connection to a published port itself and only then dials the container: with nothing listening in
    there it closes the connection within milliseconds (measured on a lab node), so a bare connect passed
    for a container whose program had crashed.  A program that is there either waits for the client (a
    TLS or HTTP server) or greets it first (SSH, SMTP): either keeps the connection for TCP_SETTLE_S."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        try:
            first = await asyncio.wait_for(reader.read(1), TCP_SETTLE_S)
        except TimeoutError:
            return  # open and silent: a server waiting for its client
        except ConnectionError as exc:  # reset: the forwarder found nothing to connect to
            first, reason = b"", str(exc)
        else:
            reason = ""
        if not first:
            raise ConnectionError(
                f"port {port} accepted the connection and closed it at once{f' ({reason})' if reason else ''}: "
                "nothing listens behind podman's port forwarder"
            )
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _http(host: str, port: int, path: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: mcfleet-agent\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdecimal():
        raise ConnectionError(f"no HTTP status line (got {status[:60]!r})")
    code = int(parts[1])
    if not 200 <= code < 400:
        raise ConnectionError(f"HTTP {code} from {path}")


async def check_once(spec: ContainerSpec, health: Health, podman: Podman) -> None:
    """One attempt; raises with a readable reason when unhealthy."""
    if health.kind == "command":
        code, output = await podman.in_thread(podman.exec, spec.name, health.command)
        said = output.strip()[:200]
        if code in NOT_EXECUTABLE or "executable file not found" in output:
            raise CheckCannotPass(
                f"health command `{health.command[0]}` cannot run in image {spec.image} (exit {code}: {said}); "
                "use a tcp or http check on the published port, or a command the image has"
            )
        if code != 0:
            raise RuntimeError(f"`{' '.join(health.command)}` exited {code}: {said}")
        return
    assert health.port is not None  # the model guarantees it for tcp/http
    host, port = spec.host_port_for(health.port) or ("127.0.0.1", health.port)
    if health.kind == "tcp":
        await _tcp(host, port)
    else:
        await _http(host, port, health.path)


def _restarted_by_podman(restart: str | None, exit_code: int) -> bool:
    return restart in ("always", "unless-stopped") or (restart == "on-failure" and exit_code != 0)


def _cannot_pass(
    spec: ContainerSpec, seen: RunState, *, restarts: int, exit_code: int | None, waited_s: float, crash_loop_ends: bool
) -> str:
    """Why the wait for this container ends now ("" to wait on); `exit_code`: the last seen stopped."""
    if seen.status in ("exited", "stopped") and not _restarted_by_podman(spec.restart, seen.exit_code):
        policy = spec.restart or "no"
        return f"its container stopped (exit code {seen.exit_code}); its restart policy ({policy}) does not start it"
    if crash_loop_ends and restarts >= CRASH_LOOP_EXITS and waited_s >= CRASH_LOOP_AFTER_S:
        code = f", last exit code {exit_code}" if exit_code is not None else ""
        return f"its container keeps stopping (restarted {restarts} times in {waited_s:.0f} s{code})"
    return ""


async def wait_healthy(
    spec: ContainerSpec,
    podman: Podman,
    deadline: float,
    *,
    crash_loop_ends: bool = False,
    reforward: Callable[[], Awaitable[None]] | None = None,
    failed: Callable[[str], None] | None = None,
) -> None:
    """Retry until healthy or `deadline` (monotonic); raise TimeoutError naming the last failure.
    `failed` is told why each failed try failed, as it happens.

    `reforward` (given for rootless podman) restarts the container once when its published port has
    refused connections for FORWARDER_GONE_AFTER_S while it runs (its forwarder is gone)."""
    last = "not checked yet"
    began = time.monotonic()
    first: RunState | None = None
    restarts = 0
    exit_code: int | None = None  # the last seen stopped: a restarted container's inspect says 0 while it runs
    refused_since: float | None = None
    reforwarded = False
    while True:
        refused = False
        try:
            seen = await podman.in_thread(podman.run_state, spec.name)
            first = first or seen
            restarts = seen.restarts - first.restarts
            if seen.status in ("exited", "stopped"):
                exit_code = seen.exit_code
            waited_s = time.monotonic() - began
            why = _cannot_pass(
                spec, seen, restarts=restarts, exit_code=exit_code, waited_s=waited_s, crash_loop_ends=crash_loop_ends
            )
            if why:
                raise CheckCannotPass(why)
            if seen.status != "running":
                raise RuntimeError(f"container is {seen.status}")
            if spec.health is not None:
                try:
                    await asyncio.wait_for(check_once(spec, spec.health, podman), spec.health.timeout_s)
                except ConnectionRefusedError:
                    refused = _forwarded(spec)
                    raise
            if spec.health is None or spec.health.kind == "tcp":
                await _same_run_after(spec, podman, seen)
            return
        except CheckCannotPass as exc:
            raise TimeoutError(f"{spec.name} cannot get healthy: {exc}") from exc
        except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
            last = str(exc) or type(exc).__name__
            if failed is not None:
                failed(last)
            # the steady look saw the run end: podman restarts it at once, so the next look may not see it stopped
            exit_code = exc.exit_code if isinstance(exc, RunEnded) and exc.exit_code is not None else exit_code
        now = time.monotonic()
        refused_since = (refused_since or now) if refused else None
        forwarder_gone = refused_since is not None and now - refused_since >= FORWARDER_GONE_AFTER_S
        if forwarder_gone and reforward is not None and not reforwarded:
            reforwarded, refused_since, first = True, None, None  # its restart count starts again
            await reforward()
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _not_healthy(spec, last, restarts=restarts, reforwarded=reforwarded)
        # restarted and no exit code seen yet: podman restarts at once and its inspect says 0 while the
        # container runs, so only a quick look catches it stopped, with the code its message gives
        await asyncio.sleep(min(CATCH_EXIT_S if restarts and exit_code is None else RETRY_S, remaining))


def _not_healthy(spec: ContainerSpec, last: str, *, restarts: int, reforwarded: bool) -> TimeoutError:
    kind = spec.health.kind if spec.health else "running"
    also = f"; meanwhile its container stopped and was restarted {restarts} times" if restarts else ""
    if reforwarded:
        also += "; its published port refused connections while it ran, and a restart did not bring it back"
    return TimeoutError(f"{spec.name} not healthy ({kind} check): {last}{also}")


_STARTED_AT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def run_age_s(started_at: str, now: float) -> float | None:
    """Seconds since podman's StartedAt (RFC 3339 with nanoseconds, "Z" or an offset); None if unreadable."""
    found = _STARTED_AT.match(started_at.strip())
    if found is None:
        return None
    whole, fraction, zone = found.groups()
    stamp = f"{whole}.{(fraction or '0')[:6]:0<6}{'+00:00' if zone == 'Z' else zone}"
    try:
        return now - datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


async def _same_run_after(spec: ContainerSpec, podman: Podman, seen: RunState) -> None:
    """Return once the run `seen` (checked healthy) has lasted STEADY_S and is still running; raise if it
    ended meanwhile.  A run of unknown age (no StartedAt) is given the whole STEADY_S from now."""
    age = run_age_s(seen.started_at, time.time())
    wait = STEADY_S - age if age is not None else STEADY_S
    if wait <= 0:
        return
    await asyncio.sleep(wait)
    now = await podman.in_thread(podman.run_state, spec.name)
    if now.status != "running" or (now.started_at, now.restarts) != (seen.started_at, seen.restarts):
        stopped = now.status in ("exited", "stopped")
        ended = f"exit code {now.exit_code}, " if stopped else ""
        passed = f"its {spec.health.kind} check passed" if spec.health else "it ran"
        raise RunEnded(
            f"{passed}, then its container stopped within {STEADY_S:g} s of starting ({ended}now {now.status})",
            now.exit_code if stopped else None,
        )


def _forwarded(spec: ContainerSpec) -> bool:
    """Whether the health check goes through a port podman publishes (not the host's network)."""
    return (
        spec.network != "host"
        and spec.health is not None
        and spec.health.port is not None
        and (spec.host_port_for(spec.health.port) is not None)
    )


CHECK_NOW_MAX_S = 5.0  # a status asks for every container's health at once: one slow check caps it


async def check_now(entries: list[Entry], running: set[str], podman: Podman) -> dict[str, str]:
    """Each running container of a service meant to run: "" when its health check passes now (or it
    has none), else why not.  One attempt each, all at once, each within its check's timeout (at
    most CHECK_NOW_MAX_S): a container can run and fail its check (its program hangs, or answers
    500), which its state alone does not show."""
    specs = [
        spec
        for entry in entries
        if entry.desired == RUNNING
        for spec in container_specs(entry.service, entry.ports)
        if spec.name in running
    ]

    async def one(spec: ContainerSpec) -> str:
        if spec.health is None:
            return ""
        limit = min(spec.health.timeout_s, CHECK_NOW_MAX_S)
        try:
            await asyncio.wait_for(check_once(spec, spec.health, podman), limit)
        except TimeoutError:
            return f"{spec.health.kind} check: no answer within {limit:g} s"
        except (OSError, RuntimeError, ConnectionError) as exc:
            return f"{spec.health.kind} check: {exc or type(exc).__name__}"
        return ""

    results = await asyncio.gather(*(one(spec) for spec in specs))
    return {spec.name: result for spec, result in zip(specs, results, strict=True)}
