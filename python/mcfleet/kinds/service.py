"""The service kind (deploy): the host's containers, run by the agent through podman.

read: the agent's own view over the forwarded socket (`Facts`: the containers it
manages, with image, state and spec-hash label), not a root `podman ps`.
diff: a service the files declare and the node does not run is `+`; an image bump is
`~` with old → new image; a definition change is `~`; a container whose spec on the
node differs from the files is `-/+`; a missing or stopped container is `~` (drift);
a service the manifest lists or the agent has registered and the files no longer
declare is `-` (stopped and removed; its volumes are kept).  A service whose file says
`"active": false` stays registered with the agent, stopped, its containers and volumes kept:
`~` while it runs or the agent holds it running, nothing once it is stopped; `"active": true`
again is `~` that starts the same containers.
apply: `ReconcileServices` with the host's services and the ports `fleet.derive`
assigned, one boot stage at a time across the fleet (kinds.stages: every host's
foundation before any host's core); removals, after the routes and DNS records to
them, are one more call with every declared service and prune.  The
agent records them in its registry first (so an agent restart or `Recover` brings
them back).  A service whose stage predecessor failed is skipped, with the reason.
record: each service's hash (which covers `active`), stage, containers, images and ports as applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Awaitable, Callable, Container, Coroutine, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from mcfleet.errors import McfleetError, PeerError
from mcfleet.fleet.desired import DesiredHost, DesiredService, spec_hash
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.fleet.models import Service, Stage
from mcfleet.kinds.base import PLANNED, ApplyContext, GatherResult, Outcome, ReadContext
from mcfleet.kinds.files import drop_deferred, put_back_deferred
from mcfleet.kinds.service_ports import held_by_services, port_refusal, wanted_endpoints
from mcfleet.kinds.stages import STAGES, StageGate
from mcfleet.observe.facts import ContainerFacts, Facts
from mcfleet.observe.manifest import Manifest, ManifestService
from mcfleet.phase import Phase
from mcfleet.plan.model import Action, is_removal

if TYPE_CHECKING:
    from mcfleet.agent.client import AgentClient
    from mcfleet.transport.base import Node
    from mcfleet.transport.socket_state import SocketProblem
    from mcfleet.transport.ssh import SshPool

AGENT_TIMEOUT = 15.0
T = TypeVar("T")


async def agent_socket(node: object, remote: str) -> str:
    """A local path that reaches the node's `remote` unix socket (the socket itself for a local node)."""
    forward: Any = getattr(node, "forward_unix", None)
    if forward is None:
        return remote
    return str(await forward(remote))


async def agent_socket_problem(node: object, socket: str, unit: str) -> SocketProblem | None:
    """What is wrong at the agent's socket on a node reached through SSH, asked after a failed call (a link,
    no socket, nobody listening), with what makes it right; None when the agent listens there, or on this
    machine."""
    if getattr(node, "forward_unix", None) is None:
        return None
    from mcfleet.transport.socket_state import socket_problem

    problem = await socket_problem(cast("Node", node), socket, "agent")
    if problem is None:
        return None
    # the agent removes whatever is at its socket's path when it starts, and binds a new socket there
    return dataclasses.replace(problem, fix=f"`systemctl restart {unit}` on the node makes it again")


async def agent_unreached(node: object, socket: str, unit: str, exc: PeerError) -> PeerError:
    """`exc`, or, when the call reached no agent at all (grpc's "failed to connect"), an error that says what
    is at the agent's socket on the node (a link, no socket, nobody listening) and what makes it right."""
    from mcfleet.agent.grpc_words import reached_no_agent  # only after a failed call

    if not reached_no_agent(exc.message):
        return exc
    problem = await agent_socket_problem(node, socket, unit)
    if problem is None:
        return exc
    return PeerError(f"the agent was not reached: {problem.text}", location=exc.location, hint=problem.fix)


@dataclasses.dataclass(frozen=True)
class Unanswered:
    """The agent's facts call failed; why, before the node is asked what is at the agent's socket."""

    node: object
    message: str


async def asked_containers(pool: SshPool, entry: HostEntry) -> dict[str, Any] | str | Unanswered:
    """The agent's facts (its containers and registry), or why they could not be had; a failed call is
    `Unanswered`, explained by `said_containers` only where its answer is used: an early read of a host
    that turns out to have no agent yet (its answer dropped) runs no command on the node."""
    from mcfleet.agent.client import AgentClient  # grpc + protobuf: only where an RPC is made

    try:
        node = await pool.connect(entry)
    except McfleetError as exc:
        return f"the agent did not answer ({exc.message})"
    try:
        target = await agent_socket(node, entry.host.agent.socket)
        async with AgentClient(target, timeout=AGENT_TIMEOUT) as client:
            answer = await client.facts(events=0)
    except McfleetError as exc:  # containers stay unknown: the plan says so (the agent kind shows why)
        return Unanswered(node, exc.message)
    podman = answer.get("podman")
    if isinstance(podman, dict) and podman.get("error"):
        # the agent answers but podman does not: its empty list is not "every container missing"
        # (they may run on under conmon; the host kind starts a podman.socket that stopped)
        return f"{PODMAN_DOWN} ({str(podman['error']).splitlines()[0]})"
    return answer


