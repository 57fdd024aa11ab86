"""Rules about names and references across the fleet: ownership and the dependency graph.

Semantics (mirrored by nix/lib, keep them in step):
- name-claimed-twice: a service name defined twice in the fleet -> the later file's /name
  (the later copy then claims nothing else); a DNS name claimed by two services: every
  service claims `<svc>.<zone>` first, then each route claims its hostname (default
  `<svc>.<zone>`); a route hostname owned by another service ->
  /components/<i>/routes/<j>/hostname.  Routes of one service may share a hostname.  Then
  each host's own routes (hosts in name order) claim theirs; one owned by a service or by
  another host's routes -> hosts/<host>/host.json /routes/<k>/hostname (a host's routes may
  share a hostname: they are one owner, like a service's).
- unknown-reference: `depends_on` names a service that no host defines -> /depends_on/<k>.
- stage-cycle: `depends_on` on a service of a later boot stage -> /depends_on/<k>; a
  dependency cycle (depth-first from services in name order, reported once per back edge)
  -> /depends_on/<k> of the edge that closes it.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.derive import route_hostname
from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet
from mcfleet.fleet.rules_base import Placed, placed_services


def _unique_services(loaded: LoadedFleet) -> tuple[dict[str, Placed], list[tuple[Placed, Placed]]]:
    """Service name -> its first definition, and (duplicate, first) pairs."""
    first: dict[str, Placed] = {}
    dups = []
    for p in placed_services(loaded):
        owner = first.setdefault(p.service.name, p)
        if owner is not p:
            dups.append((p, owner))
    return first, dups


def rule_names(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    services, dups = _unique_services(loaded)
    for dup, owner in dups:
        yield Finding(
            "name-claimed-twice",
            dup.file,
            "/name",
            f"service {dup.service.name} is defined twice: here (on {dup.host.name}) and in {owner.file}",
            "a service is placed on exactly one host: delete one of the two files",
            dup.host.name,
        )
    owners: dict[str, str] = {f"{name}.{fleet.zone}": name for name in services}
    for name, p in services.items():
        for i, comp in enumerate(p.service.components):
            for j, route in enumerate(comp.routes):
                hostname = route_hostname(p.service, route, fleet.zone)
                claimant = owners.setdefault(hostname, name)
                if claimant != name:
                    yield Finding(
                        "name-claimed-twice",
                        p.file,
                        f"/components/{i}/routes/{j}/hostname",
                        f"hostname {hostname} of {name} is already claimed by service {claimant}",
                        "every DNS name, route and certificate has one owner: pick another hostname",
                        p.host.name,
                    )
    for host_name, entry in sorted(loaded.hosts.items()):
        mine = f"{host_name}'s host routes"
        for k, native in enumerate(entry.host.routes):
            claimant = owners.setdefault(native.hostname, mine)
            if claimant != mine:
                yield Finding(
                    "name-claimed-twice",
                    loaded.rel(entry.dir / "host.json"),
                    f"/routes/{k}/hostname",
                    f"hostname {native.hostname} of {mine} is already claimed by "
                    f"{claimant if claimant.endswith(' host routes') else f'service {claimant}'}",
                    "every DNS name, route and certificate has one owner: pick another hostname",
                    host_name,
                )


def rule_dependencies(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    services, _ = _unique_services(loaded)
    for name, p in services.items():
        for k, dep in enumerate(p.service.depends_on):
            target = services.get(dep)
            if target is None:
                yield Finding(
                    "unknown-reference",
                    p.file,
                    f"/depends_on/{k}",
                    f"{name} depends on {dep!r}, which no host defines",
                    "fix the name, or add hosts/<host>/services/" + dep + ".json",
                    p.host.name,
                )
            elif target.service.stage.order > p.service.stage.order:
                yield Finding(
                    "stage-cycle",
                    p.file,
                    f"/depends_on/{k}",
                    f"{name} ({p.service.stage}) depends on {dep} ({target.service.stage}), a later boot stage",
                    f"move {dep} to stage {p.service.stage} or earlier, or {name} to a later stage",
                    p.host.name,
                )
    yield from _cycles(services)


def _cycles(services: dict[str, Placed]) -> Iterator[Finding]:
    # Iterative colouring DFS: 1 = on the stack, 2 = done.  O(services + edges).
    state: dict[str, int] = {}
    for root in sorted(services):
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, k = stack[-1]
            deps = services[name].service.depends_on
            if k == len(deps):
                state[name] = 2
                stack.pop()
                continue
            stack[-1] = (name, k + 1)
            dep = deps[k]
            if dep not in services:
                continue
            if state.get(dep) == 1:
                path = [n for n, _ in stack]
                cycle = [*path[path.index(dep) :], dep]
                p = services[name]
                yield Finding(
                    "stage-cycle",
                    p.file,
                    f"/depends_on/{k}",
                    f"dependency cycle: {' -> '.join(cycle)}",
                    "break the cycle: a service may only depend on services that start before it",
                    p.host.name,
                )
            elif dep not in state:
                state[dep] = 1
                stack.append((dep, 0))


RULES = [rule_names, rule_dependencies]
