"""The DNS records of a host whose folder left hosts/: the one thing it left that mcfleet can remove
without its node, at the fleet's DNS server.

Its containers, files, certificates and its own proxy's routes are on the node, which nothing describes
any more (no address, no SSH settings): those stay a notice (plan.gone).  Its records are at the server
the declared hosts' records are written to, and a name that still leads to a node nobody plans is what
hurts first (clients keep reaching it).  So a plan of the whole fleet lists, as that host's `- dns`
actions, each record the checkout noted for it (`.mcfleet/hosts-seen.json`) that:

- no declared host declares now (a service that moved keeps its name: its new host's step writes it);
- the server still answers with exactly the noted address (one it answers otherwise was changed by
  another hand, or is already gone: left alone);
- lies in the fleet's zone.

Apply removes them with the DNS provider (as a declared host's removals), checks the server no longer
answers them, and drops them from the note.  A plan of some hosts only (`--on`) does not: removing
another host's records is not what it was asked to do; it still names the gone host.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import ResourceKind
from mcfleet.phase import Phase
from mcfleet.plan.model import Action, Plan, sort_actions


def gone_record_actions(plan: Plan) -> list[Action]:
    """The plan's actions for hosts gone from hosts/ (their record removals), not the selection's."""
    return [a for a in plan.actions if a.host not in plan.hosts]


async def with_gone_records(
    loaded: LoadedFleet, plan: Plan, names: Sequence[str], kinds: Sequence[ResourceKind]
) -> Plan:
    """The plan with the gone hosts' records the server still holds, to remove (see the module's text)."""
    if not plan.gone or set(names) != set(loaded.hosts) or not any(k.phase == Phase.dns for k in kinds):
        return plan
    # the providers' clients load only for a fleet with a gone host (the plan's imports stay as they were)
    from mcfleet.kinds.providers import DnsKind
    from mcfleet.providers.base import ProviderError
    from mcfleet.providers.dns.base import in_zone
    from mcfleet.providers.select import dns_backend

    backend = dns_backend(loaded.fleet) if loaded.fleet else None
    if backend is None:
        return plan
    noted = [
        (host, *record.split(" ", 2))
        for host, entry in plan.gone.items()
        for record in entry.records
        if record.count(" ") == 2
    ]
    noted = [(host, name, rtype, value) for host, name, rtype, value in noted
             if rtype == "A" and in_zone(name, backend.zone)]  # fmt: skip
    if not noted:
        return plan
    try:
        held = await backend.answers_full(sorted({name for _h, name, _t, _v in noted}))
    except ProviderError as exc:
        why = f"the DNS server was not read ({exc.message}): the records of hosts gone from hosts/ stay this time"
        return plan.model_copy(update={"gone_unknown": "; ".join(filter(None, [plan.gone_unknown, why]))})
    actions = [
        Action(
            host=host,
            phase=Phase.dns,
            kind="delete",
            subject=f"dns {name}",
            before={"type": "A", "value": value},
            reason=f"{host} is gone from hosts/ and no declared host has {name}: its record is removed",
        )
        for host, name, _rtype, value in noted
        if held.values.get(name) == [value]
    ]
    refusal = await DnsKind().write_refusal(loaded) if actions else None
    if refusal is not None:
        why, hint = refusal
        actions = [a.model_copy(update={"kind": "refuse", "reason": f"{why}, so apply could not delete it ({a.reason})",
                                        "hint": hint}) for a in actions]  # fmt: skip
    return plan.model_copy(update={"actions": [*plan.actions, *sort_actions(actions, sorted(plan.gone))]})
