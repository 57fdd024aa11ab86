"""`mcfleet agent status`: every selected node's agent, read-only, all hosts in parallel.

Per host: the binary's hash on disk, the unit's state, the manifest's confirmed
hash, and the agent's own answer over the forwarded socket (health, version,
the hash of the bundle it runs).  `skew` flags hosts whose agent differs from the
others' (an agent and a CLI of different versions fail with `Unimplemented`: `agent upgrade` of all hosts prevents it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from mcfleet.apply.health import AgentHealth, check_once, local_socket
from mcfleet.apply.probe import probe
from mcfleet.errors import McfleetError
from mcfleet.fleet.load import HostEntry
from mcfleet.kinds.service import agent_socket_problem
from mcfleet.transport.base import Node
from mcfleet.transport.ssh import SshPool
from mcfleet.util.aio import both


@dataclass(frozen=True)
class AgentStatus:
    host: str
    reachable: bool
    binary_sha256: str | None = None
    running_sha256: str | None = None
    confirmed_sha256: str | None = None
    version: str | None = None
    unit: str = "unknown"
    health: str = "unknown"  # SERVING | NOT_SERVING | the error
    error: str | None = None
    skew: bool = False
    boot: str = ""  # the agent's boot sequence while it has not ended healthy (apply.health.boot_text)

    @property
    def ok(self) -> bool:
        return self.reachable and self.health == "SERVING" and self.unit in ("active", "unknown")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def agent_health(node: Node, entry: HostEntry) -> AgentHealth:
    """The agent's answer over its forwarded socket (health, then Info)."""
    return await check_once(await local_socket(node, entry.host.agent.socket), timeout=5.0)


async def host_status(pool: SshPool, entry: HostEntry, *, probe_if_serving: bool = True) -> AgentStatus:
    """`probe_if_serving=False` (`mcfleet status`, whose facts already hold the binary, the unit and the
    manifest): the node's probe runs only when the agent does not serve, to say why; it is one command
    that runs the node helper four times, for what a serving agent's own answer already says."""
    name = entry.host.name
    try:
        node = await pool.connect(entry)
        if probe_if_serving:
            # the probe (one command) and the agent's answer (its relay, then two calls) do not depend on each
            # other: asked at once, the status waits for the slower, not for their SSH round trips one by one
            state, health = await both(probe(node, entry.host), agent_health(node, entry))
        else:
            health = await agent_health(node, entry)
            if health.serving:
                return AgentStatus(name, True, running_sha256=health.bundle_sha256 or None,
                                   version=health.version or None, health="SERVING", boot=health.boot)  # fmt: skip
            state = await probe(node, entry.host)
        link = None
        if not health.serving and not health.version and state.binary_sha256:  # an installed agent, silent
            problem = await agent_socket_problem(node, entry.host.agent.socket, entry.host.agent.unit)
            link = problem.said if problem and problem.state == "link" else None
    except McfleetError as exc:
        return AgentStatus(name, False, error=exc.message)
    return AgentStatus(
        name,
        True,
        binary_sha256=state.binary_sha256,
        running_sha256=health.bundle_sha256 or None,
        confirmed_sha256=state.confirmed_sha256,
        version=health.version or None,
        unit=state.active if state.has_systemd else "unknown",
        health="SERVING"
        if health.serving
        else link or _health_text(health.error, state, answered=bool(health.version)),
        boot=health.boot,
    )


def _health_text(error: str, state: Any, *, answered: bool = False) -> str:
    """What a failed health check means for a person: a closed socket is an agent that is not running.

    An agent that `answered` runs, whatever its reason says: "health status NOT_SERVING: podman API
    not reachable at unix://…: No such file or directory" is podman's socket missing, not the agent's."""
    if answered or error.startswith("health status "):
        return error or "NOT_SERVING"
    if error and ("UNAVAILABLE" in error or "Socket closed" in error or "No such file" in error):
        if not getattr(state, "binary_sha256", None):
            if not getattr(state, "has_systemd", True):  # installing it cannot help: its unit needs systemd
                return "no agent (the node does not run systemd)"
            return "no agent running (not installed: `mcfleet agent upgrade` or `mcfleet apply`)"
        active = getattr(state, "active", "") if getattr(state, "has_systemd", False) else ""
        return f"no agent running (unit {active})" if active else "no agent running"
    return error or "NOT_SERVING"


def mark_skew(rows: list[AgentStatus]) -> list[AgentStatus]:
    """Flag hosts whose agent is not the most common one.  A host with no agent at all is not skew
    (its HEALTH says so), and does not count: else two new nodes would flag two up-to-date ones."""
    seen = Counter(h for r in rows if r.reachable and (h := r.running_sha256 or r.binary_sha256))
    if len(seen) <= 1:
        return rows
    common = seen.most_common(1)[0][0]
    out = []
    for r in rows:
        mine = r.running_sha256 or r.binary_sha256
        out.append(AgentStatus(**{**asdict(r), "skew": r.reachable and mine is not None and mine != common}))
    return out


async def agent_status(pool: SshPool, entries: list[HostEntry]) -> list[AgentStatus]:
    rows = await asyncio.gather(*(host_status(pool, e) for e in entries))
    return mark_skew(list(rows))


def status_row(r: AgentStatus) -> list[object]:
    """HOST, VERSION, SHA256 (12), UNIT, HEALTH, NOTE: one row of `mcfleet agent status`."""
    if not r.reachable:
        return [r.host, "-", "-", "-", "-", f"unreachable: {r.error}"]
    notes = ["version skew"] if r.skew else []
    if r.binary_sha256 and r.running_sha256 and r.binary_sha256 != r.running_sha256:
        notes.append("binary on disk differs from the running one")
    if r.boot:
        notes.append(f"boot {r.boot}")
    sha = (r.running_sha256 or r.binary_sha256 or "-")[:12]
    return [r.host, r.version or "-", sha, r.unit, r.health, "; ".join(notes)]
