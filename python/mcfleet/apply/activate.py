"""Activate (Debian): install/refresh the unit, restart, health-check; roll back on failure.

    unit file (the old one kept in root's store when it changes; drop-ins another hand added moved
    to root's store) → daemon-reload
    → arm the deadman → restart → health check (gRPC over SSH) → disarm (confirm)
    on failure: restore root's `prev` (binary and unit) → restart → health check → disarm
                → "rolled back" (the apply still fails: exit 1)

Skipped when nothing changed: same binary as the manifest's confirmed one, same
unit file, unit active.  The unit text is the one the NixOS module declares.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from mcfleet.apply import confirm
from mcfleet.apply.health import AgentHealth, wait_agent_serving
from mcfleet.apply.nodeio import AGENT_CURRENT, AGENT_PREV, UNIT_PREV, put_file, store_of, write_text_script
from mcfleet.apply.probe import AgentProbe, probe, unit_path
from mcfleet.errors import ApplyError, McfleetError
from mcfleet.fleet.desired import DesiredAgent, sha256_text
from mcfleet.fleet.load import HostEntry
from mcfleet.fleet.models import Host
from mcfleet.kinds.agent import AgentSeen, agent_change, own_dropins
from mcfleet.nix.host_values import agent_unit_text
from mcfleet.observe.manifest import AGENT_RECORD
from mcfleet.transport.base import Node


def render_unit(host: Host) -> str:
    """The unit file: the same text the NixOS module declares (nix/lib/derive.nix and its Python
    twin `nix.host_values.agent_unit_text`), so a Debian node and a NixOS node run the agent alike."""
    return agent_unit_text(HostEntry(host=host, services=(), dir=Path(".")))


def desired_agent(host: Host, sha256: str | None) -> DesiredAgent:
    a = host.agent
    return DesiredAgent(a.path, a.unit, a.user, a.socket, sha256_text(render_unit(host)), sha256)


@dataclass(frozen=True)
class ActivateOptions:
    health_timeout: float = 60.0
    deadman_s: int = 0  # 0: health_timeout + 60 s

    @property
    def deadline(self) -> int:
        return self.deadman_s or int(self.health_timeout) + 60


@dataclass(frozen=True)
class ActivateResult:
    status: str  # "changed" | "unchanged" | "rolled back" | "failed"
    message: str
    health: AgentHealth | None = None


def needs_activation(state: AgentProbe, host: Host, pushed: bool) -> str | None:
    """Why the agent must be (re)started, or None when it already runs what is wanted.

    The same decision the plan makes (kinds.agent.agent_change), from the node's state
    read right now; a binary just pushed always restarts."""
    if pushed:
        return "new agent binary"
    want = desired_agent(host, state.binary_sha256)
    seen = AgentSeen(
        state.binary_sha256 is not None, state.binary_sha256, state.unit_sha256, state.active, state.enabled,
        state.dropins,
    )  # fmt: skip
    change = agent_change(want, seen, state.manifest.agent if state.manifest else None)
    return change.reason if change else None


async def _install_unit(node: Node, host: Host, state: AgentProbe) -> None:
    """Write the unit (the one that ran kept in root's store first), reload systemd, enable it: one
    round trip, each step on its own line exiting 1 when it fails (nothing later runs then)."""
    text = render_unit(host)
    path = unit_path(host)
    q = shlex.quote(path)
    dropins = own_dropins(state.dropins, host.agent.unit)
    if state.unit_sha256 == sha256_text(text) and state.enabled == "enabled" and not dropins:
        return  # nothing to write, reload or enable (the restart reloads if systemd holds an older text)
    lines = []
    kept = f"{store_of(node)}/dropins"  # DROPINS_KEPT, or a test's scratch store
    for dropin in dropins:  # another hand's override: kept in root's store, never deleted
        to = shlex.quote(f"{kept}/{dropin.strip('/').replace('/', '_')}")
        lines.append(f"mkdir -p -m 700 {shlex.quote(kept)} && mv -f -- {shlex.quote(dropin)} {to} || exit 1")
    if state.unit_sha256 != sha256_text(text):
        if state.unit_sha256:  # keep the unit that ran, for the rollback, in root's store
            p = shlex.quote(UNIT_PREV)
            lines.append(f"cp {q} {p}.tmp && mv -f {p}.tmp {p} || {{ rm -f {p}.tmp; exit 1; }}")
        lines.append(write_text_script(path))
    # one reload: `enable` alone reloads systemd too (measured 111 ms vs 11 ms with --no-reload on a
    # lab node); the link it makes only matters at the next boot
    unit = shlex.quote(host.agent.unit)
    lines.append(f"systemctl daemon-reload && systemctl enable --quiet --no-reload {unit}")
    res = await node.run("\n".join(lines), input=text if len(lines) > 1 else None)
    res.check(f"installing the unit {path} (the previous one kept as {UNIT_PREV})", node.name)


# How long the restart command waits on the node for the new agent's socket: the agent binds it
# as soon as its gRPC server starts (before it loads the rest of itself), so the first health
# check right after finds it (polling from here would add a round trip and a retry delay).
SOCKET_WAIT_S = 3.0
SOCKET_POLL_S = 0.02


def restart_script(host: Host) -> str:
    """Root shell: restart the unit, print its restart counter, wait (bounded) for the agent's socket.

    restart is synchronous: the old process is gone when it returns, so a later answer is the
    new one's.  `reset-failed` first clears what an old crash-looping process left (its failed
    state and, on systemd versions that keep it, its restart counter).  systemd is reloaded
    first when it still holds an older text of the unit than the file (NeedDaemonReload).
    The wait ends early when the new process is gone (a crash: the health check then reports it).
    """
    unit, sock = shlex.quote(host.agent.unit), shlex.quote(host.agent.socket)
    tries = int(SOCKET_WAIT_S / SOCKET_POLL_S)
    return "\n".join(
        [
            f'if [ "$(systemctl show -p NeedDaemonReload --value {unit})" = yes ]; then systemctl daemon-reload; fi',
            f"systemctl reset-failed {unit} 2>/dev/null",
            f"systemctl restart {unit} || exit $?",
            f'echo "restarts=$(systemctl show -p NRestarts --value {unit})"',
            f"pid=$(systemctl show -p MainPID --value {unit}); n=0",
            'alive() { [ "${pid:-0}" -gt 0 ] && kill -0 "$pid" 2>/dev/null; }',
            f'while [ ! -S {sock} ] && [ "$n" -lt {tries} ] && alive; do',
            f"  sleep {SOCKET_POLL_S}; n=$((n + 1))",
            "done",
            "exit 0",
        ]
    )


async def _restart(node: Node, host: Host) -> int:
    """Restart the unit (see `restart_script`); returns its restart counter right after, the base
    health is measured from."""
    res = await node.run(restart_script(host), timeout=120)
    res.check(f"restarting {host.agent.unit}", node.name)
    for line in res.stdout.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "restarts" and value.isdecimal():
            return int(value)
    return 0


def restore_script(host: Host) -> str:
    """Root shell: root's `prev` back to `current` and the unit back from the store (exit 4: no prev)."""
    u, up = shlex.quote(unit_path(host)), shlex.quote(UNIT_PREV)
    cur, prev = shlex.quote(AGENT_CURRENT), shlex.quote(AGENT_PREV)
    return "\n".join(
        [
            "set -eu",
            f"[ -f {prev} ] || exit 4",
            f"cp {prev} {cur}.tmp && mv -f {cur}.tmp {cur}",
            f"if [ -f {up} ]; then cp {up} {u}.rollback.tmp && mv -f {u}.rollback.tmp {u}; fi",
        ]
    )


