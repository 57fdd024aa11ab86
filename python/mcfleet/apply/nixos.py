"""Deploy a NixOS system to a node: build → copy → set profile → switch → verify → confirm.

    build    the host's toplevel (`nixosConfigurations.<host>.config.system.build.toplevel`)
    copy     `nix copy --to ssh-ng://…` over the host's own SSH settings; skipped when the
             node's store already holds the toplevel
    profile  `nix-env -p /nix/var/nix/profiles/system --set <toplevel>` (goals switch, boot)
    switch   `<toplevel>/bin/switch-to-configuration <goal>`, with the deadman armed first
    verify   the agent's gRPC health check (the agent is in the system closure, and
             /srv/mcp/mcp-agent points into it)
    confirm  over a FRESH SSH connection: proves the new system still lets us in;
             without it the node switches back to the previous generation by itself

A failed health check rolls back at once (the same root-owned script the timer would
run), checks the previous agent serves again, and reports "rolled back" (exit 1).
Everything the rollback needs lives in a root-owned 0700 directory (/var/lib/mcfleet),
so the mcp account the agent runs as can neither edit nor trigger it.
"""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from mcfleet.apply import confirm
from mcfleet.apply.health import AgentHealth, wait_agent_serving
from mcfleet.apply.nodeio import write_text
from mcfleet.errors import ApplyError, InputError, McfleetError
from mcfleet.fleet.load import HostEntry
from mcfleet.fleet.models import Host
from mcfleet.nix import argv as nixargv
from mcfleet.nix.closures import push, trust_of
from mcfleet.transport.base import Node

STATE_DIR = "/var/lib/mcfleet"
ROLLBACK_SCRIPT = f"{STATE_DIR}/nixos-rollback.sh"
DEADMAN_LOG = f"{STATE_DIR}/nixos-deadman.log"
CURRENT_SYSTEM = "/run/current-system"
NONE = "-"

FreshConnect = Callable[[], Awaitable[Node]]


@dataclass(frozen=True)
class SystemState:
    """The node's system, read in one round trip right before acting."""

    current: str | None  # /run/current-system, resolved
    generation: int | None  # the system profile's current generation
    profile_target: str | None  # what that generation points at
    has_path: bool  # the node's store already holds the toplevel
    agent_active: str
    nix_env: str | None  # absolute path of nix-env on the node


@dataclass(frozen=True)
class CopyResult:
    changed: bool
    message: str
    seconds: float


@dataclass(frozen=True)
class SwitchResult:
    status: str  # "changed" | "unchanged" | "rolled back" | "failed"
    message: str
    health: AgentHealth | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class NixosOptions:
    goal: str = "switch"
    health_timeout: float = 60.0
    confirm_timeout: int = 0  # 0: health_timeout + 60 s

    @property
    def deadline(self) -> int:
        return self.confirm_timeout or int(self.health_timeout) + 60


def _generation(link: str) -> int | None:
    """`system-12-link` → 12."""
    parts = link.rsplit("/", 1)[-1].split("-")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdecimal() else None


def state_script(host: Host, toplevel: str) -> str:
    q = shlex.quote
    profile = nixargv.SYSTEM_PROFILE
    validity = " ".join(q(a) for a in nixargv.check_validity_argv([toplevel]))
    return "\n".join(
        [
            # readlink -f prints a missing last component as is: test for existence first
            f"[ -e {CURRENT_SYSTEM} ] && echo current=$(readlink -f {CURRENT_SYSTEM})",
            f"[ -e {profile} ] && echo generation=$(readlink {profile})",
            f"[ -e {profile} ] && echo target=$(readlink -f {profile})",
            f"if {validity} >/dev/null 2>&1; then echo has=1; else echo has=0; fi",
            f"echo active=$(systemctl is-active {q(host.agent.unit)} 2>/dev/null)",
            "echo nix_env=$(command -v nix-env 2>/dev/null)",
            "true",
        ]
    )


def parse_state(stdout: str) -> SystemState:
    values = dict(line.partition("=")[::2] for line in stdout.splitlines() if "=" in line)

    def get(key: str) -> str | None:
        return values.get(key, "").strip() or None

    return SystemState(
        current=get("current"),
        generation=_generation(get("generation") or ""),
        profile_target=get("target"),
        has_path=get("has") == "1",
        agent_active=get("active") or "unknown",
        nix_env=get("nix_env"),
    )


async def read_state(node: Node, host: Host, toplevel: str) -> SystemState:
    res = await node.run(state_script(host, toplevel), timeout=60)
    res.check("reading the node's NixOS system", node.name)
    state = parse_state(res.stdout)
    if state.nix_env is None:
        raise ApplyError(
            "the node has no nix-env: it is not a NixOS node (or nix is not on root's PATH)",
            location=f"{host.name}: push",
            hint='check "os" in its host.json',
        )
    return state


# ---------------------------------------------------------------------- copy


