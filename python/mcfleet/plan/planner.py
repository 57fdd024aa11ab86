"""Making a plan: every resource kind's diff for the observed hosts.

    plan, facts = await plan_fleet(loaded, names, pool=pool)   # observe + build: the one library call
    plan = build(loaded, facts)                                  # pure: facts -> Plan

Per host that answered: first the host kind's platform check (wrong OS/arch: only
refusals, planning more would be guesswork), then a corrupt manifest is a refusal
(never read as "nothing managed"), then each kind's diff in registry order.  A kind
that cannot act in this fleet (`blocked`) contributes one `Plan.blocked` line instead
of actions apply could not perform.  A host whose key did not match becomes a
`refuse` action (never connect to it); other unreachable hosts are listed in
`Plan.unreachable`.  A service removed on one host and created on another becomes one
`move` (kinds.migrate).  The plan records the fleet files' hash and a digest of each
host's facts (plan.saved checks them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from mcfleet.fleet.desired import DesiredHost, desired_state
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds import KINDS, ResourceKind
from mcfleet.kinds.host import HostKind
from mcfleet.kinds.migrate import detect_moves, moves_left_out
from mcfleet.kinds.providers import CertKind, DnsKind
from mcfleet.observe.collect import GatherResult, gather
from mcfleet.observe.facts import Facts, Unreachable
from mcfleet.observe.manifest import Manifest, manifest_path
from mcfleet.observe.plan_notes import one_plan
from mcfleet.phase import Phase
from mcfleet.plan.gone import gone_hosts, update_seen
from mcfleet.plan.gone_records import with_gone_records
from mcfleet.plan.manifest_after import manifest_changes
from mcfleet.plan.model import Action, Blocked, Plan, Unobserved, UnreachableHost, sort_actions
from mcfleet.plan.refused_ids import refuse_changes_to_refused_ids
from mcfleet.plan.refused_services import hold_services_without_their_files, hold_what_refused_services_publish
from mcfleet.plan.route_moves import hold_moves, moving_to_left_out, named
from mcfleet.plan.saved import facts_digest, fleet_inputs, inputs_hash
from mcfleet.report.progress import Progress
from mcfleet.transport.ssh import SshOptions, SshPool


def diff_host(
    loaded: LoadedFleet,
    d: DesiredHost,
    f: Facts,
    *,
    now: datetime,
    kinds: Sequence[ResourceKind] = KINDS,
    check_backends: bool = True,
) -> tuple[list[Action], list[Blocked]]:
    platform = HostKind().platform(d, f)
    if platform:
        return platform, []
    where = manifest_path()
    if f.manifest_error:
        refusal = Action(
            host=d.name,
            phase=Phase.manifest,
            kind="refuse",
            subject="manifest",
            before=where,
            reason=f"the manifest at {where} is corrupt: {f.manifest_error}",
            hint=f"move {where} aside (mcfleet then records the node again) or restore it from a backup",
        )
        return [refusal], []
    manifest = f.manifest or Manifest()
    acts: list[Action] = []
    blocked: list[Blocked] = []
    for kind in kinds:
        found = kind.diff(d, f, manifest, now=now)
        why = kind.blocked(loaded) if check_backends and found else None
        if why:
            n = len([a for a in found if a.kind != "refuse"])
            blocked.append(Blocked(host=d.name, phase=kind.phase, reason=f"{why}; {n} change(s) not planned"))
            acts += [a for a in found if a.kind == "refuse"]
        else:
            acts += found
    acts = hold_services_without_their_files(refuse_changes_to_refused_ids(acts), d)
    return with_manifest(loaded, d, f, acts, kinds), blocked


def with_manifest(
    loaded: LoadedFleet, d: DesiredHost, f: Facts, acts: list[Action], kinds: Sequence[ResourceKind]
) -> list[Action]:
    """The host's actions (without a manifest action), and the manifest's when apply would change it."""
    acts = [a for a in acts if a.phase != Phase.manifest or a.kind == "refuse"]
    if any(a.kind != "refuse" for a in acts) and manifest_changes(loaded, d, f, acts, kinds):
        what = "create" if f.manifest is None else "update"
        acts.append(
            Action(
                host=d.name,
                phase=Phase.manifest,
                kind=what,
                subject="manifest",
                after=manifest_path(),
                reason="record what mcfleet manages on the host",
            )
        )
    return acts


def without_handed_over_names(actions: list[Action], desired: Mapping[str, DesiredHost]) -> list[Action]:
    """Without the removal of a DNS name that another host now declares (its service moved there): the
    name stays at the server, the new owner's record step writes it (a value that changes is its own
    update), and the old owner's manifest lets it go when it records what it manages.  Deleted, the
    name of a public route (whose value, the edge's address, stays when its service moves) was gone
    until the next apply: the new owner saw the server already answering and planned nothing."""
    owner = {name: host for host, d in desired.items() for name in d.records}

    def handed_over(a: Action) -> bool:
        return a.phase == Phase.dns and a.kind == "delete" and owner.get(named(a), a.host) != a.host

    return [a for a in actions if not handed_over(a)]


def build(
    loaded: LoadedFleet,
    facts: Mapping[str, Facts | Unreachable],
    *,
    now: datetime | None = None,
    agent_hashes: Mapping[str, str] | None = None,
    kinds: Sequence[ResourceKind] = KINDS,
    check_backends: bool = True,
    desired: Mapping[str, DesiredHost] | None = None,
) -> Plan:
    """The plan for the observed hosts; `agent_hashes` (host -> sha256) is the agent build to compare with
    (or `desired`, computed by the caller with those hashes)."""
    now = now or datetime.now(UTC)
    desired = desired if desired is not None else desired_state(loaded, agent_hashes)
    actions: list[Action] = []
    blocked: list[Blocked] = []
    unreachable: dict[str, UnreachableHost] = {}
    for host, item in facts.items():
        if isinstance(item, Facts):
            found, stuck = diff_host(loaded, desired[host], item, now=now, kinds=kinds, check_backends=check_backends)
            actions += found
            blocked += stuck
        elif item.cause == "host-key":
            actions.append(
                Action(
                    host=host, phase=Phase.host, kind="refuse", subject="ssh host key", reason=item.reason,
                    hint=item.hint,
                )
            )  # fmt: skip
        else:
            unreachable[host] = UnreachableHost(
                reason=item.reason, hint=item.hint, escalation=item.cause == "escalation"
            )
    actions = without_handed_over_names(actions, desired)
    # a service that left one observed host's files for another's: one move, its data carried along
    actions = detect_moves(actions, desired, loaded.fleet.zone if loaded.fleet else None)
    held = hold_what_refused_services_publish(actions, desired, loaded.fleet.zone if loaded.fleet else None)
    if held != actions:  # a change held on a host may leave its manifest as it is: asked again
        changed = {a.host for a, b in zip(actions, held, strict=True) if a != b}
        actions = [a for a in held if a.host not in changed]
        for host in changed:
            item = facts[host]
            assert isinstance(item, Facts)  # only observed hosts have actions to hold
            actions += with_manifest(loaded, desired[host], item, [a for a in held if a.host == host], kinds)
    unobserved = [u for host, item in facts.items() if isinstance(item, Facts) for u in not_read(host, item)]
    inputs = fleet_inputs(loaded)
    return Plan(
        created_at=now.isoformat(timespec="seconds"),
        root=str(loaded.root),
        hosts=list(facts),
        fleet_hash=inputs_hash(inputs),
        inputs=inputs,
        facts_digests={h: facts_digest(f) for h, f in facts.items()},
        actions=sort_actions(actions, list(facts)),
        unreachable=unreachable,
        blocked=blocked,
        unobserved=unobserved,
    )


def not_read(host: str, f: Facts) -> list[Unobserved]:
    """The backends that did not answer for this host: their kinds were compared with the manifest only."""
    out = []
    if f.services_error:
        out.append(Unobserved(host=host, phase=Phase.deploy, reason=f"{f.services_error}: "
                              "services compared with what the last apply recorded, drift not seen"))  # fmt: skip
    if f.dns_error:
        out.append(Unobserved(host=host, phase=Phase.dns, reason=f"the DNS server was not read ({f.dns_error}): "
                              "records compared with what the last apply recorded"))  # fmt: skip
    if f.routes_error:
        out.append(Unobserved(host=host, phase=Phase.route, reason=f"the proxy was not read ({f.routes_error}): "
                              "routes compared with what the last apply recorded, drift not seen"))  # fmt: skip
    return out


# The kinds whose backend is asked, before a plan lists their changes, whether it would take them.
CREDENTIAL_KINDS = (CertKind, DnsKind)


async def hold_unwritable(
    loaded: LoadedFleet,
    plan: Plan,
    facts: GatherResult,
    desired: Mapping[str, DesiredHost],
    kinds: Sequence[ResourceKind],
) -> Plan:
    """The plan with a kind's changes refused when its backend would refuse every one: the DNS server
    rejects the TSIG key or the MCIAS token, a credential's file cannot be read.  Planned as changes,
    apply would make what comes before them (certificates, containers, routes), then fail.  A backend
    is asked only when the plan has changes for it."""
    held: dict[str, Action] = {}
    for kind in kinds:
        if not isinstance(kind, CREDENTIAL_KINDS):
            continue
        writes = [a for a in plan.actions if a.phase == kind.phase and a.kind in kind.credential_actions]
        refusal = await kind.write_refusal(loaded) if writes else None
        if refusal is None:
            continue
        why, hint = refusal
        for a in writes:
            doing = kind.credential_actions[a.kind]
            update = {"kind": "refuse", "reason": f"{why}, so apply could not {doing} it ({a.reason})", "hint": hint}
            held[a.id] = a.model_copy(update=update)
    if not held:
        return plan
    hosts = {a.host for a in plan.actions if a.id in held}
    actions = [a for a in plan.actions if a.host not in hosts]
    for host in sorted(hosts):  # a host whose only changes were these may leave its manifest as it is
        item = facts[host]
        assert isinstance(item, Facts)  # only observed hosts have actions
        mine = [held.get(a.id, a) for a in plan.actions if a.host == host]
        actions += with_manifest(loaded, desired[host], item, mine, kinds)
    return plan.model_copy(update={"actions": sort_actions(actions, list(facts))})


async def plan_fleet(
    loaded: LoadedFleet,
    names: list[str],
    *,
    pool: SshPool | None = None,
    options: SshOptions | None = None,
    progress: Progress | None = None,
    agent_hashes: Mapping[str, str] | None = None,
    kinds: Sequence[ResourceKind] = KINDS,
    desired: Mapping[str, DesiredHost] | None = None,
    connected: Callable[[str], None] | None = None,
) -> tuple[Plan, GatherResult]:
    """Observe the hosts (every kind's read) and diff them (every kind's diff): the one way to make a plan.
    `connected(host)`: called once each host is connected (see observe.collect.gather)."""
    wanted = desired if desired is not None else desired_state(loaded, agent_hashes)
    with one_plan():  # what a read learned for the checks after it is this plan's alone
        plan, facts = await _plan_fleet(
            loaded,
            names,
            pool=pool,
            options=options,
            progress=progress,
            kinds=kinds,
            desired=wanted,
            connected=connected,
        )
    plan = await with_gone_records(loaded, with_gone(loaded, plan, facts, wanted), names, kinds)
    return plan, facts


def with_gone(loaded: LoadedFleet, plan: Plan, facts: GatherResult, desired: Mapping[str, DesiredHost]) -> Plan:
    """The plan with the hosts that left hosts/ while their node held services, records or routes, after
    noting what each observed host's manifest lists now (a corrupt one says nothing: the last note stays)."""
    manifests = {h: f.manifest for h, f in facts.items() if isinstance(f, Facts) and not f.manifest_error}
    seen, problem = update_seen(loaded.root, manifests)
    gone = gone_hosts(seen, loaded.hosts, (name for d in desired.values() for name in d.records))
    if not gone and problem is None:
        return plan
    return plan.model_copy(update={"gone": gone, "gone_unknown": problem})


async def _plan_fleet(
    loaded: LoadedFleet,
    names: list[str],
    *,
    pool: SshPool | None,
    options: SshOptions | None,
    progress: Progress | None,
    kinds: Sequence[ResourceKind],
    desired: Mapping[str, DesiredHost],
    connected: Callable[[str], None] | None = None,
) -> tuple[Plan, GatherResult]:
    facts = await gather(
        loaded, names, pool=pool, options=options, progress=progress, desired=desired, kinds=kinds, connected=connected
    )
    plan = build(loaded, facts, kinds=kinds, desired=desired)
    plan = await hold_unwritable(loaded, plan, facts, desired, kinds)
    # A service created on a selected host may be moving from a host left out of the selection, a
    # route moving to a proxy left out (or unreachable: nothing is planned on it either): only then,
    # read those hosts' manifests (the facts batch alone) to refuse a move in half.
    others = [h for h in loaded.hosts if h not in facts]
    creates = bool(others) and any(a.phase == Phase.deploy and a.kind == "create" for a in plan.actions)
    observed = [h for h, f in facts.items() if isinstance(f, Facts)]
    moving = moving_to_left_out(plan.actions, desired, observed)
    wanted = set(others if creates else ()) | {dest for dest, _name in moving.values() if dest in others}
    if not (creates or moving):
        return plan, facts
    elsewhere = (
        await gather(loaded, sorted(wanted), pool=pool, options=options, desired=desired, kinds=()) if wanted else {}
    )
    manifests = {h: f.manifest if isinstance(f, Facts) else None for h, f in elsewhere.items()}
    refusals = moves_left_out(plan.actions, manifests, desired) if creates else []
    actions = hold_moves(plan.actions, moving, manifests, unreachable=[h for h in facts if h not in observed])
    if refusals or actions != plan.actions:
        plan = plan.model_copy(update={"actions": sort_actions([*actions, *refusals], list(facts))})
    return plan, facts
