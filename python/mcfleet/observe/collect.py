"""Gather facts from the selected hosts: one SSH round trip per host, all hosts in parallel.

Interface (keep stable; apply uses it too):

    facts = await gather(loaded, ["rift", "orion"], pool=pool, progress=progress)
    facts["rift"]   # Facts | Unreachable — never an exception for a host that fails

`pool` is reused when given (apply keeps its connections); otherwise one is
opened and closed here.  After the hosts answer, the resource kinds read what they
need beyond the batch, all at once (mcfleet.kinds: the service kind asks the agent for
its containers, the dns kind the authoritative server, the route kind the proxy), and
each adds it to the owning host's facts.  A kind's read of a node that the files alone
call for (`read_early`) starts as soon as the host is connected, beside its facts script.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from mcfleet.errors import McfleetError
from mcfleet.fleet.desired import DesiredHost, desired_state, ipv4_address
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models_providers import HaproxyProvider
from mcfleet.fleet.routes import node_binds
from mcfleet.kinds import KINDS, ReadContext, ResourceKind
from mcfleet.kinds.service_ports import wanted_ports
from mcfleet.observe.facts import Facts, Unreachable
from mcfleet.observe.manifest import manifest_path
from mcfleet.observe.parse import FactsRefused, facts_from, read_framed
from mcfleet.observe.script import OUTPUT_CAP, ScriptInputs, facts_script, probes
from mcfleet.report.progress import NullProgress, Progress
from mcfleet.transport.base import BecomeRefused, HostKeyMismatch
from mcfleet.transport.base import Unreachable as UnreachableError
from mcfleet.transport.ssh import SshOptions, SshPool

FACTS_TIMEOUT = 60.0

GatherResult = dict[str, Facts | Unreachable]


def script_inputs(loaded: LoadedFleet, entry: HostEntry, desired: DesiredHost) -> ScriptInputs:
    users = [u.name for u in desired.users]
    return ScriptInputs(
        users=tuple(users),
        uids=tuple(sorted({u.uid for u in desired.users} | {u.pin_uid for u in desired.users if u.pin_uid})),
        gids=tuple(sorted({u.gid for u in desired.users})),
        agent_path=entry.host.agent.path,
        agent_unit=entry.host.agent.unit,
        agent_user=entry.host.agent.user,
        # containers come from the agent (the service kind's read), never from a root `podman ps`
        containers=False,
        manifest_path=manifest_path(),
        dirs=tuple(d.path for d in desired.dirs),
        files=tuple(sorted(desired.files)),
        file_texts=tuple(sorted(p for p, f in desired.files.items() if f.secret is None and f.data is None)),
        subids=tuple(
            f"{u.name} {u.subuid.start}:{u.subuid.count} {u.subgid.start if u.subgid else ''}:"
            f"{u.subgid.count if u.subgid else ''}"
            for u in desired.users
            if u.subuid
        ),
        # the addresses are read for bind refusals, which an inactive service (kept stopped) never gets
        addresses=any(node_binds(s.spec) for s in desired.services.values() if s.spec is not None and s.active),
        ports=wanted_ports(desired.services.values()),
        route_map=haproxy_map(loaded, desired),
        # without a route provider no proxy of mcfleet's ends TLS there: nothing to ask
        served=tls_routes(entry, desired) if loaded.fleet and loaded.fleet.providers.route else (),
    )


def tls_routes(entry: HostEntry, desired: DesiredHost) -> tuple[tuple[str, str], ...]:
    """(address:port, route key) of each route whose TLS this host's proxy ends with a certificate it holds,
    asked at the host's first IPv4 address: the one its route names resolve to."""
    held = {name for c in desired.certs.values() for name in c.sans}
    address = ipv4_address(entry)
    target = f"[{address}]" if ":" in address else address
    return tuple(
        (f"{target}:{r.listener}", key)
        for key, r in sorted(desired.routes.items())
        if r.mode != "l4" and r.hostname in held
    )


def haproxy_map(loaded: LoadedFleet, desired: DesiredHost) -> str:
    """HAProxy's map file when this host's proxy is to carry l4 routes through HAProxy, else ""."""
    if loaded.fleet is None or not any(r.mode == "l4" for r in desired.routes.values()):
        return ""
    from mcfleet.providers.select import route_provider  # here: a plan without l4 routes imports no provider code

    provider = route_provider(loaded.fleet, "l4")
    return provider.map_file if isinstance(provider, HaproxyProvider) else ""