async def said_containers(got: dict[str, Any] | str | Unanswered, entry: HostEntry) -> dict[str, Any] | str:
    """`asked_containers`' answer, a failed call said with what is at the agent's socket (one command)."""
    if not isinstance(got, Unanswered):
        return got
    problem = await agent_socket_problem(got.node, entry.host.agent.socket, entry.host.agent.unit)
    return f"the agent did not answer ({problem.said if problem else got.message})"


async def agent_containers(pool: SshPool, entry: HostEntry) -> dict[str, Any] | str:
    """The agent's facts (its containers and registry), or why they could not be had."""
    return await said_containers(await asked_containers(pool, entry), entry)


def container_facts(agent_facts: dict[str, Any]) -> list[ContainerFacts]:
    return [
        ContainerFacts(
            name=str(c.get("name", "")),
            image=str(c.get("image", "")),
            state=str(c.get("state", "")),
            labels={str(k): str(v) for k, v in (c.get("labels") or {}).items()},
            restarts=c["restarts"] if isinstance(c.get("restarts"), int) else 0,  # absent from older agents
            exit_code=c["exit_code"] if isinstance(c.get("exit_code"), int) else 0,
            up_s=c["up_s"] if isinstance(c.get("up_s"), int | float) else None,
            unforwarded=[str(p) for p in c.get("unforwarded") or [] if isinstance(p, str)],
            published=[str(p) for p in c["published"]] if isinstance(c.get("published"), list) else None,
        )
        for c in agent_facts.get("containers", [])
        if isinstance(c, dict)
    ]


