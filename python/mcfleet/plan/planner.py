"""`build(loaded, facts) -> Plan`: the whole plan for the observed hosts.

Hosts that answered are diffed (plan.diff); a host whose key did not match
becomes a `refuse` action (never connect to it); other unreachable hosts are
listed in `Plan.unreachable` and get no actions.  The plan records the fleet
files' hash and a digest of each host's facts (plan.saved checks them).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from mcfleet.fleet.load import LoadedFleet
from mcfleet.observe.facts import Facts, Unreachable
from mcfleet.plan.desired import desired_state
from mcfleet.plan.diff import diff_host
from mcfleet.plan.model import Action, Plan, UnreachableHost, sort_actions
from mcfleet.plan.saved import facts_digest, fleet_hash


def build(
    loaded: LoadedFleet,
    facts: Mapping[str, Facts | Unreachable],
    *,
    now: datetime | None = None,
    agent_hashes: Mapping[str, str] | None = None,
) -> Plan:
    """The plan for the observed hosts; `agent_hashes` (host -> sha256) is the agent build to compare with."""
    now = now or datetime.now(UTC)
    desired = desired_state(loaded, agent_hashes)
    actions: list[Action] = []
    unreachable: dict[str, UnreachableHost] = {}
    for host, item in facts.items():
        if isinstance(item, Facts):
            actions += diff_host(desired[host], item, now=now)
        elif item.cause == "host-key":
            actions.append(
                Action(
                    host=host, phase="host", kind="refuse", subject="ssh host key", reason=item.reason, hint=item.hint
                )
            )
        else:
            unreachable[host] = UnreachableHost(reason=item.reason, hint=item.hint)
    return Plan(
        created_at=now.isoformat(timespec="seconds"),
        root=str(loaded.root),
        hosts=list(facts),
        fleet_hash=fleet_hash(loaded.root),
        facts_digests={h: facts_digest(f) for h, f in facts.items()},
        actions=sort_actions(actions, list(facts)),
        unreachable=unreachable,
    )
