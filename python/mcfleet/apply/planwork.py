"""From a Plan to the work of each host, and the refusal gate in front of it (pure).

- A plan with `refuse` actions is refused as a whole unless each refusal is
  overridden with `--override HOST:WHAT` (WHAT = the action's subject, e.g.
  `user mcp`, or `phase/subject`, or the full id `host/phase/subject`).  An
  override is never a licence to do the refused thing: the refused action itself
  is never executed (a live UID is never changed); the override only lets the
  rest of the plan run.  An override that matches no refusal is an input error,
  so a typo cannot silently pass.
- A host's actions go to the apply as they are (`HostWork.actions`): the host
  kind's become provisioning (user, subids, folder, resolvers) on a Debian host
  (on NixOS the system switch: the node's configuration owns them), the agent
  kind's build, push and activate, every other kind's its own `apply`.
- Every host with any action gets its manifest rewritten at the end.
- A `move` and the actions that are part of it (kinds.migrate.move_parts) are not in any
  host's work: apply/migrate.py carries them out after the hosts' own applies, and each
  host's desired state leaves the moved service out until then (`without_moved`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcfleet.apply.pipeline import HostWork
from mcfleet.errors import InputError, Refused
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.migrate import move_parts, moves_in, without_moved
from mcfleet.phase import Phase
from mcfleet.plan.model import Action, Plan


@dataclass(frozen=True)
class Override:
    host: str
    what: str

    @classmethod
    def parse(cls, text: str) -> Override:
        host, sep, what = text.partition(":")
        if not sep or not host or not what:
            raise InputError(
                f"--override {text!r} is not HOST:WHAT",
                location="--override",
                hint="e.g. --override 'orion:user mcp' (the subject shown after `!` in the plan)",
            )
        return cls(host.strip(), what.strip())

    def matches(self, action: Action) -> bool:
        if action.host != self.host:
            return False
        return self.what in (action.subject, f"{action.phase}/{action.subject}", action.id)


def check_refusals(plan: Plan, overrides: list[Override]) -> list[Action]:
    """Raise Refused unless every refusal is overridden; return the overridden refusals."""
    refusals = plan.refusals
    unused = [o for o in overrides if not any(o.matches(a) for a in refusals)]
    if unused:
        o = unused[0]
        known = ", ".join(f"{a.host}:{a.subject}" for a in refusals) or "none"
        raise InputError(
            f"--override {o.host}:{o.what} matches no refusal in the plan",
            location="--override",
            hint=f"refusals in this plan: {known}",
        )
    open_ = [a for a in refusals if not any(o.matches(a) for o in overrides)]
    if open_:
        # the cause first: a refusal held with another open one (a folder owned by a refused user) waits for it
        open_ids = {a.id for a in open_}
        first = next((a for a in open_ if a.held_by not in open_ids), open_[0])
        more = f" (and {len(open_) - 1} more)" if len(open_) > 1 else ""
        raise Refused(
            f"the plan contains a refusal: {first.reason}{more}",
            location=f"{first.host}: " + _phase_and_subject(first),
            # the hint once: a reason may already end with it (the UID rule, said on the plan's line too)
            hint=(first.hint + "; " if first.hint and first.hint not in first.reason else "")
            + f"to run the rest of the plan anyway: --override '{first.host}:{first.subject}'",
        )
    return [a for a in refusals if any(o.matches(a) for o in overrides)]


def _phase_and_subject(action: Action) -> str:
    """Where a refusal is: `deploy service web`, but `cert api` (not `cert cert api`), `agent` (not twice)."""
    if action.subject == action.phase or action.subject.startswith(f"{action.phase} "):
        return action.subject
    return f"{action.phase} {action.subject}"


def work_from_plan(plan: Plan, loaded: LoadedFleet, desired: Mapping[str, DesiredHost]) -> list[HostWork]:
    """One HostWork per host that has something to do, in the plan's host order, carrying its actions."""
    out = []
    moves = moves_in(plan.actions)
    carried = {a.id for m in moves for a in [m, *move_parts(plan.actions, m)]}
    for name in plan.hosts:
        actions = tuple(a for a in plan.for_host(name) if a.kind != "refuse" and a.id not in carried)
        if not actions or name not in loaded.hosts:
            continue
        phases = {a.phase for a in actions}
        held = frozenset(
            a.subject.removeprefix("service ")
            for a in plan.for_host(name)
            if a.kind == "refuse" and a.phase == Phase.deploy and a.subject.startswith("service ")
        )
        # NixOS: users, subids and the agent come from the system closure; switching it does both.
        nixos = loaded.hosts[name].host.os.value == "nixos"
        out.append(
            HostWork(
                loaded.hosts[name],
                without_moved(desired[name], moves),
                actions,
                agent=Phase.agent in phases or (nixos and Phase.host in phases),
                provision=Phase.host in phases and not nixos,
                held=held,
            )
        )
    return out


def planned_agent_sha(plan: Plan, host: str) -> str | None:
    """The agent hash the plan was made for (apply refuses a bundle that differs: stale plan)."""
    for a in plan.for_host(host):
        if a.phase == Phase.agent and isinstance(a.after, dict) and a.after.get("sha256"):
            return str(a.after["sha256"])
    return None