def service_specs(agent_facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """service -> its definition as the agent last received it (older agents send none)."""
    return {
        str(e["name"]): e["spec"]
        for e in agent_facts.get("registry", [])
        if isinstance(e, dict) and isinstance(e.get("spec"), dict)
    }


def registered(agent_facts: dict[str, Any]) -> list[str]:
    return sorted(str(e["name"]) for e in agent_facts.get("registry", []) if isinstance(e, dict) and "name" in e)


def held_stopped(agent_facts: dict[str, Any]) -> list[str]:
    """The services the agent keeps stopped: stopped by hand (`mcfleet agent stop`), not by the files."""
    return sorted(
        str(e["name"]) for e in agent_facts.get("registry", []) if isinstance(e, dict) and e.get("desired") == "stopped"
    )


def spec_changes(before: Any, after: Any, path: str = "") -> list[str]:
    """Each value that differs between two service definitions: 'components[0].env.GREETING: "hi" → "hey"'."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            change
            for key in sorted(set(before) | set(after), key=str)
            for change in spec_changes(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        ]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        pairs = enumerate(zip(before, after, strict=True))
        return [c for i, (b, a) in pairs for c in spec_changes(b, a, f"{path}[{i}]")]
    if before == after:
        return []
    return [f"{path}: {json.dumps(before)} → {json.dumps(after)}"]


def spec_hashes(svc: DesiredService) -> dict[str, str]:
    """container -> the spec hash the agent labels it with, for the files' service and ports."""
    if svc.spec is None:
        return {}
    from mcfleet.agent.spec import container_specs  # here: a plan of hosts without services never needs it

    return {s.name: s.spec_hash for s in container_specs(svc.spec, svc.ports)}


def _service_actions(
    d: DesiredHost,
    name: str,
    svc: DesiredService,
    had: ManifestService | None,
    seen: dict[str, ContainerFacts] | None,
    *,
    old_spec: dict[str, Any] | None,
    held: Container[str] = (),
) -> list[Action]:
    subject = f"service {name}"
    after = {"stage": svc.stage, "containers": list(svc.containers), "images": svc.images, "ports": svc.ports}

    def act(kind: str, reason: str, before: Any = None) -> list[Action]:
        return [
            Action(host=d.name, phase=Phase.deploy, kind=kind, subject=subject, before=before, after=after,
                   reason=reason)
        ]  # fmt: skip

    mine = {c: seen[c] for c in svc.containers if seen is not None and c in seen}
    if had is None and not mine:
        return act("create", "declared in the files")
    from mcfleet.agent.spec import LABEL_HASH  # here: a plan of hosts without services never needs the module

    old_images = {c: mine[c].image if c in mine and mine[c].image else (had.images.get(c) if had else None)
                  for c in svc.containers}  # fmt: skip
    before: dict[str, Any] = {
        "stage": had.stage if had else svc.stage,
        "containers": had.containers if had else sorted(mine),
        "images": {c: i for c, i in old_images.items() if i},
        "ports": had.ports if had else {},
    }
    bumped = [f"{c}: {old} → {svc.images[c]}" for c, old in old_images.items() if old and old != svc.images[c]]
    if bumped:
        return act("update", "image " + "; ".join(bumped), before)
    if had is None:  # its containers run, but no apply recorded it as deployed
        reason = (
            "on the node, but no apply finished deploying it (the apply that sent it was interrupted, "
            "or its stage did not get healthy): apply deploys it again and waits for its health checks"
        )
        return act("update", reason, before)
    if had is not None and had.hash != svc.hash:
        new_spec = svc.spec.model_dump(mode="json", by_alias=True, exclude={"files"}) if svc.spec else None
        changes = spec_changes(old_spec, new_spec) if old_spec is not None and new_spec is not None else []
        woke = _was_inactive(svc, had, old_spec)
        if woke:
            changes = [c for c in changes if not c.startswith("active: ")]
        what = f": {'; '.join(changes)}" if changes else ""
        wanted = spec_hashes(svc)
        # a container whose spec changes is removed and created again: -/+, not ~
        recreated = [c for c in mine if mine[c].labels.get(LABEL_HASH) not in (None, wanted.get(c))]
        if woke:
            # the agent kept its containers stopped: the deploy starts them as they are, and makes only
            # the ones gone meanwhile (a Recover makes no container of a stopped service)
            gone = [c for c in svc.containers if seen is not None and c not in mine]
            start = f'"active": true in {name}.json: ' + (
                f"it is started again ({', '.join(gone)} made from its image: removed while it was stopped)"
                if gone
                else "its stopped containers are started again"
            )
            if recreated:
                return act("replace", f"{start}; the service definition changed{what} "
                                      f"(recreates {', '.join(recreated)})", before)  # fmt: skip
            return act("update", f"{start}; the service definition changed{what}" if changes else start, before)
        if recreated:
            return act("replace", f"the service definition changed{what} (recreates {', '.join(recreated)})", before)
        running = all(c in mine and mine[c].state == "running" for c in svc.containers)
        if old_spec is not None and not changes and running:
            # the agent holds and runs the files' definition: an apply that ended before its record (its
            # agent restarted mid-deploy and its boot finished the job), so only the record is behind
            return act("update", "the node already runs this definition; the apply that sent it ended before "
                                 "recording it: apply checks it and records it", before)  # fmt: skip
        return act("update", f"the service definition changed{what}", before)
    if seen is not None:
        wanted = spec_hashes(svc)
        differs = [c for c in mine if mine[c].labels.get(LABEL_HASH) not in (None, wanted.get(c))]
        moved = [f"{k}: {had.ports[k]} → {p}" for k, p in sorted(svc.ports.items()) if had.ports.get(k, p) != p]
        if differs and moved:  # the files moved its host ports (another route took one), not a hand on the node
            return act("replace", f"its host ports move: {'; '.join(moved)} (assigned from the fleet's port "
                                  f"range: another route now holds the old one; recreates {', '.join(differs)})",
                       before)  # fmt: skip
        if differs:
            return act("replace", f"drift: the container spec on the node differs ({', '.join(differs)})", before)
        if old_spec is not None and svc.spec is not None:
            # Recorded as deployed, but the agent holds another definition (a later deploy of it failed
            # under an agent that kept what it was sent): its next boot runs that one, and `status`
            # judges the service by its health check.  Apply sends the files' definition again.
            other = spec_changes(old_spec, svc.spec.model_dump(mode="json", by_alias=True, exclude={"files"}))
            if other:
                return act("update", f"drift: the agent holds another definition: {'; '.join(other)}", before)
        looping = [f"{c}: {why}" for c in svc.containers if c in mine and (why := mine[c].crash_loop)]
        if looping and name not in held:  # it flips between running and stopped: the loop, whatever it reads now
            return act("replace", f"{'; '.join(looping)} (apply recreates it from its image)", before)
        cut_off = [f"{c} ({', '.join(mine[c].unforwarded)})" for c in svc.containers if c in mine and
                   mine[c].state == "running" and mine[c].unforwarded]  # fmt: skip
        if cut_off:
            return act("update", f"drift: nothing listens on the published port of {', '.join(cut_off)} while it "
                                 "runs (podman's port forwarder is gone): apply restarts it", before)  # fmt: skip
        down = [c for c in svc.containers if c not in mine or mine[c].state != "running"]
        if down:
            states = ", ".join(f"{c} is {mine[c].state if c in mine else 'missing'}" for c in down)
            why = (f" (stopped with `mcfleet agent stop`: apply starts it again; \"active\": false in {name}.json "
                   "keeps it stopped instead)" if name in held else "")  # fmt: skip
            return act("update", f"drift: {states}{why}", before)
    return []


def _was_inactive(svc: DesiredService, had: ManifestService | None, old_spec: dict[str, Any] | None) -> bool:
    """Whether the service was last given to the node with `"active": false`: the agent's registry says
    so, or (an older agent that sends no definition) the recorded hash is that of the files' definition
    made inactive."""
    if old_spec is not None:
        return old_spec.get("active") is False
    if had is None or svc.spec is None:
        return False
    return had.hash == spec_hash(svc.spec.model_copy(update={"active": False}))


def _stopped_actions(
    d: DesiredHost,
    name: str,
    svc: DesiredService,
    had: ManifestService | None,
    seen: dict[str, ContainerFacts] | None,
    *,
    old_spec: dict[str, Any] | None,
    registered: list[str] | None,
    held: Container[str],
) -> list[Action]:
    """A service whose file says `"active": false`: the agent keeps it registered and stopped, its
    containers (and volumes) kept for `"active": true` to start again.  The deploy sends it like any
    other service; the agent registers it stopped and stops its running containers, and never makes
    one for it (what it does not have stays missing, which is no drift: `"active": true` makes it)."""
    from mcfleet.agent.spec import LABEL_HASH  # here: a plan of hosts without services never needs the module

    subject, file = f"service {name}", f"{name}.json"
    was_off = _was_inactive(svc, had, old_spec)
    mine = {c: seen[c] for c in svc.containers if seen is not None and c in seen}
    images = {c: mine[c].image if c in mine else had.images.get(c) if had else None for c in svc.containers}
    before: dict[str, Any] = {
        "stage": had.stage if had else svc.stage,
        "containers": had.containers if had else sorted(mine),
        "images": {c: i for c, i in images.items() if i},
        "ports": had.ports if had else {},
        "active": not was_off,
    }
    after = {"stage": svc.stage, "containers": list(svc.containers), "images": svc.images, "ports": svc.ports,
             "active": False}  # fmt: skip

    def act(reason: str) -> list[Action]:
        return [Action(host=d.name, phase=Phase.deploy, kind="update", subject=subject, before=before, after=after,
                       reason=reason)]  # fmt: skip

    stopping = (f'"active": false in {file}: its containers are stopped (kept, with their volumes); start it '
                'again with "active": true')  # fmt: skip
    changed = f'the service definition changed while it is stopped ("active": false in {file})'
    if seen is None:  # the agent was not read: only the record says what the node was last given
        if had is None or had.hash == svc.hash:
            return []
        return act(changed if was_off else stopping)
    listed = old_spec is not None or name in (registered or [])
    if not listed and not mine and had is None:
        # Never deployed (or removed since): the agent holds nothing it could keep stopped, and registering it
        # would make no container (the agent never makes one for a stopped service).  Nothing is planned; the
        # first `"active": true` deploys it as any new service.
        return []
    if not listed and (old_spec is not None or registered is not None):
        return act(f"drift: the agent's registry does not list it (removed or reset): apply registers it, "
                   f'stopped ("active": false in {file})')  # fmt: skip
    running = [c for c in svc.containers if c in mine and mine[c].state == "running"]
    if running or (listed and name not in held):
        if was_off:  # given to the node as inactive, then started by hand (`mcfleet agent start`)
            states = ", ".join(f"{c} is running" for c in running) or "the agent holds it as running"
            return act(f'drift: {states} while "active": false in {file}: apply stops it again (its containers '
                       "kept)")  # fmt: skip
        return act(stopping)
    new_spec = svc.spec.model_dump(mode="json", by_alias=True, exclude={"files"}) if svc.spec else None
    changes = [c for c in spec_changes(old_spec, new_spec) if not c.startswith("active: ")] if (
        old_spec is not None and new_spec is not None) else []  # fmt: skip
    wanted = spec_hashes(svc)
    # the agent removes a stopped container whose spec differs from the one it is sent, and makes none
    differs = [c for c in mine if mine[c].labels.get(LABEL_HASH) not in (None, wanted.get(c))]
    removed = (f"; {', '.join(differs)}, made from the old one, removed (volumes kept): \"active\": true makes "
               f"{'it' if len(differs) == 1 else 'them'} again" if differs else "")  # fmt: skip
    if changes:
        return act(f"{changed}: {'; '.join(changes)}{removed}")
    if not was_off:  # stopped until now with `mcfleet agent stop` (the agent holds it as active)
        return act(stopping + removed)
    if differs:
        return act(f"drift: the container spec on the node differs{removed}")
    if had is None or had.hash != svc.hash:
        return act("the agent holds it stopped as declared, but no apply recorded it: apply records it")
    return []


# The agent answers, podman does not: a stopped podman.socket (which the host phase starts) or a user
# manager restarted (which took the containers down with it).
PODMAN_DOWN = "podman's API did not answer the agent"


def _podman_down(d: DesiredHost, f: Facts, m: Manifest) -> list[Action]:
    """With podman not answering, what runs is unknown: each deployed service is brought up again by
    apply's deploy once podman answers (its containers are started if stopped, left if running)."""
    if not (f.services_error or "").startswith(PODMAN_DOWN):
        return []
    return [
        Action(host=d.name, phase=Phase.deploy, kind="update", subject=f"service {name}", reason=(
            "podman did not answer the agent, so what runs is unknown: apply brings it up once podman answers"))
        for name in sorted(d.services) if name in m.services and d.services[name].active
    ]  # fmt: skip


def _bind_refusal(d: DesiredHost, name: str, svc: DesiredService, addresses: list[str] | None) -> Action | None:
    """A service that publishes on an address the node does not have: podman would fail to bind it in
    the middle of its stage (the stages before it already changed); refused before anything runs."""
    if svc.spec is None or addresses is None:
        return None
    from mcfleet.fleet.routes import canonical_ip, node_binds

    binds = node_binds(svc.spec)  # a name cannot be checked against addresses: only IP addresses are
    missing = [b for b in binds if (a := canonical_ip(b)) is not None and a not in addresses]
    if not missing:
        return None
    return Action(
        host=d.name, phase=Phase.deploy, kind="refuse", subject=f"service {name}", before={"addresses": addresses},
        after={"bind": binds},
        reason=f"service {name} publishes on {', '.join(missing)}, which {d.name} does not have "
               f"(its addresses: {', '.join(a for a in addresses if a not in ('127.0.0.1', '::1')) or 'none'})",
        hint=f'fix "bind" (or a publish\'s "host_ip") in {name}.json to one of the node\'s addresses, or give '
             "the node that address",
    )  # fmt: skip


def _unregistered(d: DesiredHost, name: str, had: ManifestService | None, listed: list[str] | None) -> list[Action]:
    """An applied service the agent's registry no longer lists (the registry file removed or reset): its
    containers run on, but the agent's boot sequence and Recover start only what the registry lists, so
    after the node restarts nothing brings it back.  Apply's deploy registers every declared service."""
    if listed is None or had is None or name in listed:
        return []
    return [
        Action(
            host=d.name, phase=Phase.deploy, kind="update", subject=f"service {name}",
            before={"registered": False}, after={"registered": True},
            reason="drift: the agent's registry does not list it (removed or reset), so after a restart of the "
                   "node nothing starts it again; apply registers it (running containers as declared are kept)",
        )
    ]  # fmt: skip


def _ports_held(f: Facts, svc: DesiredService, seen: dict[str, ContainerFacts] | None) -> list[tuple[str, int]] | None:
    """The ports mcfleet's services hold; none before the agent is installed (nothing of mcfleet's
    runs), unknown when it is and did not answer.  A running container of this service whose ports an
    older agent does not list holds the ones the service publishes (the registry may have lost it)."""
    if f.services_error is not None:
        return None
    if f.ports_held is None and f.agent is not None and f.agent.present:
        return None
    held = f.ports_held or []
    own = [seen[c] for c in svc.containers if seen is not None and c in seen]
    if any(c.state == "running" and c.published is None for c in own):
        held = held + [(proto, port) for proto, _, port in wanted_endpoints(svc)]
    return held


HEARTBEAT_S = 10.0


def stage_line(stage: Stage, names: list[str], changing: set[str], inactive: Container[str] = ()) -> str:
    """What the deploy's progress line says of one stage: the services this apply changes are
    deployed (or, `"active": false`, stopped), the others (already as declared) only have their health
    checked again (an inactive one has none to check: it is not named)."""
    deploying = [n for n in names if n in changing and n not in inactive]
    stopping = [n for n in names if n in changing and n in inactive]
    checking = [n for n in names if n not in changing and n not in inactive]
    said = (
        ([f"deploying {', '.join(deploying)}"] if deploying else [])
        + ([f"stopping {', '.join(stopping)}"] if stopping else [])
        + ([f"checking {', '.join(checking)}"] if checking else [])
    )
    return f"stage {stage}: {'; '.join(said) or 'as declared'}"


def logs_hint(error: str, host: str, services: Iterable[DesiredService]) -> str:
    """Where to read why the containers an agent's error names did not get healthy: their output."""

    def named(container: str) -> bool:
        return re.search(rf"(?:^|[\s:;]){re.escape(container)} (?:cannot get healthy|not healthy)", error) is not None

    found = [s.name for s in services if any(named(c) for c in s.containers)]
    return f" (see {', '.join(f'`mcfleet logs {host} {n}`' for n in found)})" if found else ""


FIRST_LOOK_S = 1.0  # a stage call not answered by then may be queued behind an earlier change


async def waiting_behind(client: AgentClient) -> str | None:
    """What a call to the agent waits behind, when it does: the agent makes one change of the
    containers at a time, and one that an interrupted apply left it (its stage waiting for health
    checks, up to the stage timeout) is finished first."""
    try:
        work = await client.busy()
    except McfleetError:  # the question is for the progress line only; the call itself says what fails
        return None
    if work is None or work.waiting == 0:  # nothing, or our own call: nothing waits for it
        return None
    return (
        f"waiting for the agent to finish an earlier {work_text(work.what, work.services)} "
        f"({work.running_s:.0f} s so far; it makes one change at a time)"
    )


async def failing_checks(client: AgentClient) -> str | None:
    """The health checks the agent's current stage waits on, with why each last failed
    ("hello: HTTP 404 from /nosuch"); None when none fails or an older agent does not say."""
    try:
        work = await client.busy()
    except McfleetError:  # for the progress line only
        return None
    if work is None or not work.failing:
        return None
    return "; ".join(f"{name}: {_cut(why)}" for name, why in sorted(work.failing.items()))


async def held_definitions(client: AgentClient, held: frozenset[str]) -> list[tuple[Service, dict[str, int]]]:
    """The definitions the agent holds for the `held` services (a refused change: they stay as they are), as
    reconcile takes them: the agent's registry keeps each spec as it was sent (without `files`) and its ports."""
    if not held:
        return []
    answer = await client.facts(events=0)
    out = []
    for item in answer.get("registry") or []:
        if isinstance(item, dict) and item.get("name") in held and isinstance(item.get("spec"), dict):
            ports = {str(k): int(v) for k, v in (item.get("ports") or {}).items()}
            out.append((Service.model_validate(item["spec"]), ports))
    return out


def _cut(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def work_text(what: str, services: Iterable[str]) -> str:
    """A change the agent is making: "deploy of db, hello", "recover"."""
    of = ", ".join(services)
    return f"{what} of {of}" if of else what


def busy_text(agent_facts: dict[str, Any]) -> str | None:
    """The change the agent's facts say it is making, with how long it has run; None: none."""
    work = agent_facts.get("busy")  # absent from an older agent's facts
    if not isinstance(work, dict):
        return None
    listed = work.get("services")
    services = [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else []
    running_s = work.get("running_s")
    took = f" ({running_s:.0f} s so far)" if isinstance(running_s, int | float) else ""
    return f"{work_text(str(work.get('what') or 'change'), services)}{took}"


async def heartbeat(
    work: Awaitable[T],
    say: Callable[[str], None] | None,
    what: str,
    behind: Callable[[], Awaitable[str | None]] | None = None,
    checks: Callable[[], Awaitable[str | None]] | None = None,
) -> T:
    """Await `work`, saying every HEARTBEAT_S what it waits for and since when: the agent brings a
    stage up and waits for its health checks (up to its stage timeout, 120 s) in one silent call.
    With `behind`, a call still unanswered after FIRST_LOOK_S is checked for an earlier change it
    waits for, and that is said instead.  With `checks`, each line says which health checks fail so
    far and why (a wrong path is seen in the first line, not after the stage timeout)."""
    task = asyncio.ensure_future(work)
    began = time.monotonic()
    next_say = began + HEARTBEAT_S
    look = began + FIRST_LOOK_S if behind is not None and say is not None else None
    try:
        while True:
            wake = min(next_say, look) if look is not None else next_say
            done, _ = await asyncio.wait({task}, timeout=max(0.0, wake - time.monotonic()))
            if done:
                return task.result()
            if say is None:
                next_say = time.monotonic() + HEARTBEAT_S
                continue
            queued = await behind() if behind is not None and look is not None else None
            if queued:
                say(f"{what}: {queued}")
                next_say = time.monotonic() + HEARTBEAT_S
                look = next_say  # asked again at each heartbeat while it waits
            elif time.monotonic() >= next_say:
                waited = time.monotonic() - began
                failing = await checks() if checks is not None else None
                said = f"{what}, waiting for their health checks ({waited:.0f} s)"
                say(f"{said}; failing so far: {failing}" if failing else said)
                next_say = time.monotonic() + HEARTBEAT_S
                look = None  # the agent is at this call's work: no earlier one left to wait for
            else:
                look = None  # not queued at the first look: this call has the agent
    finally:
        task.cancel()  # only when this wait itself was cancelled: a finished task ignores it


# `systemctl is-active` states in which the agent's process may be up and answering.
_UNIT_MAY_RUN = frozenset({"active", "activating", "reloading", "deactivating"})


def _ask_agent(ctx: ReadContext, host: str, item: Facts) -> bool:
    """Whether the plan asks this host's agent for its containers and registry.

    Only a host whose agent is installed (before its first apply, every declared service is new).
    A host with services declared or recorded: always (when its agent does not answer, the plan
    says the containers are unknown, never that they are missing).  Any other host, when its agent
    may run: an agent can hold a service that no file and no manifest names (its first deploy
    failed, then its file was deleted), and only its registry says so; left there, the agent would
    start it again at every boot.  Not when its unit cannot be running (no systemd, or the unit
    inactive or failed): the call could only fail, and it would cost the plan the gRPC client's
    import (~50 ms of CPU, 16 MB) and a connection per host.
    """
    agent = item.agent
    if agent is None or not agent.present:
        return False
    desired = ctx.desired.get(host)
    if (desired is not None and desired.services) or (item.manifest is not None and item.manifest.services):
        return True
    return agent.systemd is not False and _agent_down(item) is None


def _agent_down(item: Facts) -> str | None:
    """The agent unit's state when its process cannot be running in it (inactive, failed); None otherwise."""
    agent = item.agent
    if agent is None or agent.systemd is False or agent.unit_active in (None, *_UNIT_MAY_RUN):
        return None
    return agent.unit_active


async def _free_ports(ctx: ApplyContext, client: AgentClient, wanted: list[DesiredService]) -> list[str]:
    """Stop, before the deploy, each service this apply removes that holds a host port a declared service now
    takes: its removal runs after the routes' (so nothing leads to a removed container), but until then it
    holds the port, and the other service's new container cannot bind it.  Stopped, not removed: its
    removal comes as planned; a stopped service is what the removal would leave running anyway."""
    removing = {a.subject.removeprefix("service ") for a in ctx.data.get(PLANNED) or []
                if a.phase == Phase.deploy and a.kind == "delete"}  # fmt: skip
    taken = {port: s.name for s in wanted for port in s.ports.values()}
    notes = []
    for name in sorted(removing):
        had = ctx.manifest.services.get(name)
        clash = sorted({port for port in (had.ports.values() if had else ()) if port in taken})
        if not clash:
            continue
        answer = await client.stop(name)
        takers = ", ".join(sorted({taken[p] for p in clash}))
        ports = ", ".join(map(str, clash))
        if not answer.ok:
            raise PeerError(f"stopping {name} (removed by this apply), which holds port {ports} that {takers} now "
                            f"takes: {answer.error}", location=ctx.entry.host.name)  # fmt: skip
        notes.append(f"{name} stopped first: it held port {ports}, which {takers} now takes (it is removed later)")
    return notes


class ServiceKind:
    name = "service"
    phase = Phase.deploy
    records_desired_set = False  # it records what its apply did

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return None

    def read_early(self, ctx: ReadContext, host: str) -> Coroutine[Any, Any, dict[str, Any] | str | Unanswered] | None:
        # The read asks every host whose agent is installed and may run (_ask_agent), which only the facts
        # tell.  Guessed from the files: a host given services or routes (a proxy node) runs its agent.  A
        # host given neither is not guessed: before its first apply, or on a node without systemd, the
        # call would be made for nothing (a relay, one Python start-up on the node).
        desired = ctx.desired[host]
        if ctx.pool is None or not (desired.services or desired.routes):
            return None
        return asked_containers(ctx.pool, ctx.loaded.hosts[host])  # a failure is explained only if used

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        """Ask each host's agent (over the SSH connection) which containers it runs, all hosts at once."""
        pool = ctx.pool
        if pool is None:
            return facts
        out = dict(facts)
        asked = []
        for host, item in facts.items():
            if not isinstance(item, Facts) or not _ask_agent(ctx, host, item):
                continue
            down = _agent_down(item)
            if down is None:
                asked.append(host)
            else:  # a host with services whose unit cannot be running: the call could only fail, say why
                unit = ctx.loaded.hosts[host].host.agent.unit
                why = f"the agent is not running ({unit} is {down}; apply starts it first)"
                out[host] = item.model_copy(update={"services_error": why})
        if not asked:
            return out

        async def containers(host: str) -> dict[str, Any] | str:
            early = ctx.early_read(self.name, host)
            entry = ctx.loaded.hosts[host]
            return await said_containers(
                await early if early is not None else await asked_containers(pool, entry), entry
            )

        for host, agent_facts in zip(asked, await asyncio.gather(*(containers(h) for h in asked)), strict=True):
            item = facts[host]
            if isinstance(agent_facts, str) and isinstance(item, Facts):
                out[host] = item.model_copy(update={"services_error": agent_facts})
            elif isinstance(agent_facts, dict) and isinstance(item, Facts):
                update = {"containers": container_facts(agent_facts), "service_specs": service_specs(agent_facts),
                          "services_held_stopped": held_stopped(agent_facts), "agent_busy": busy_text(agent_facts),
                          "ports_held": held_by_services(agent_facts),
                          "services_registered": registered(agent_facts)}  # fmt: skip
                out[host] = item.model_copy(update=update)
        return out

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        seen = {c.name: c for c in f.containers} if f.containers is not None else None
        specs = f.service_specs or {}
        acts: list[Action] = []
        for name, svc in sorted(d.services.items()):
            if not svc.active:  # kept stopped: it publishes nothing, so nothing of it is refused
                acts += _stopped_actions(d, name, svc, m.services.get(name), seen, old_spec=specs.get(name),
                                         registered=f.services_registered, held=f.services_held_stopped)  # fmt: skip
                continue
            refused = _bind_refusal(d, name, svc, f.addresses) or port_refusal(
                d, name, svc, f.listening, _ports_held(f, svc, seen)
            )
            acts += [refused] if refused else _service_actions(d, name, svc, m.services.get(name), seen,
                                                               old_spec=specs.get(name),
                                                               held=f.services_held_stopped)  # fmt: skip
            if not refused and not any(a.subject == f"service {name}" for a in acts):
                acts += _unregistered(d, name, m.services.get(name), f.services_registered)
        todo = {a.subject for a in acts}
        acts += [a for a in _podman_down(d, f, m) if a.subject not in todo]
        # Removed: what the manifest lists, and what the agent has registered (a service whose first
        # deploy failed is registered, never recorded as applied), that the files no longer declare.
        for name in sorted((set(m.services) | set(specs)) - set(d.services)):
            had = m.services.get(name)
            before = {"stage": had.stage, "containers": had.containers} if had else {"stage": specs[name].get("stage")}
            why = "no longer declared in the files" if had else "registered with the agent, not declared in the files"
            acts.append(
                Action(host=d.name, phase=Phase.deploy, kind="delete", subject=f"service {name}", before=before,
                       reason=f"{why}: its containers are stopped and removed, its volumes are kept")
            )  # fmt: skip
        if f.agent_busy:
            # An interrupted apply's stage the agent still finishes: what it holds may change when it ends (a
            # stage that does not get healthy puts back what it replaced), and apply waits for it first.
            still = f"; the agent is still finishing a {f.agent_busy}: this may change when it ends"
            acts = [a.model_copy(update={"reason": a.reason + still}) if a.reason.startswith("drift:") else a
                    for a in acts]  # fmt: skip
        return acts

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        """Changes: stage by stage, waiting for the whole fleet at each stage.  Removals and services
        made inactive (a second call, after the routes and DNS records to them are gone): one call
        with every declared service (an inactive one as such: the agent stops it) and, when something
        is removed, prune, which stops and removes the others (their volumes stay)."""
        from mcfleet.agent.client import AgentClient  # grpc + protobuf: only where an RPC is made

        target = await agent_socket(ctx.node, ctx.entry.host.agent.socket)
        try:
            async with AgentClient(target, timeout=AGENT_TIMEOUT) as client:
                if all(is_removal(a) for a in actions):
                    return await self._remove(ctx, client, actions)
                return await self._deploy(ctx, client, {a.subject.removeprefix("service ") for a in actions})
        finally:
            await drop_deferred(ctx)

    async def _remove(self, ctx: ApplyContext, client: AgentClient, actions: list[Action]) -> Outcome:
        held: frozenset[str] = ctx.data.get("held_services") or frozenset()
        wanted = [(s.spec, s.ports) for s in ctx.desired.services.values() if s.spec is not None and s.name not in held]
        # a service whose change was refused keeps what the agent holds: pruning with the new definition would
        # make the refused change, and leaving it out would remove it
        wanted += await held_definitions(client, held)
        deleting = [a.subject.removeprefix("service ") for a in actions if a.kind == "delete"]
        stopping = [a.subject.removeprefix("service ") for a in actions if a.kind != "delete"]
        # prune only for a planned removal: without one, it could remove what the plan never listed
        within = ctx.data.get("stage_timeout") or 0.0
        result = await client.reconcile(wanted, prune=bool(deleting), stage_timeout_s=within)
        if not result.ok:
            return Outcome("failed", result.error)
        said: list[str] = []
        if stopping:  # the agent holds their inactive definitions now: recorded as deployed
            ctx.data["deployed"] = list(dict.fromkeys([*(ctx.data.get("deployed") or []), *stopping]))
            stopped = [a.container for a in result.actions if a.kind == "stop" and a.service in stopping]
            said.append(f"stopped {', '.join(stopping)} ({', '.join(stopped) or 'none was running'}; containers kept)")
        if deleting:
            ctx.data["pruned"] = True
            removed = [a.container for a in result.actions if a.kind == "remove"]
            said.append(f"removed {', '.join(deleting)} ({', '.join(removed) or 'no containers left'})")
        return Outcome("changed", "; ".join(said) + "; volumes kept")

    async def _deploy(self, ctx: ApplyContext, client: AgentClient, changing: set[str]) -> Outcome:
        gate: StageGate | None = ctx.data.get("stage_gate")
        host = ctx.entry.host.name
        # a service whose change was refused is not sent (prune is off: the agent keeps what it holds); the
        # override lets the rest of the plan run, never the refused change itself
        held: frozenset[str] = ctx.data.get("held_services") or frozenset()
        # a service this apply makes inactive is stopped in the removal call, once its routes are gone: until
        # then it is not sent (prune is off, so the agent keeps it running as it is)
        stops_later = {a.subject.removeprefix("service ") for a in ctx.data.get(PLANNED) or []
                 if a.phase == Phase.deploy and a.kind != "delete" and is_removal(a)}  # fmt: skip
        wanted = sorted(
            (s for s in ctx.desired.services.values() if s.spec is not None and s.name not in held | stops_later),
            key=lambda s: Stage(s.stage).order,
        )
        notes: list[str] = await _free_ports(ctx, client, wanted)
        changed = bool(notes)
        for stage in STAGES:
            before = [s.name for s in wanted if Stage(s.stage).order < stage.order]
            stopped = await gate.ready(stage) if gate else None
            if stopped:
                ctx.data["deployed"] = before
                later = [s.name for s in wanted if Stage(s.stage).order >= stage.order]
                if not later:
                    break
                back = await put_back_deferred(ctx, set(later))  # their old containers run on: no restart
                return Outcome("skipped", f"{', '.join(later)} skipped: {stopped}{back}")
            if not any(s.stage == stage for s in wanted):
                if gate:
                    await gate.done(host, stage)
                continue
            upto = [(s.spec, s.ports) for s in wanted if Stage(s.stage).order <= stage.order and s.spec]
            within = ctx.data.get("stage_timeout") or 0.0
            say = ctx.data.get("progress")
            try:
                result = await heartbeat(
                    client.reconcile(upto, prune=False, stage_timeout_s=within),
                    say,
                    stage_line(stage, [s.name for s in wanted if s.stage == stage], changing, ctx.desired.inactive),
                    lambda: waiting_behind(client),
                    lambda: failing_checks(client),
                )
            except asyncio.CancelledError:  # Ctrl-C: the agent goes on with the call it was given
                if say is not None:
                    said = f"stage {stage}: interrupted here; if the call reached the agent, it finishes it (a stage "
                    say(said + "that does not get healthy puts back what it replaced), and the next apply waits for it")
                raise
            done = [f"{a.kind} {a.container}" for a in result.actions if a.kind != "unchanged"]
            changed = changed or bool(done)
            if not result.ok:
                if gate:
                    await gate.done(host, stage, result.error)
                ctx.data["deployed"] = before
                later = [s.name for s in wanted if Stage(s.stage).order > stage.order]
                skipped = f"; skipped: {', '.join(later)} (stage {stage} failed)" if later else ""
                said = result.error if result.error.startswith(f"stage {stage} ") else f"stage {stage}: {result.error}"
                # the agent put back (and started) the old containers of this stage: the files they were made
                # for go back too, and they are restarted on them; a later stage's were never touched
                back = await put_back_deferred(ctx, {s.name for s in wanted if s.stage == stage}, restart=client)
                back += await put_back_deferred(ctx, set(later))
                return Outcome("failed", f"{said}{skipped}{back}{logs_hint(result.error, host, wanted)}")
            if gate:
                await gate.done(host, stage)
            # a definition that changes no container (a health check) is changed all the same: the agent holds it now
            acted = {a.service for a in result.actions if a.kind != "unchanged"}
            sent = [s.name for s in wanted if s.stage == stage and s.name in changing and s.name not in acted]
            changed = changed or bool(sent)
            parts = done + ([f"{', '.join(sent)} updated (containers as they were)"] if sent else [])
            notes.append(f"{stage}: {', '.join(parts) or 'as declared'}")
        ctx.data["deployed"] = [s.name for s in wanted]
        return Outcome("changed" if changed else "unchanged", "; ".join(notes) or "nothing declared")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        """Each deployed service as applied; removed ones leave the manifest only once pruned."""
        deployed: list[str] = ctx.data.get("deployed") or []
        pruned = bool(ctx.data.get("pruned"))
        if not deployed and not pruned:
            return m
        services = dict(m.services)
        for name in deployed:
            s = ctx.desired.services[name]
            services[name] = ManifestService(
                hash=s.hash, stage=s.stage, containers=list(s.containers), images=dict(s.images), ports=dict(s.ports)
            )
        if pruned:
            services = {n: v for n, v in services.items() if n in ctx.desired.services}
        return m.model_copy(update={"services": dict(sorted(services.items()))})
