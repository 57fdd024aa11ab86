"""The Plan: ordered actions per host and phase, plus what it was made from.

An `Action` is `(host, phase, kind, subject, before, after, reason)`:
- `phase` is the `Phase` of the resource kind that made it (see mcfleet.kinds),
  one of PHASES, in apply order: `host` (pinned users, OS/arch, host key), agent,
  cert, deploy, route, dns, manifest (removals after the changes, the other way round: `apply_passes`).
- `kind` is create | update | delete | replace | move | refuse.  A `move` (phase migrate, on
  the destination host) is a service that leaves one host's folder for another's: its data
  goes with it (kinds.migrate).  A refusal is part of
  the plan: apply refuses to run a plan with one unless it is overridden by its
  `id` (stable: host/phase/subject).
`Plan.blocked` lists, per host, the kinds that cannot act here ("blocked: why"),
in place of actions apply could not perform.
- `before` / `after` are plain JSON values (observed / desired), never secrets.

`Plan.gone` lists the hosts whose folder was deleted while their node still held services, DNS
records or routes (plan.gone): a notice.  The DNS records such a host left at the server are the one
thing apply can remove without its node: a plan of the whole fleet lists them as that host's `delete`
actions (plan.gone_records), the only actions whose host is not one of `hosts`.
`Plan.unreachable` lists the hosts that could not be observed (host -> reason);
they have no actions.  `inputs` (every fleet file the plan was made from, with its digest),
`fleet_hash` and `facts_digests` make a saved plan checkable for staleness (see plan.saved).
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcfleet.fleet.models_base import FROZEN
from mcfleet.phase import Phase
from mcfleet.util.empty import empty_list

PHASES: tuple[Phase, ...] = (
    Phase.host,
    Phase.agent,
    Phase.cert,
    Phase.migrate,
    Phase.files,
    Phase.deploy,
    Phase.route,
    Phase.dns,
    Phase.manifest,
)
# The phases apply runs for every host it touches, whatever kinds were selected, changes and removals
# together: host and agent before the other phases, the manifest after them.
HEAD_PHASES: tuple[Phase, ...] = (Phase.host, Phase.agent, Phase.manifest)
Kind = Literal["create", "update", "delete", "replace", "move", "refuse"]
KINDS: tuple[str, ...] = ("create", "update", "delete", "replace", "move", "refuse")
# In a file action's `after`: the node already holds the file, only the manifest's record of it changes
# (kinds/files.py); a marker for apply, which the plan's text does not show (the reason says it).
RECORD_ONLY = "record_only"
PLAN_FORMAT = 2  # 2: `inputs` (the files a plan was made from) and a fleet_hash over them


class Action(BaseModel):
    model_config = FROZEN

    host: str
    phase: Phase
    kind: Kind
    subject: str = Field(description="what the action is about, e.g. 'user mcp', 'service web'")
    before: Any = None
    after: Any = None
    reason: str = ""
    hint: str | None = None
    held_by: str | None = Field(
        default=None,
        description="a refusal held with another refusal: that one's id (host/phase/subject), its cause",
    )

    @property
    def id(self) -> str:
        return f"{self.host}/{self.phase}/{self.subject}"

    def held_with(self, cause: "Action", reason: str) -> "Action":
        """This change refused because `cause` (a refusal) is: it says why and takes the cause's hint."""
        return self.model_copy(update={"kind": "refuse", "reason": reason, "hint": cause.hint, "held_by": cause.id})


class UnreachableHost(BaseModel):
    model_config = FROZEN

    reason: str
    hint: str | None = None
    escalation: bool = Field(
        default=False, description="reached, but sudo/doas refused to run commands as root (the hint names the rule)"
    )


class Blocked(BaseModel):
    model_config = FROZEN

    host: str
    phase: Phase
    reason: str


class Unobserved(BaseModel):
    """A backend the plan could not read for a host: its kind was compared with the manifest alone."""

    model_config = FROZEN

    host: str
    phase: Phase
    reason: str


