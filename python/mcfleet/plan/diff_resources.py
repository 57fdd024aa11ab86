"""Diff of the resources a host carries: services (deploy), certs, DNS records, routes.

Pure functions (see plan.diff): what the files declare vs what the node, the
DNS server and the manifest show.  What the manifest lists but the files no
longer declare becomes a `delete`.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import datetime, timedelta

from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import Manifest
from mcfleet.plan.desired import DesiredHost
from mcfleet.plan.model import Action

CERT_RENEW_BEFORE = timedelta(days=30)


def services_diff(d: DesiredHost, f: Facts, manifest: Manifest) -> list[Action]:
    acts = []
    running = {c.name: c.state for c in f.containers} if f.containers is not None else None
    for name, svc in sorted(d.services.items()):
        after = {"stage": svc.stage, "containers": list(svc.containers), "hash": svc.hash}
        had = manifest.services.get(name)
        subject = f"service {name}"
        if had is None:
            acts.append(
                Action(
                    host=d.name,
                    phase="deploy",
                    kind="create",
                    subject=subject,
                    after=after,
                    reason="declared in the files",
                )
            )
            continue
        before = {"stage": had.stage, "containers": had.containers, "hash": had.hash}
        if had.hash != svc.hash:
            acts.append(
                Action(
                    host=d.name,
                    phase="deploy",
                    kind="update",
                    subject=subject,
                    before=before,
                    after=after,
                    reason="the service definition changed",
                )
            )
        elif running is not None:
            down = [c for c in svc.containers if running.get(c) != "running"]
            if down:
                states = ", ".join(f"{c} is {running.get(c) or 'missing'}" for c in down)
                acts.append(
                    Action(
                        host=d.name,
                        phase="deploy",
                        kind="update",
                        subject=subject,
                        before=before,
                        after=after,
                        reason=f"drift: {states}",
                    )
                )
    recorded = {n: {"stage": h.stage, "containers": h.containers} for n, h in manifest.services.items()}
    acts += removals(d.name, "deploy", "service", recorded, d.services)
    return acts


def certs_diff(d: DesiredHost, f: Facts, manifest: Manifest, now: datetime) -> list[Action]:
    acts = []
    for name, cert in sorted(d.certs.items()):
        seen = f.cert(cert.path)
        after = {"path": cert.path, "sans": list(cert.sans)}
        subject = f"cert {name}"
        if seen is None:
            acts.append(
                Action(
                    host=d.name,
                    phase="cert",
                    kind="create",
                    subject=subject,
                    after=after,
                    reason=f"no certificate at {cert.path}",
                )
            )
            continue
        before = {"path": seen.path, "sans": seen.sans, "not_after": seen.not_after}
        reason = None
        if seen.error or seen.not_after is None:
            reason = seen.error or "no expiry date"
        else:
            left = datetime.fromisoformat(seen.not_after) - now
            missing = sorted(set(cert.sans) - set(seen.sans))
            if left < CERT_RENEW_BEFORE:
                reason = (
                    f"expires in {left.days} days (renewed under {CERT_RENEW_BEFORE.days})"
                    if left.days >= 0
                    else "expired"
                )
            elif missing:
                reason = f"does not cover {', '.join(missing)}"
        if reason:
            acts.append(
                Action(
                    host=d.name,
                    phase="cert",
                    kind="replace",
                    subject=subject,
                    before=before,
                    after=after,
                    reason=reason,
                )
            )
    issued = {h.name: {"path": h.path, "sans": h.sans} for h in manifest.certs}
    acts += removals(d.name, "cert", "cert", issued, d.certs)
    return acts


def dns_diff(d: DesiredHost, f: Facts, manifest: Manifest) -> list[Action]:
    acts = []
    recorded = {r.name: r for r in manifest.dns}
    for name, rec in sorted(d.records.items()):
        after = {"type": rec.type, "value": rec.value}
        subject = f"dns {name}"
        if name in f.dns:  # the authoritative server answered: it is the truth
            answers = f.dns[name]
            if answers == [rec.value]:
                continue
            kind = "create" if not answers else "update"
            before = {"type": "A", "values": answers} if answers else None
            reason = "no A record at the authoritative server" if not answers else "the server answers other addresses"
        else:
            old = recorded.get(name)
            if old is not None and old.value == rec.value:
                continue
            kind = "create" if old is None else "update"
            before = {"type": old.type, "value": old.value} if old else None
            reason = "not in the manifest" if old is None else "the address changed"
        acts.append(
            Action(host=d.name, phase="dns", kind=kind, subject=subject, before=before, after=after, reason=reason)
        )
    records = {n: {"type": r.type, "value": r.value} for n, r in recorded.items()}
    acts += removals(d.name, "dns", "dns", records, d.records)
    return acts


def routes_diff(d: DesiredHost, f: Facts, manifest: Manifest) -> list[Action]:
    """Backends via the manifest; presence also via the proxy itself when it was asked (f.routes)."""
    acts = []
    recorded = {f"{r.listener}/{r.hostname}": r for r in manifest.routes}
    served = set(f.routes) if f.routes is not None else None
    for key, route in sorted(d.routes.items()):
        hostname = route.hostname
        after = {
            "listener": route.listener,
            "mode": route.mode,
            "service": route.service,
            "backend": route.backend,
        }
        old = recorded.get(key)
        subject = f"route {key}"
        if old is None:
            acts.append(
                Action(
                    host=d.name,
                    phase="route",
                    kind="create",
                    subject=subject,
                    after=after,
                    reason="declared in the files",
                )
            )
            continue
        changed = old.mode != route.mode or old.service != route.service or old.backend != route.backend
        if not changed and served is not None and hostname not in served:
            before = {"mode": old.mode, "service": old.service, "backend": old.backend, "served": False}
            acts.append(
                Action(
                    host=d.name,
                    phase="route",
                    kind="update",
                    subject=subject,
                    before=before,
                    after=after,
                    reason="drift: the proxy serves no route for it",
                )
            )
        elif changed:
            before = {"mode": old.mode, "service": old.service, "backend": old.backend}
            acts.append(
                Action(
                    host=d.name,
                    phase="route",
                    kind="update",
                    subject=subject,
                    before=before,
                    after=after,
                    reason="the route changed",
                )
            )
    routes = {h: {"mode": r.mode, "backend": r.backend} for h, r in recorded.items()}
    acts += removals(d.name, "route", "route", routes, d.routes)
    return acts


def removals(
    host: str, phase: str, label: str, recorded: Mapping[str, object], declared: Container[str]
) -> list[Action]:
    """What the manifest says mcfleet manages here but the files no longer declare: delete it."""
    return [
        Action(
            host=host,
            phase=phase,
            kind="delete",
            subject=f"{label} {key}",
            before=before,
            reason="no longer declared in the files",
        )
        for key, before in sorted(recorded.items())
        if key not in declared
    ]