async def _restore_prev(node: Node, host: Host, state: AgentProbe) -> bool:
    res = await node.run(restore_script(host), timeout=60)
    if res.exit_status == 4:
        return False
    res.check("restoring the previous agent in root's store", node.name)
    await put_file(node, host.agent.path, source=AGENT_CURRENT, mode="0755", record=AGENT_RECORD)
    res = await node.run(["systemctl", "daemon-reload"], timeout=60)
    res.check("reloading systemd", node.name)
    return True


def _hold_before_confirm() -> None:
    """Fault injection for the deadman test: MCFLEET_TEST_HOLD_BEFORE_CONFIRM=<s> stalls here."""
    hold = os.environ.get("MCFLEET_TEST_HOLD_BEFORE_CONFIRM")
    if hold:
        import sys
        import time

        print("mcfleet-test: healthy, holding before confirm", file=sys.stderr, flush=True)
        time.sleep(float(hold))  # blocking on purpose: the test kills us while we sit here


def no_systemd(host: Host, phase: str) -> ApplyError:
    return ApplyError(
        "the node does not run systemd, and the agent runs as the systemd unit " + host.agent.unit,
        location=f"{host.name}: {phase}",
        hint="mcfleet manages Debian and NixOS nodes booted with systemd",
    )


async def probe_ready(node: Node, host: Host, phase: str) -> AgentProbe:
    """The agent's state, read before anything is written (provisioning does not change it);
    a node that cannot run the agent's unit is refused here, untouched."""
    state = await probe(node, host)
    if not state.has_systemd:
        raise no_systemd(host, phase)
    return state


