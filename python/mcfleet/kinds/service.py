"""The service kind (deploy): the host's containers, run by the agent through podman.

read: the agent's own view over the forwarded socket (`Facts`: the containers it
manages, with image, state and spec-hash label), not a root `podman ps`.
diff: a service the files declare and the node does not run is `+`; an image bump is
`~` with old → new image; a definition change is `~`; a container whose spec on the
node differs from the files is `-/+`; a missing or stopped container is `~` (drift);
a service the manifest lists and the files no longer declare is `-` (stopped and
removed; its volumes are kept).
apply: one `ReconcileServices` call with every service of the host and the ports
`fleet.derive` assigned; the agent records them in its registry first (so an agent
restart or `Recover` brings them back) and starts them stage by stage.
record: each service's hash, stage, containers, images and ports as applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcfleet.agent.client import AgentClient
from mcfleet.agent.spec import LABEL_HASH, container_specs
from mcfleet.errors import McfleetError
from mcfleet.fleet.desired import DesiredHost, DesiredService
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import ApplyContext, GatherResult, Outcome, ReadContext
from mcfleet.observe.facts import ContainerFacts, Facts
from mcfleet.observe.manifest import Manifest, ManifestService
from mcfleet.phase import Phase
from mcfleet.plan.model import Action
from mcfleet.transport.base import Runner

AGENT_TIMEOUT = 15.0


async def agent_socket(node: Runner, remote: str) -> str:
    """A local path that reaches the node's `remote` unix socket (the socket itself for a local node)."""
    forward: Any = getattr(node, "forward_unix", None)
    if forward is None:
        return remote
    return str(await forward(remote))


def container_facts(agent_facts: dict[str, Any]) -> list[ContainerFacts]:
    return [
        ContainerFacts(
            name=str(c.get("name", "")),
            image=str(c.get("image", "")),
            state=str(c.get("state", "")),
            labels={str(k): str(v) for k, v in (c.get("labels") or {}).items()},
        )
        for c in agent_facts.get("containers", [])
        if isinstance(c, dict)
    ]


def spec_hashes(svc: DesiredService) -> dict[str, str]:
    """container -> the spec hash the agent labels it with, for the files' service and ports."""
    if svc.spec is None:
        return {}
    return {s.name: s.spec_hash for s in container_specs(svc.spec, svc.ports)}


def _service_actions(d: DesiredHost, name: str, svc: DesiredService, had: ManifestService | None,
                     seen: dict[str, ContainerFacts] | None) -> list[Action]:  # fmt: skip
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
    if had is not None and had.hash != svc.hash:
        return act("update", "the service definition changed", before)
    if seen is not None:
        wanted = spec_hashes(svc)
        differs = [c for c in mine if mine[c].labels.get(LABEL_HASH) not in (None, wanted.get(c))]
        if differs:
            return act("replace", f"drift: the container spec on the node differs ({', '.join(differs)})", before)
        down = [c for c in svc.containers if c not in mine or mine[c].state != "running"]
        if down:
            states = ", ".join(f"{c} is {mine[c].state if c in mine else 'missing'}" for c in down)
            return act("update", f"drift: {states}", before)
    return []


class ServiceKind:
    name = "service"
    phase = Phase.deploy

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return None

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        """Ask each host's agent (over the SSH connection) which containers it runs."""
        if ctx.pool is None:
            return facts
        out = dict(facts)
        for host, item in facts.items():
            if not isinstance(item, Facts) or item.agent is None or not item.agent.present:
                continue
            recorded = item.manifest.services if item.manifest else {}
            if not ctx.desired[host].services and not recorded:
                continue
            entry = ctx.loaded.hosts[host]
            try:
                node = await ctx.pool.connect(entry)
                target = await agent_socket(node, entry.host.agent.socket)
                async with AgentClient(target, timeout=AGENT_TIMEOUT) as client:
                    seen = container_facts(await client.facts(events=0))
            except McfleetError:
                continue  # the agent does not answer: containers stay unknown (the agent kind shows why)
            out[host] = item.model_copy(update={"containers": seen})
        return out

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        seen = {c.name: c for c in f.containers} if f.containers is not None else None
        acts: list[Action] = []
        for name, svc in sorted(d.services.items()):
            acts += _service_actions(d, name, svc, m.services.get(name), seen)
        for name, had in sorted(m.services.items()):
            if name not in d.services:
                acts.append(
                    Action(
                        host=d.name,
                        phase=Phase.deploy,
                        kind="delete",
                        subject=f"service {name}",
                        before={"stage": had.stage, "containers": had.containers},
                        reason="no longer declared in the files: its containers are stopped and removed, "
                        "its volumes are kept",
                    )
                )
        return acts

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        services = [(s.spec, s.ports) for s in ctx.desired.services.values() if s.spec is not None]
        target = await agent_socket(ctx.node, ctx.entry.host.agent.socket)
        async with AgentClient(target, timeout=AGENT_TIMEOUT) as client:
            result = await client.reconcile(services, prune=True)
        done = [a for a in result.actions if a.kind != "unchanged"]
        summary = ", ".join(f"{a.kind} {a.container}" for a in done) or "nothing to change"
        if not result.ok:
            return Outcome("failed", f"{result.error} ({summary})")
        ctx.data["deployed"] = True
        healthy = ", ".join(result.stages_healthy)
        return Outcome("changed" if done else "unchanged", f"{summary}; healthy stages: {healthy or 'none'}")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        if not ctx.data.get("deployed"):
            return m
        services = {
            name: ManifestService(
                hash=s.hash, stage=s.stage, containers=list(s.containers), images=dict(s.images), ports=dict(s.ports)
            )
            for name, s in sorted(ctx.desired.services.items())
        }
        return m.model_copy(update={"services": services})
