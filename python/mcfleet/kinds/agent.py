"""The agent kind: the mcp-agent binary, its systemd unit and whether it runs.

One decision (`agent_change`) for plan and apply: the binary's hash (against the
build, else the manifest's confirmed one), the unit file's hash (against the unit
apply installs, so a change of `agent.user`/`unit`/`path` shows as `~` with the
values), the unit's state and its drop-ins, and whether an earlier apply confirmed the binary.  The
plan reads these from the facts; apply re-reads them (apply.probe) right before it
acts and asks the same function.  apply: build, push, activate (apply.pipeline runs
those phases; every build ends before any activation).  record: what answered the
health check, with the unit and user it runs as.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcfleet.fleet.desired import DesiredAgent, DesiredHost
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import ApplyContext, NoRead, Outcome
from mcfleet.kinds.system import system_diff
from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import NODE_STORE, Manifest, ManifestAgent
from mcfleet.phase import Phase
from mcfleet.plan.model import Action


@dataclass(frozen=True)
class AgentSeen:
    """The agent as found on the node (from the facts, or from apply's probe)."""

    present: bool
    binary_sha256: str | None
    unit_sha256: str | None
    active: str | None  # systemctl is-active; None when the node has no systemd answer
    enabled: str | None = None  # systemctl is-enabled; None/"unknown" when not read
    dropins: tuple[str, ...] = ()  # drop-in files that override the unit (systemctl show DropInPaths)


@dataclass(frozen=True)
class AgentChange:
    """What the agent kind would do to a host's agent, and why."""

    kind: str  # "create" | "update"
    reason: str


def _identity_change(want: DesiredAgent, recorded: ManifestAgent | None) -> str | None:
    if recorded is None:
        return None
    moved = [
        f"{label} {old} → {new}"
        for label, old, new in (
            ("user", recorded.user, want.user),
            ("unit", recorded.unit, want.unit),
            ("path", recorded.path, want.path),
        )
        if old is not None and old != new
    ]
    return ", ".join(moved) or None


# where activation keeps the drop-ins it moves away from the agent's unit (root's store on the node)
DROPINS_KEPT = f"{NODE_STORE}/dropins"


def unit_dropins(paths: Iterable[str] | None) -> tuple[str, ...]:
    """The drop-in files systemd applies to the unit that activation can move away: absolute `.conf` paths
    under /etc/systemd or /run/systemd (only root writes there), anything else left unjudged."""
    return tuple(sorted(p for p in (paths or ()) if DROPIN_PATH.match(p) and "/../" not in p))


def own_dropins(dropins: Iterable[str], unit: str) -> tuple[str, ...]:
    """The drop-ins of this unit alone (`<unit>.d/`): one for every service (`service.d/`) or a name prefix
    (`mcp-.service.d/`) is the operator's for more than the agent, and stays."""
    return tuple(p for p in dropins if p.rsplit("/", 2)[-2] == f"{unit}.d")


DROPIN_PATH = re.compile(r"^/(etc|run)/systemd/[A-Za-z0-9@._/-]+\.d/[A-Za-z0-9@._-]+\.conf$")


def agent_change(want: DesiredAgent, seen: AgentSeen, recorded: ManifestAgent | None) -> AgentChange | None:
    """Why the agent must be installed or (re)activated, or None when it runs what is wanted."""
    if not seen.present:
        return AgentChange("create", f"no agent binary at {want.path}")
    wanted_sha = want.sha256 or (recorded.sha256 if recorded else None)
    confirmed = recorded.sha256 if recorded else None
    if wanted_sha is None:
        return AgentChange("update", "the agent on the node is not recorded in the manifest")
    if seen.binary_sha256 != wanted_sha:
        why = "a new agent bundle" if want.sha256 else "the binary on the node differs from the one applied (drift)"
        return AgentChange("update", why)
    if seen.unit_sha256 != want.unit_sha256:
        moved = _identity_change(want, recorded)
        if moved:
            return AgentChange("update", f"the unit file changes: {moved}")
        return AgentChange("update", "unit file changed" if seen.unit_sha256 else "unit file missing")
    if dropins := own_dropins(seen.dropins, want.unit):  # mcfleet writes none: another hand's `systemctl edit`
        return AgentChange("update", f"drop-in {', '.join(dropins)} overrides {want.unit} (activation moves "
                           f"it to root's store, {DROPINS_KEPT})")  # fmt: skip
    if seen.active not in (None, "active"):
        return AgentChange("update", f"{want.unit} is {seen.active}")
    if seen.enabled not in (None, "", "unknown", "enabled"):  # activation enables it again
        return AgentChange("update", f"{want.unit} is {seen.enabled} at boot (activation enables it)")
    if confirmed != seen.binary_sha256:
        return AgentChange("update", "binary not confirmed by an earlier apply")
    return None


def _values(want: DesiredAgent, sha: str | None) -> dict[str, Any]:
    return {"path": want.path, "sha256": sha, "unit": want.unit, "user": want.user}


class AgentKind(NoRead):
    name = "agent"
    phase = Phase.agent
    records_desired_set = False  # it records what its apply did
    apply_phases = (Phase.build, Phase.push, Phase.activate)

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return None

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        if d.os == "nixos":  # the agent is a package of the system closure: one `~ system old → new` line
            return system_diff(d, f)
        got = f.agent
        if got is None:
            return []
        want = d.agent
        if got.systemd is False:  # the facts saw PID 1 is not systemd (or no systemctl): no unit can run
            return [
                Action(
                    host=d.name,
                    phase=Phase.agent,
                    kind="refuse",
                    subject="agent",
                    before={"systemd": False},
                    after=_values(want, want.sha256),
                    reason=f"{d.name} does not run systemd: the agent runs as the systemd unit {want.unit}",
                    hint="boot the node with systemd (PID 1), or take the host out of the fleet",
                )
            ]
        seen = AgentSeen(got.present, got.sha256, got.unit_sha256, got.unit_active, got.unit_enabled,
                         unit_dropins(got.unit_dropins))  # fmt: skip
        change = agent_change(want, seen, m.agent)
        if change is None:
            return []
        after = _values(want, want.sha256 or (m.agent.sha256 if m.agent else None))
        before = None
        if got.present:
            recorded = m.agent
            before = {
                "path": want.path,
                "sha256": got.sha256,
                "unit": recorded.unit if recorded and recorded.unit else want.unit,
                "user": recorded.user if recorded else None,
                "state": got.unit_active,
                "enabled": got.unit_enabled,
                "unit_sha256": got.unit_sha256,
            }
            after = {**after, "state": "active", "enabled": "enabled", "unit_sha256": want.unit_sha256}
        return [
            Action(
                host=d.name,
                phase=Phase.agent,
                kind=change.kind,
                subject="agent",
                before=before,
                after=after,
                reason=change.reason,
            )
        ]

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        """Build, push and activate are the pipeline's agent phases (they need the fleet-wide build first)."""
        return Outcome("unchanged")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        """After a healthy activation: the hash that answered, and the unit and user it runs as."""
        sha: str | None = ctx.data.get("agent_sha256")
        if not sha:
            return m
        version: str | None = ctx.data.get("agent_version")
        prev = m.agent
        if not version and prev is not None and prev.sha256 == sha:
            version = prev.version
        want = ctx.desired.agent
        agent = ManifestAgent(
            path=want.path,
            sha256=sha,
            version=version or None,
            unit=want.unit,
            user=want.user,
            unit_sha256=want.unit_sha256,
        )
        return m.model_copy(update={"agent": agent})
