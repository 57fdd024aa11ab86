"""Health-check the node's agent through the SSH connection.

The agent listens only on a unix socket on the node; the transport forwards it to
a local socket (`SshConnection.forward_unix`) and we speak gRPC to that: the
standard `grpc.health.v1` Check, then `Info` for the version and the hash of the
bundle that is actually running.  A node reached through the local node (tests)
is talked to on its socket directly.

The wait loop also watches the unit: a binary that crashes at start makes systemd
show `failed` or `auto-restart`, and waiting out the whole timeout for it would
only delay the rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mcfleet.agent.client import AgentClient
from mcfleet.agent.events import boot_text
from mcfleet.errors import PeerError
from mcfleet.fleet.models import Host
from mcfleet.transport.base import Node

# Between checks: 0.1 s, doubling up to 0.5 s.  A warm agent serves within a few tenths of a
# second of its restart, so a fixed 0.5 s wait would be most of the health phase.
RETRY_FIRST_S = 0.1
RETRY_S = 0.5


def retry_delays() -> Iterator[float]:
    delay = RETRY_FIRST_S
    while True:
        yield delay
        delay = min(RETRY_S, delay * 2)


@dataclass(frozen=True)
class AgentHealth:
    serving: bool
    version: str = ""
    bundle_sha256: str = ""
    arch: str = ""
    pid: int = 0
    error: str = ""
    boot: str = ""  # why the agent's boot sequence has not ended healthy ("failed at stage core"); "" when it did


def info_boot_text(info: Any) -> str:
    """`boot_text` of an Info answer ('' without one)."""
    boot = getattr(info, "boot", None)
    if boot is None:
        return ""
    return boot_text(boot.state, boot.stage, what=boot.what, attempt=boot.attempt, retry_at=boot.retry_at,
                     now=time.time())  # fmt: skip


async def local_socket(node: Node, remote: str) -> str:
    """A local path that reaches the node's `remote` unix socket."""
    forward: Any = getattr(node, "forward_unix", None)
    if forward is None:
        return remote  # local node: the socket is on this machine
    return str(await forward(remote))


# The agent's own API (answers as soon as the new binary runs) vs the node as a whole ("":
# NOT_SERVING while podman cannot be reached, with the reason in Info.health_reason).
AGENT_API = "mcfleet.agent.v1.Agent"
NODE = ""


async def check_once(target: str, timeout: float = 5.0, service: str = NODE) -> AgentHealth:  # noqa: ASYNC109
    """One health Check + Info over the (forwarded) socket `target`, with the agent's client."""
    async with AgentClient(target, timeout=timeout) as client:
        try:
            status = await client.health_status(service)
            if status != "SERVING":
                # The agent answers but the node does not serve (e.g. podman unreachable): say
                # which agent runs, and why.
                with contextlib.suppress(PeerError):
                    seen = await client.info()
                    why = f"health status {status}" + (f": {seen.health_reason}" if seen.health_reason else "")
                    return AgentHealth(False, seen.version, seen.bundle_sha256, seen.arch, int(seen.pid), error=why,
                                       boot=info_boot_text(seen))  # fmt: skip
                return AgentHealth(False, error=f"health status {status}")
            info = await client.info()
        except PeerError as exc:
            return AgentHealth(False, error=exc.message)
    return AgentHealth(True, info.version, info.bundle_sha256, info.arch, int(info.pid), boot=info_boot_text(info))


async def unit_state(node: Node, host: Host) -> tuple[str, str, int]:
    """(ActiveState, SubState, NRestarts) of the agent's unit."""
    res = await node.run(
        ["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts", host.agent.unit], timeout=30
    )
    values = dict(line.partition("=")[::2] for line in res.stdout.splitlines())
    restarts = values.get("NRestarts", "0")
    return (
        values.get("ActiveState", "unknown"),
        values.get("SubState", ""),
        int(restarts) if restarts.isdecimal() else 0,
    )


async def wait_agent_serving(
    node: Node,
    host: Host,
    *,
    timeout: float,  # noqa: ASYNC109 (the overall wait is the API)
    expect_sha: str | None = None,
    watch_unit: bool = True,
    restarts_before: int = 0,
) -> AgentHealth:
    """Retry until the agent's API serves (and runs `expect_sha` when given) or `timeout`; never raises.

    This is activation's check that the new binary works: podman being unreachable is the
    node's problem (shown by `agent status`), not a reason to roll the agent back.
    A crash counts from this start: `restarts_before` is the unit's restart counter right
    after the restart, so restarts of an earlier, crash-looping process do not count.
    """
    deadline = time.monotonic() + timeout
    target = await local_socket(node, host.agent.socket)
    last = AgentHealth(False, error="not checked yet")
    delays = retry_delays()
    while True:
        last = await check_once(target, timeout=min(5.0, max(1.0, deadline - time.monotonic())), service=AGENT_API)
        if last.serving:
            if expect_sha and last.bundle_sha256 and last.bundle_sha256 != expect_sha:
                last = AgentHealth(False, last.version, last.bundle_sha256, error="an old agent is still answering")
            else:
                return last  # an agent that answers runs: the unit is not asked (one round trip less)
        if watch_unit:
            active, sub, restarts = await unit_state(node, host)
            crashed = restarts - restarts_before
            if active == "failed" or sub == "auto-restart" or crashed > 0:
                return AgentHealth(False, error=f"the unit is {active} ({sub}) after {crashed} restart(s)")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = last.error
            if not last.version and getattr(node, "forward_unix", None) is not None:  # nothing answered on the node
                from mcfleet.transport.socket_state import socket_problem

                problem = await socket_problem(node, host.agent.socket, "agent")
                why = problem.text if problem else why  # e.g. the agent binds another path than host.json names
            return AgentHealth(False, last.version, last.bundle_sha256, error=f"no health within {timeout:g} s: {why}")
        await asyncio.sleep(min(next(delays), remaining))