async def activate(
    node: Node, host: Host, state: AgentProbe, *, pushed: bool, sha: str, opts: ActivateOptions
) -> ActivateResult:
    reason = needs_activation(state, host, pushed)
    if reason is None:
        return ActivateResult("unchanged", "agent active, unit and binary as applied")
    if not state.has_systemd:
        raise no_systemd(host, "activate")
    await _install_unit(node, host, state)
    # from here until disarm, the deadman reverts the node if we vanish or lose the connection
    deadman = await confirm.arm(node, host, opts.deadline)
    try:
        return await _restart_and_check(node, host, state, deadman, reason=reason, sha=sha, opts=opts)
    except McfleetError as exc:
        raise ApplyError(
            f"{exc.message}; the node restores its previous agent by itself within {deadman.deadline} s "
            "unless a later apply confirms it",
            location=f"{host.name}: activate",
            hint=exc.hint or "re-run the apply once the node is reachable",
        ) from exc


LOG_LINES = 8


async def last_log_lines(node: Node, host: Host) -> str:
    """The unit's last journal lines, as `; its last log lines: | …` — or "" when there are none to read."""
    res = await node.run(
        ["journalctl", "-u", host.agent.unit, "-n", str(LOG_LINES), "--no-pager", "-o", "cat"], timeout=15
    )
    lines = [line.rstrip() for line in res.stdout.splitlines() if line.strip() and not line.startswith("-- ")]
    if res.exit_status != 0 or not lines:
        return ""
    return "; its last log lines:\n" + "\n".join(f"      | {line[:200]}" for line in lines[-LOG_LINES:])


async def _restart_and_check(
    node: Node,
    host: Host,
    state: AgentProbe,
    deadman: confirm.Deadman,
    *,
    reason: str,
    sha: str,
    opts: ActivateOptions,
) -> ActivateResult:
    base = await _restart(node, host)
    health = await wait_agent_serving(node, host, timeout=opts.health_timeout, expect_sha=sha, restarts_before=base)
    if health.serving:
        _hold_before_confirm()
        await confirm.disarm(node, deadman)
        # the reason is the state found before ("mcp-agent.service is inactive"): after it, what is true now
        return ActivateResult("changed", f"agent {health.version or '?'} serving (restarted: {reason})", health)
    # failed: roll back now rather than wait for the deadman; keep what the new agent said first
    said = await last_log_lines(node, host)
    health = AgentHealth(False, error=f"{health.error}{said}") if said else health
    if not await _restore_prev(node, host, state):
        await node.run(["systemctl", "stop", host.agent.unit])
        await confirm.disarm(node, deadman)
        return ActivateResult("failed", f"agent not healthy ({health.error}); no previous agent to roll back to")
    base = await _restart(node, host)
    old = await wait_agent_serving(node, host, timeout=opts.health_timeout, restarts_before=base)
    await confirm.disarm(node, deadman)
    if old.serving:
        return ActivateResult(
            "rolled back", f"new agent not healthy ({health.error}); previous agent serves again", old
        )
    return ActivateResult(
        "failed", f"new agent not healthy ({health.error}); rolled back but the previous one fails too: {old.error}"
    )