async def gather_host(  # noqa: PLR0917 (one host's whole context)
    pool: SshPool,
    loaded: LoadedFleet,
    entry: HostEntry,
    desired: DesiredHost,
    progress: Progress,
    connected: Callable[[str], None] | None = None,
) -> Facts | Unreachable:
    """`connected(host)` is called once the host is connected, before its facts script is sent."""
    name = entry.host.name
    started = time.monotonic()
    progress.update(name, "connecting")
    try:
        conn = await pool.connect(entry)
        progress.update(name, "gathering", conn.address)
        if connected is not None:
            connected(name)
        inputs = script_inputs(loaded, entry, desired)
        result = await conn.run(facts_script(inputs), timeout=FACTS_TIMEOUT, max_output=OUTPUT_CAP)
    except HostKeyMismatch as exc:
        progress.done(name, ok=False, detail="host key mismatch")
        return Unreachable(host=name, reason=exc.message, cause="host-key", hint=exc.hint)
    except UnreachableError as exc:
        progress.done(name, ok=False, detail="unreachable")
        return Unreachable(host=name, reason=exc.message, cause="unreachable", hint=exc.hint)
    except BecomeRefused as exc:  # reached, but `sudo -n`/`doas -n` refused: the hint names the rule to add
        progress.done(name, ok=False, detail=exc.message)
        return Unreachable(host=name, reason=exc.message, cause="escalation", hint=exc.hint)
    except McfleetError as exc:  # a timeout, or output past OUTPUT_CAP: this host fails, the others go on
        progress.done(name, ok=False, detail=exc.message)
        return Unreachable(host=name, reason=exc.message, cause="error", hint=exc.hint)
    try:
        framed = read_framed(result.stdout)
        if not framed.complete:
            reason = f"the facts script stopped early (exit {result.exit_status}): {result.stderr.strip()[-300:]}"
            progress.done(name, ok=False, detail="facts script failed")
            return Unreachable(host=name, reason=reason, cause="error", hint="run it with `mcfleet --debug plan`")
        facts = facts_from(
            name, framed, agent_path=entry.host.agent.path, address=conn.address, route_map=inputs.route_map
        )
    except FactsRefused as exc:  # forged or oversized records: nothing this host said is trusted
        progress.done(name, ok=False, detail="facts refused")
        source = {p.name: p.source for p in probes(inputs)}.get(exc.probe or "", "")
        reason = f"refused the node's facts: {exc.message}" + (f" (read from {source})" if source else "")
        hint = "check that file on the node: mcfleet reads at most 1 MiB per value and trusts no forged record"
        return Unreachable(host=name, reason=reason, cause="error", hint=hint)
    except Exception as exc:  # a parser bug must cost one host, not the run: report it as that host's error
        progress.done(name, ok=False, detail="unparsable facts")
        reason = f"could not parse the facts: {type(exc).__name__}: {exc}"
        return Unreachable(host=name, reason=reason, cause="error", hint="report this with the output of --debug")
    progress.done(
        name, ok=True, detail=f"{facts.os_pretty or facts.os_id} {facts.arch_raw} in {time.monotonic() - started:.2f}s"
    )
    return facts


async def gather(
    loaded: LoadedFleet,
    hosts: Iterable[str],
    *,
    pool: SshPool | None = None,
    progress: Progress | None = None,
    options: SshOptions | None = None,
    desired: Mapping[str, DesiredHost] | None = None,
    kinds: Sequence[ResourceKind] = KINDS,
    connected: Callable[[str], None] | None = None,
) -> GatherResult:
    """Every host's facts batch in parallel, then each kind's own reads (agent, DNS server, proxy).

    `connected(host)` is called once the host is connected (after the kinds' early reads started there):
    a caller that asks the node more (status: its agent's health) starts it then, beside the plan."""
    names = list(hosts)
    desired = desired if desired is not None else desired_state(loaded)
    progress = progress or NullProgress()
    own_pool = pool is None
    active = pool or SshPool(options, hosts=loaded.hosts)
    ctx = ReadContext(loaded, desired, active)

    def start_early_reads(host: str) -> None:
        # A kind's read of a node waits for an SSH round trip or more per step (a relay to start, a
        # connection through it, the question): asked beside the host's facts script rather than after
        # every host's, a plan waits for them only where they take longer than the facts.
        for kind in kinds:
            if (read := kind.read_early(ctx, host)) is not None:
                ctx.early.setdefault(kind.name, {})[host] = asyncio.ensure_future(read)
        if connected is not None:
            connected(host)

    try:
        results = await asyncio.gather(
            *(gather_host(active, loaded, loaded.hosts[n], desired[n], progress, start_early_reads) for n in names)
        )
        observed: GatherResult = dict(zip(names, results, strict=True))
        return await read_kinds(ctx, observed, kinds)
    finally:
        early = [read for by_host in ctx.early.values() for read in by_host.values()]
        for read in early:  # the ones the facts made unneeded (and all, when the run was cut short)
            read.cancel()
        await asyncio.gather(*early, return_exceptions=True)
        if own_pool:
            await active.close()


async def read_kinds(ctx: ReadContext, observed: GatherResult, kinds: Sequence[ResourceKind]) -> GatherResult:
    """The facts with what each kind reads beyond the batch.  The reads are independent (each asks its own
    peer: the agents, the DNS server, the proxies) and mostly wait: asked at once, a plan waits for the
    slowest, not for their sum."""
    return merge_reads(observed, await asyncio.gather(*(kind.read(ctx, observed) for kind in kinds)))


def merge_reads(observed: GatherResult, reads: Sequence[GatherResult]) -> GatherResult:
    """The hosts' facts with what each read added.  A read returns the facts it was given with its own
    fields replaced (`model_copy(update=…)`, which keeps every other field's value object), so a field whose
    value is not the very object the batch gave is that read's."""
    merged = dict(observed)
    for read in reads:
        for host, item in read.items():
            before, now = observed.get(host), merged.get(host)
            if item is before:
                continue
            if not (isinstance(item, Facts) and isinstance(before, Facts) and isinstance(now, Facts)):
                merged[host] = item
                continue
            added = {f: getattr(item, f) for f in Facts.model_fields if getattr(item, f) is not getattr(before, f)}
            merged[host] = now.model_copy(update=added)
    return merged