class GoneHost(BaseModel):
    """A host with no folder under hosts/ any more whose manifest, when last read or written here, listed
    these (mcfleet.plan.gone): nothing plans them again, so they stay on the node and at the servers."""

    model_config = FROZEN

    applied_at: str | None = Field(default=None, description="when its manifest was written, as last seen")
    applied_by: str | None = None
    services: list[str] = Field(default_factory=empty_list)
    records: list[str] = Field(default_factory=empty_list, description="`name type value` of each DNS record")
    routes: list[str] = Field(default_factory=empty_list, description="`hostname:listener` of each proxy route")
    certs: list[str] = Field(default_factory=empty_list)
    files: list[str] = Field(default_factory=empty_list, description="the paths of the files it wrote")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # FROZEN but not frozen: filled in as it is made

    format: int = PLAN_FORMAT
    created_at: str = ""
    root: str = ""
    hosts: list[str] = Field(default_factory=empty_list, description="the selection the plan covers")
    fleet_hash: str = ""
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="every file the plan was made from, relative to the fleet folder -> sha256 of its content",
    )
    facts_digests: dict[str, str] = Field(default_factory=dict, description="host -> digest of its facts")
    agent_inputs: str = Field(
        "",
        description="the inputs hash of the agent bundle the plan compared the Debian hosts with (mcfleet's "
        "agent sources, pins and platforms); empty when none was built",
    )
    actions: list[Action] = Field(default_factory=empty_list)
    unreachable: dict[str, UnreachableHost] = Field(default_factory=dict)
    blocked: list[Blocked] = Field(default_factory=empty_list, description="kinds that cannot act on a host, and why")
    unobserved: list[Unobserved] = Field(
        default_factory=empty_list, description="backends that did not answer: compared with the manifest alone"
    )
    gone: dict[str, GoneHost] = Field(
        default_factory=dict,
        description="hosts whose folder left hosts/ while their node still holds services, records or routes",
    )
    gone_unknown: str | None = Field(default=None, description="why gone hosts could not be told this time")

    def counts(self) -> dict[str, int]:
        c: Counter[str] = Counter(a.kind for a in self.actions)
        return {k: c.get(k, 0) for k in KINDS}

    @property
    def refusals(self) -> list[Action]:
        return [a for a in self.actions if a.kind == "refuse"]

    @property
    def has_changes(self) -> bool:
        return any(a.kind != "refuse" for a in self.actions)

    def for_host(self, host: str) -> list[Action]:
        return [a for a in self.actions if a.host == host]


def is_removal(a: Action) -> bool:
    """Whether apply runs `a` in its phase's removal pass: a delete, and a service kept stopped
    (`"active": false`).  Stopping a service takes its DNS names and routes away, as removing it does,
    so it runs where a removal does: after they are gone, and no route ever leads to a stopped container."""
    if a.kind == "delete":
        return True
    return (
        a.phase == Phase.deploy and a.kind == "update" and isinstance(a.after, dict) and a.after.get("active") is False
    )


def pass_key(phase: Phase, removal: bool) -> tuple[int, int]:
    """Where apply runs a phase's changes (or its removals): first the host and agent phases, whole; then
    the other phases' changes in phase order; then their removals in reverse phase order (DNS names and
    routes go before the containers they lead to, so nothing points at what is already gone); the
    manifest last."""
    index = PHASES.index(phase)
    if phase == Phase.manifest:
        return 3, 0
    if phase in HEAD_PHASES:
        return 0, index
    return (2, -index) if removal else (1, index)


def apply_passes(actions: Sequence[Action]) -> list[tuple[Phase, bool, list[Action]]]:
    """One host's actions grouped as apply runs them: (phase, whether it is a removal pass, its actions),
    in `pass_key` order, subjects in the order given.  A refused action sits in its phase's changes pass
    (apply never runs it); the plan's text shows these passes, apply runs them."""
    out: list[tuple[Phase, bool, list[Action]]] = []
    for a in sorted(actions, key=lambda a: pass_key(a.phase, is_removal(a))):
        removal = is_removal(a) and a.phase not in HEAD_PHASES
        if out and out[-1][0] == a.phase and out[-1][1] == removal:
            out[-1][2].append(a)
        else:
            out.append((a.phase, removal, [a]))
    return out


def sort_actions(actions: list[Action], host_order: list[str]) -> list[Action]:
    """Per host in selection order, the order apply runs them (`pass_key`); subjects within a pass."""
    rank = {h: i for i, h in enumerate(host_order)}
    return sorted(actions, key=lambda a: (rank.get(a.host, len(rank)), *pass_key(a.phase, is_removal(a)), a.subject))
