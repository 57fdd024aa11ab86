"""The Plan: ordered actions per host and phase, plus what it was made from.

An `Action` is `(host, phase, kind, subject, before, after, reason)`:
- `phase` is the `Phase` of the resource kind that made it (see mcfleet.kinds),
  one of PHASES, in apply order: `host` (pinned users, OS/arch, host key), agent,
  cert, deploy, route, dns, manifest (removals: dns, route, deploy).
- `kind` is create | update | delete | replace | move | refuse.  A `move` (phase migrate, on
  the destination host) is a service that leaves one host's folder for another's: its data
  goes with it (kinds.migrate).  A refusal is part of
  the plan: apply refuses to run a plan with one unless it is overridden by its
  `id` (stable: host/phase/subject).
`Plan.blocked` lists, per host, the kinds that cannot act here ("blocked: why"),
in place of actions apply could not perform.
- `before` / `after` are plain JSON values (observed / desired), never secrets.

`Plan.gone` lists the hosts whose folder was deleted while their node still held services, DNS
records or routes (plan.gone): a notice, never an action.
`Plan.unreachable` lists the hosts that could not be observed (host -> reason);
they have no actions.  `inputs` (every fleet file the plan was made from, with its digest),
`fleet_hash` and `facts_digests` make a saved plan checkable for staleness (see plan.saved).
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
Kind = Literal["create", "update", "delete", "replace", "move", "refuse"]
KINDS: tuple[str, ...] = ("create", "update", "delete", "replace", "move", "refuse")
# In a file action's `after`: the node already holds the file, only the manifest's record of it changes
# (kinds/files.py); a marker for apply, which the plan's text does not show (the reason says it).
RECORD_ONLY = "record_only"
PLAN_FORMAT = 2  # 2: `inputs` (the files a plan was made from) and a fleet_hash over them


class Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

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
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    hint: str | None = None
    escalation: bool = Field(
        default=False, description="reached, but sudo/doas refused to run commands as root (the hint names the rule)"
    )


class Blocked(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    phase: Phase
    reason: str


class Unobserved(BaseModel):
    """A backend the plan could not read for a host: its kind was compared with the manifest alone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    phase: Phase
    reason: str


class GoneHost(BaseModel):
    """A host with no folder under hosts/ any more whose manifest, when last read or written here, listed
    these (mcfleet.plan.gone): nothing plans them again, so they stay on the node and at the servers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    applied_at: str | None = Field(default=None, description="when its manifest was written, as last seen")
    applied_by: str | None = None
    services: list[str] = Field(default_factory=empty_list)
    records: list[str] = Field(default_factory=empty_list, description="`name type value` of each DNS record")
    routes: list[str] = Field(default_factory=empty_list, description="`hostname:listener` of each proxy route")
    certs: list[str] = Field(default_factory=empty_list)
    files: list[str] = Field(default_factory=empty_list, description="the paths of the files it wrote")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


def sort_actions(actions: list[Action], host_order: list[str]) -> list[Action]:
    """Per host in selection order, the order apply runs them: changes by phase, then removals by
    phase in reverse (DNS, routes, then containers), then the manifest; subjects within a phase."""
    rank = {h: i for i, h in enumerate(host_order)}

    def key(a: Action) -> tuple[int, int, int, str]:
        index = PHASES.index(a.phase)
        if a.phase == Phase.manifest:
            return rank.get(a.host, len(rank)), 2, 0, a.subject
        if a.kind == "delete":
            return rank.get(a.host, len(rank)), 1, -index, a.subject
        return rank.get(a.host, len(rank)), 0, index, a.subject

    return sorted(actions, key=key)