def jump_of(entry: HostEntry, hosts: Mapping[str, HostEntry]) -> tuple[HostEntry, str] | None:
    """The jump host of `entry` when `ssh.jump` names a fleet host (its first address, its pinned key)."""
    name = entry.host.ssh.jump
    if not name:
        return None
    via = hosts.get(name)
    if via is None:
        raise InputError(
            f"{entry.host.name}: nix copy goes through the jump host {name!r}, which is not a host of this fleet, "
            "so its host key is not pinned anywhere",
            location=f"hosts/{entry.host.name}/host.json#/ssh/jump",
            hint="add the jump host to the fleet (hosts/<name>/host.json with its ssh.host_key) and name it here",
        )
    return via, via.host.addresses[0]


async def copy_system(
    node: Node,
    entry: HostEntry,
    toplevel: str,
    *,
    address: str,
    jump: tuple[HostEntry, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> CopyResult:
    """Make the node's store hold the toplevel's closure; nothing is sent when it already does.

    `on_line` gets nix copy's stderr lines (which path it is copying) as they come."""
    started = time.monotonic()
    trust_of(entry)  # a push the node would refuse is an input error here, before anything is copied
    state = await read_state(node, entry.host, toplevel)
    if state.has_path:
        return CopyResult(False, f"the node's store already has {_short(toplevel)}", time.monotonic() - started)
    try:
        plan = await push(entry, [toplevel], address=address, jump=jump, on_line=on_line)
    except McfleetError as exc:
        raise ApplyError(
            f"nix copy to the node failed: {exc.message.splitlines()[0][:300]}",
            location=f"{entry.host.name}: push",
            hint=untrusted_push_hint(entry, exc.message)
            or exc.hint
            or "check the node's SSH settings in host.json and its nix trust (nix.trust)",
        ) from exc
    took = time.monotonic() - started
    return CopyResult(True, f"copied {_short(toplevel)} ({plan.store_uri.split('?')[0]}, {took:.1f} s)", took)


def untrusted_push_hint(entry: HostEntry, message: str) -> str | None:
    """What the node's nix.conf lacks when its daemon refused the paths ("lacks a valid signature").

    The node's nix daemon decides: for a user it does not trust, every path needs a signature by a
    key in trusted-public-keys; a trusted user (or root) may push unsigned paths.
    """
    if "lacks a valid signature" not in message:
        return None
    host = entry.host
    first = (
        'the first switch needs the line added by hand, or "ssh": {"sudo": true} (the store is then written as root)'
    )
    if host.nix.trust == "signed":
        keys = " ".join(host.nix.public_keys)
        return (
            f"the node's nix does not trust the signing key: its nix.conf needs `extra-trusted-public-keys = {keys}` "
            f"(the NixOS module writes it from nix.public_keys once such a system runs; {first})"
        )
    if host.nix.trust == "trusted-user":
        return (
            f"the node's nix does not trust {host.ssh.user}: its nix.conf needs `extra-trusted-users = "
            f"{host.ssh.user}` (the NixOS module writes it for nix.trust trusted-user once such a system runs; {first})"
        )
    return None


def _short(path: str) -> str:
    """/nix/store/<hash>-name → <hash[:8]>-name, for messages."""
    base = path.rsplit("/", 1)[-1]
    digest, _, name = base.partition("-")
    return f"{digest[:8]}-{name}" if name else base


# ---------------------------------------------------------------------- switch (with the deadman)


@dataclass(frozen=True)
class Deadman:
    token: str
    unit: str
    argv: list[str]  # the rollback script and its arguments, for an immediate rollback
    deadline: int


def rollback_script(nix_env: str) -> str:
    return confirm.fill_template(
        confirm.template("nixos-rollback.sh"),
        {"NIX_ENV": shlex.quote(nix_env), "PROFILE": nixargv.SYSTEM_PROFILE, "DIR": STATE_DIR},
    )


async def _arm(node: Node, state: SystemState, new_gen: int | None, goal: str, deadline: int) -> Deadman:
    assert state.current is not None and state.nix_env is not None
    await node.run(f"install -d -m 0700 -o root -g root {STATE_DIR}", timeout=30)
    await write_text(node, ROLLBACK_SCRIPT, rollback_script(state.nix_env), mode="0700", owner="root:root")
    ident = secrets.token_hex(4)
    token = f"{STATE_DIR}/.nixos-deadman.{ident}"
    unit = f"mcfleet-nixos-deadman-{ident}"
    old_gen = str(state.generation) if state.generation is not None else NONE
    argv = ["/bin/sh", ROLLBACK_SCRIPT, token, state.current, old_gen, str(new_gen) if new_gen else NONE, goal]
    q = shlex.quote
    cmd = (
        f"echo armed > {q(token)} && systemd-run --quiet --unit={unit} --on-active={deadline}s "
        f"--timer-property=AccuracySec=1s {' '.join(q(a) for a in argv)}"
    )
    res = await node.run(cmd, timeout=30)
    res.check("arming the rollback deadman", node.name)
    return Deadman(token, unit, argv, deadline)


async def _confirm(fresh_connect: FreshConnect, deadman: Deadman) -> None:
    """The confirmation, over a NEW SSH connection: the new system must still let us in."""
    node = await fresh_connect()
    cmd = f"rm -f {shlex.quote(deadman.token)}; systemctl stop {deadman.unit}.timer 2>/dev/null; true"
    res = await node.run(cmd, timeout=30)
    res.check("confirming the new system (disarming the deadman)", node.name)


async def _rollback_now(node: Node, deadman: Deadman) -> str:
    """Run the deadman's script at once (token still present): back to the previous generation."""
    await node.run(f"systemctl stop {deadman.unit}.timer 2>/dev/null; true", timeout=30)
    res = await node.run(" ".join(shlex.quote(a) for a in deadman.argv), timeout=300)
    return "" if res.ok else (res.stderr.strip() or res.stdout.strip() or f"exit {res.exit_status}")


async def _set_profile(node: Node, toplevel: str) -> int | None:
    res = await node.run(nixargv.set_profile_argv(toplevel), timeout=120)
    res.check("setting the system profile", node.name)
    got = await node.run(["readlink", nixargv.SYSTEM_PROFILE], timeout=30)
    return _generation(got.stdout.strip())


async def _switch(node: Node, host: Host, toplevel: str, goal: str) -> None:
    res = await node.run(nixargv.switch_argv(toplevel, goal), timeout=600)
    if not res.ok:
        raise ApplyError(
            f"switch-to-configuration {goal} failed: {(res.stderr.strip() or res.stdout.strip())[-400:]}",
            location=f"{host.name}: activate",
            hint="see the node's journal (journalctl -b) for the failing unit",
        )


def hold_before_confirm() -> None:
    """Fault injection for the deadman test: MCFLEET_TEST_HOLD_BEFORE_CONFIRM=<s> stalls here."""
    from mcfleet.apply import activate

    activate._hold_before_confirm()


async def switch_system(
    node: Node,
    entry: HostEntry,
    toplevel: str,
    *,
    opts: NixosOptions,
    fresh_connect: FreshConnect,
) -> SwitchResult:
    """Profile, switch, health, confirm; roll back to the previous generation on a failed health check."""
    host = entry.host
    started = time.monotonic()
    goal = opts.goal
    state = await read_state(node, host, toplevel)
    if goal == "dry-activate":
        res = await node.run(nixargv.switch_argv(toplevel, goal), timeout=600)
        res.check("switch-to-configuration dry-activate", node.name)
        return SwitchResult("unchanged", f"dry-activate: {_lines(res.stdout + res.stderr)}")
    if goal == "boot":
        if state.profile_target == toplevel:
            return SwitchResult("unchanged", f"boot: the system profile already is {_short(toplevel)}")
        await _set_profile(node, toplevel)
        await _switch(node, host, toplevel, goal)
        return SwitchResult("changed", f"boot: {_short(toplevel)} is the default at the next boot")
    profile_done = goal == "test" or state.profile_target == toplevel
    if state.current == toplevel and profile_done and state.agent_active == "active":
        return SwitchResult("unchanged", f"system {_short(toplevel)} active, agent active")

    new_gen = None if goal == "test" else await _set_profile(node, toplevel)
    deadman = None
    if state.current is not None:  # a first deploy has nothing to go back to
        deadman = await _arm(node, state, new_gen, goal, opts.deadline)
    try:
        await _switch(node, host, toplevel, goal)
        health = await wait_agent_serving(node, host, timeout=opts.health_timeout)
        if health.serving:
            hold_before_confirm()
            if deadman is not None:
                await _confirm(fresh_connect, deadman)
            took = time.monotonic() - started
            was = _short(state.current) if state.current else "none"
            return SwitchResult(
                "changed",
                f"system {was} → {_short(toplevel)} ({goal}): agent {health.version or '?'} serving, {took:.1f} s",
                health,
                took,
            )
    except McfleetError as exc:
        if deadman is None:
            raise
        raise ApplyError(
            f"{exc.message}; the node switches back to {_short(state.current or '')} by itself within "
            f"{deadman.deadline} s unless a later apply confirms it",
            location=f"{host.name}: activate",
            hint=exc.hint or "re-run the apply once the node is reachable",
        ) from exc
    if deadman is None:
        return SwitchResult("failed", f"agent not healthy ({health.error}); no previous system to roll back to")
    error = await _rollback_now(node, deadman)
    back = await read_state(node, host, toplevel)
    old = await wait_agent_serving(node, host, timeout=opts.health_timeout)
    took = time.monotonic() - started
    if not error and back.current == state.current and old.serving:
        return SwitchResult(
            "rolled back",
            f"new system not healthy ({health.error}); back on {_short(state.current or '')}, previous agent "
            f"serves, {took:.1f} s",
            old,
            took,
        )
    return SwitchResult(
        "failed",
        f"new system not healthy ({health.error}); the rollback to {_short(state.current or '')} "
        f"did not finish cleanly: {error or old.error or 'current-system is ' + str(back.current)}",
        old,
        took,
    )


def _lines(text: str, limit: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "; ".join(lines[:limit]) + (f" (+{len(lines) - limit} lines)" if len(lines) > limit else "") or "no output"
