"""What a refused service would publish, and a service whose file is refused, held with the refusal.

A service the plan refuses (an address its node lacks, a port another program holds) is not
deployed, yet its DNS name, certificate and proxy route were still planned: with an `--override`
of the service alone, its name would lead to a proxy routing to a port where nothing of it runs,
or another program.  Each create or update of those is refused with the service.  Likewise a
service whose declared file is refused is not deployed without it.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcfleet.fleet.desired import DesiredHost
from mcfleet.phase import Phase
from mcfleet.plan.model import Action

HELD_KINDS = ("create", "update", "replace")


def _published(
    desired: Mapping[str, DesiredHost], host: str, service: str, zone: str | None
) -> dict[tuple[str, str], str]:
    """(host, subject) -> what it is, for each DNS record, route and certificate of `service` on `host`
    (its records: its default name `<service>.<zone>` and its routes' hostnames)."""
    out: dict[tuple[str, str], str] = {}
    hostnames = set()
    for proxy in desired.values():
        for key, route in proxy.routes.items():
            if route.service == service and route.service_host == host:
                out[(proxy.name, f"route {key}")] = f"its route {key}"
                hostnames.add(route.hostname)
    for proxy in desired.values():
        for stem, cert in proxy.certs.items():
            if hostnames & set(cert.sans):
                out[(proxy.name, f"cert {stem}")] = f"its certificate {stem}"
    records = desired[host].records if host in desired else {}
    for name in records:
        if name in hostnames or name == f"{service}.{zone}":
            out[(host, f"dns {name}")] = f"its DNS name {name}"
    return out


def hold_what_refused_services_publish(
    actions: list[Action], desired: Mapping[str, DesiredHost], zone: str | None
) -> list[Action]:
    """`actions` with each create, update or replace of a refused service's DNS name, route or certificate
    refused too, naming the service's refusal."""
    held: dict[tuple[str, str], tuple[str, Action]] = {}
    for a in actions:
        if a.kind == "refuse" and a.phase == Phase.deploy and a.subject.startswith("service "):
            for where, what in _published(desired, a.host, a.subject.removeprefix("service "), zone).items():
                held[where] = (what, a)
    if not held:
        return actions
    out = []
    for a in actions:
        found = held.get((a.host, a.subject)) if a.kind in HELD_KINDS else None
        if found is None:
            out.append(a)
            continue
        what, refusal = found
        out.append(
            a.held_with(
                refusal,
                f"{what} would lead to `{refusal.subject}` on {refusal.host}, which the plan refuses to deploy: "
                "nothing of it would answer there",
            )
        )
    return out


def hold_services_without_their_files(acts: list[Action], d: DesiredHost) -> list[Action]:
    """`acts` (one host's) with the deploy of each service whose declared file the plan refuses (a secret
    that cannot be decrypted, an owner refused with its user) refused too: deployed now, the service
    would run without that file, or on its old content (a service started without its token may well
    start, and serve without it)."""
    missing: dict[str, Action] = {}
    for a in acts:
        if a.kind == "refuse" and a.phase == Phase.files and a.subject.startswith("file "):
            want = d.files.get(a.subject.removeprefix("file "))
            if want is not None:
                missing.setdefault(want.service, a)
    if not missing:
        return acts
    out = []
    for a in acts:
        is_deploy = a.phase == Phase.deploy and a.kind in HELD_KINDS and a.subject.startswith("service ")
        file = missing.get(a.subject.removeprefix("service ")) if is_deploy else None
        if file is None:
            out.append(a)
            continue
        out.append(
            a.held_with(
                file,
                f"its declared file is refused (`{file.subject}`): deployed now, it would run without that file "
                "or on its old content",
            )
        )
    return out
