"""Rules about services, their images, routes, placement and boot order.

Semantics (mirrored by nix/lib, keep them in step):
- image-unpinned: an image with no tag, an empty tag or `:latest` (an `@sha256:` digest is
  pinned; a registry port like `host:8443/x` is not a tag) -> /components/<i>/image.
- route-duplicate: in one component, a route name used twice (two unnamed routes count, since
  both would be `$PORT`) -> /components/<i>/routes/<j>/name, or a container port used twice
  -> /components/<i>/routes/<j>/port; reported on the later route.
- public-no-edge: a public route while no host has the `edge` role -> .../routes/<j>/public.
- public-domain: a public route whose hostname (default `<svc>.<zone>`) is not under one of
  fleet.json `public_domains` -> .../routes/<j>/hostname.
- core-off-master: a `core`-stage service on a host without the `master` role -> /stage.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.derive import image_problem, route_hostname, under_domain
from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet, Role, Stage
from mcfleet.fleet.rules_base import placed_services


def rule_image_unpinned(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for p in placed_services(loaded):
        for i, comp in enumerate(p.service.components):
            problem = image_problem(comp.image)
            if problem:
                yield Finding(
                    "image-unpinned",
                    p.file,
                    f"/components/{i}/image",
                    f"image {comp.image} of {p.service.name}/{comp.name} {problem}",
                    "pin an explicit version tag, e.g. `…/name:v1.2.0` (or a @sha256: digest)",
                    p.host.name,
                )


def rule_route_duplicate(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for p in placed_services(loaded):
        for i, comp in enumerate(p.service.components):
            names: set[str | None] = set()
            ports: set[int] = set()
            for j, route in enumerate(comp.routes):
                where = f"/components/{i}/routes/{j}"
                if route.name in names:
                    label = repr(route.name) if route.name else "unnamed (both would be $PORT)"
                    yield Finding(
                        "route-duplicate",
                        p.file,
                        f"{where}/name",
                        f"{p.service.name}/{comp.name} has two routes named {label}",
                        "give each route of a component its own `name` (it becomes $PORT_<NAME>)",
                        p.host.name,
                    )
                if route.port in ports:
                    yield Finding(
                        "route-duplicate",
                        p.file,
                        f"{where}/port",
                        f"{p.service.name}/{comp.name} has two routes on container port {route.port}",
                        "each route of a component needs its own port: remove the copy or fix the port",
                        p.host.name,
                    )
                names.add(route.name)
                ports.add(route.port)


def rule_public_routes(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    has_edge = any(Role.edge in e.host.roles for e in loaded.hosts.values())
    for p in placed_services(loaded):
        for i, comp in enumerate(p.service.components):
            for j, route in enumerate(comp.routes):
                if not route.public:
                    continue
                where = f"/components/{i}/routes/{j}"
                name = route_hostname(p.service, route, fleet.zone)
                if not has_edge:
                    yield Finding(
                        "public-no-edge",
                        p.file,
                        f"{where}/public",
                        f"{name} is public but no host has the edge role to carry it",
                        'add "edge" to the roles of the host that takes public traffic, or set "public": false',
                        p.host.name,
                    )
                if not under_domain(name, fleet.public_domains):
                    allowed = ", ".join(fleet.public_domains) or "none declared"
                    yield Finding(
                        "public-domain",
                        p.file,
                        f"{where}/hostname",
                        f"public hostname {name} is not under the fleet's public domains ({allowed})",
                        "set `hostname` to a name under public_domains, or add its domain to fleet.json",
                        p.host.name,
                    )


def rule_core_off_master(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for p in placed_services(loaded):
        if p.service.stage == Stage.core and Role.master not in p.host.roles:
            yield Finding(
                "core-off-master",
                p.file,
                "/stage",
                f"core-stage service {p.service.name} is placed on {p.host.name}, which is not the master",
                "move the service file under the master's hosts/<name>/services/, or give it a later stage",
                p.host.name,
            )


RULES = [rule_image_unpinned, rule_route_duplicate, rule_public_routes, rule_core_off_master]
