"""The provider-backed kinds: certificates, DNS records, proxy routes.

Their diffs are complete (desired vs what the DNS server, the proxy and the manifest
show); apply runs the actions with the fleet's providers (`mcfleet.providers.steps`).
Without a provider in fleet.json a kind is `blocked` in the plan: one line saying why,
instead of actions nothing could perform.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Container, Coroutine, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from mcfleet.fleet.desired import DesiredCert, DesiredHost, DesiredRecord, DesiredRoute, dns_names
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import CaddyProvider, Rfc2136Provider
from mcfleet.kinds.base import MADE, ApplyContext, GatherResult, NoRead, Outcome, ReadContext
from mcfleet.observe.certs import key_path
from mcfleet.observe.facts import CertFacts, Facts
from mcfleet.observe.manifest import NO_ANSWER, Manifest, ManifestCert, ManifestRecord, ManifestRoute
from mcfleet.phase import Phase
from mcfleet.plan.model import Action

if TYPE_CHECKING:
    from mcfleet.observe.dns import ZoneAnswers
    from mcfleet.providers.cert.base import CertBackend
    from mcfleet.providers.dns.base import DnsBackend
    from mcfleet.providers.read import LiveRoutes
    from mcfleet.providers.steps import StepOutcome
    from mcfleet.transport.ssh import SshPool

# The providers' clients (mcfleet.providers.*, observe.dns, observe.routes) are imported in the
# functions that call them: a fleet without providers (each kind blocked) never imports them.

CERT_RENEW_BEFORE = timedelta(days=30)
# Why a name this host's manifest does not list is replaced (a move says whose it was instead: kinds/migrate.py).
NOT_RECORDED_HERE = "a record mcfleet did not make: apply replaces it"


# What each kind records is its whole desired set (records_desired_set): pure functions of the desired host
# (and, for certificates, of who issued them: this apply's actions and the manifest before it), which the
# planner also runs to tell whether an apply would change the manifest (plan/manifest_after.py).
def record_certs(
    desired: DesiredHost, before: Manifest | None = None, issued: Container[str] = ()
) -> list[ManifestCert]:
    """The certificates the host holds; each with the provider that issued it: this one for those `issued`
    now, else what was recorded (a certificate kept is still the earlier provider's, or of no known one)."""
    had = {c.name: c.issuer for c in before.certs} if before is not None else {}

    def issuer(name: str, now: str | None) -> str | None:
        return now if name in issued else had.get(name)  # one found in place and kept: not known

    return [
        ManifestCert(name=c.name, path=c.path, sans=list(c.sans), issuer=issuer(name, c.issuer))
        for name, c in sorted(desired.certs.items())
    ]


def record_dns(desired: DesiredHost) -> list[ManifestRecord]:
    return [ManifestRecord(name=r.name, type=r.type, value=r.value) for _n, r in sorted(desired.records.items())]


def record_routes(desired: DesiredHost) -> list[ManifestRoute]:
    return [
        ManifestRoute(hostname=r.hostname, listener=r.listener, mode=r.mode, service=r.service, backend=r.backend)
        for _k, r in sorted(desired.routes.items())
    ]


async def _credential_refusal(backend: CertBackend | DnsBackend | None) -> tuple[str, str | None] | None:
    """(why, what to do) from the backend's own check of its credential; None without a backend."""
    refusal = await backend.key_refusal() if backend is not None else None
    return (refusal.message, refusal.hint) if refusal else None


def not_configured(what: str, provider: object) -> str | None:
    """Why the kind cannot act: no provider for it in fleet.json (None when one is configured)."""
    if provider is not None:
        return None
    return f"no {what} provider configured (providers.{what} in fleet.json)"


def _outcome(step: StepOutcome, ctx: ApplyContext, phase: Phase, field: str) -> Outcome:
    """The kind's outcome; and the host's desired state narrowed to the items of `field` (certs, records,
    routes) this phase put in place so far (a phase runs twice: changes, then removals), under MADE for
    the record after a failure."""
    made: dict[Phase, DesiredHost] = ctx.data.setdefault(MADE, {})
    before = made.get(phase)
    keys = step.made | (set(getattr(before, field)) if before is not None else set())
    if not keys:  # nothing put in place: no "part of <phase>" to record after a failure
        return Outcome(step.status, step.message)
    narrowed: dict[str, Any] = {field: {k: _unsure(v) if k in step.unsure else v
                                        for k, v in getattr(ctx.desired, field).items() if k in keys}}  # fmt: skip
    made[phase] = replace(ctx.desired, **narrowed)
    return Outcome(step.status, step.message)


async def _made_if_cut(ctx: ApplyContext, phase: Phase, field: str, step: Awaitable[StepOutcome]) -> StepOutcome:
    """`step` awaited; ended mid-way (Ctrl-C, or an error such as a lost connection), what it had put in
    place by then is left under MADE (`_outcome`) for the manifest written after, then the cancellation or
    the error goes on."""
    from mcfleet.providers.steps import StepBroken, StepCancelled

    try:
        return await step
    except StepCancelled as cut:
        _outcome(cut.partial, ctx, phase, field)
        raise
    except StepBroken as cut:
        _outcome(cut.partial, ctx, phase, field)
        raise cut.cause from None


def _unsure(item: Any) -> Any:
    """A record or route whose change got no confirmation, as the manifest lists it: value unknown."""
    from mcfleet.fleet.desired import DesiredRecord, DesiredRoute

    if isinstance(item, DesiredRecord):
        return replace(item, value=NO_ANSWER)
    if isinstance(item, DesiredRoute):
        return replace(item, backend=NO_ANSWER)
    return item


def key_unfit(cert: DesiredCert, seen: CertFacts) -> str | None:
    """Why the certificate's private key on the node cannot stay (apply issues a new key and certificate),
    or None.  A key others could read may have been read: it is replaced, not just chmod-ed."""
    key = key_path(cert.path)
    if seen.key_missing:
        return f"its private key {key} is missing (or not a plain file): the proxy cannot serve it"
    if seen.key_mode is not None and int(seen.key_mode, 8) & 0o077:
        return (f"its private key {key} is mode {seen.key_mode.zfill(4)}, readable by other accounts on the "
                "node: a new key replaces it")  # fmt: skip
    user = cert.owner.partition(":")[0]
    if seen.key_user is not None and user not in (seen.key_user, str(seen.key_uid)):
        return f"its private key {key} is owned by {seen.key_user}, not the proxy's user {user}"
    if seen.key_pub_sha256 == "":
        return (f"its private key {key} is not one the proxy can load (encrypted, or not a PEM private key), "
                "so the proxy cannot serve the certificate")  # fmt: skip
    if seen.key_pub_sha256 and seen.pub_sha256 and seen.key_pub_sha256 != seen.pub_sha256:
        return (f"its private key {key} is not the certificate's (another key's public half): the proxy refuses "
                "the pair when it next loads it (Caddy then refuses its whole configuration)")  # fmt: skip
    return None


def other_issuer(cert: DesiredCert, manifest: Manifest) -> str | None:
    """Why a valid certificate is issued again: the manifest says another cert provider issued it."""
    had = next((c.issuer for c in manifest.certs if c.name == cert.name and c.path == cert.path), None)
    if had is None or cert.issuer is None or had == cert.issuer:
        return None
    return f"issued by {had}; the fleet's cert provider is now {cert.issuer}"


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
                    phase=Phase.cert,
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
            else:
                reason = key_unfit(cert, seen) or other_issuer(cert, manifest)
        if reason:
            acts.append(
                Action(
                    host=d.name,
                    phase=Phase.cert,
                    kind="replace",
                    subject=subject,
                    before=before,
                    after=after,
                    reason=reason,
                )
            )
    issued = {h.name: {"path": h.path, "sans": h.sans} for h in manifest.certs}
    # a service's own certificate is named after it
    acts += removals(d.name, Phase.cert, "cert", issued, d.certs, stopped={n: n for n in issued if n in d.inactive})
    return acts


def stray_v6(rec: DesiredRecord, held: list[str]) -> list[str]:
    """The AAAA values at a record's name that are no IPv6 address of the host it leads to (host.json)."""

    def canonical(value: str) -> str:
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value

    kept = {canonical(v) for v in rec.v6}
    return sorted(v for v in held if canonical(v) not in kept)


def _aaaa_reason(stray: list[str]) -> str:
    return (f"the server also holds AAAA {', '.join(stray)} at it, which IPv6 clients reach instead (no address "
            "of its host in host.json): apply removes it")  # fmt: skip


def dns_diff(d: DesiredHost, f: Facts, manifest: Manifest) -> list[Action]:
    acts = []
    recorded = {r.name: r for r in manifest.dns}
    for name, rec in sorted(d.records.items()):
        after = {"type": rec.type, "value": rec.value}
        subject = f"dns {name}"
        if name in f.dns_alias:  # an A record cannot sit beside a CNAME (RFC 1034): the server would ignore it
            acts.append(Action(host=d.name, phase=Phase.dns, kind="refuse", subject=subject,
                               before={"type": "CNAME", "value": f.dns_alias[name]}, after=after,
                               reason=f"the DNS server holds a CNAME for it (to {f.dns_alias[name]}), and an A record "
                               "cannot sit beside one: remove the CNAME at the server, then plan again"))  # fmt: skip
            continue
        if name in f.dns:  # the authoritative server answered: it is the truth
            answers = f.dns[name]
            held = f.dns_ttl.get(name)
            stray = stray_v6(rec, f.dns_v6.get(name, []))
            also = f"; {_aaaa_reason(stray)}" if stray else ""
            if answers == [rec.value] and (rec.ttl is None or held is None or held == rec.ttl):
                if stray:  # the A record is right, and IPv6 clients are sent elsewhere
                    acts.append(Action(host=d.name, phase=Phase.dns, kind="update", subject=subject,
                                       before={**after, "aaaa": stray}, after=after,
                                       reason=f"drift: {_aaaa_reason(stray)}"))  # fmt: skip
                continue
            if answers == [rec.value]:  # the address is right, the TTL is not (providers.dns.ttl changed)
                why = f"the server holds it with TTL {held} s, the fleet's is {rec.ttl} s{also}"
                held_as = {**after, "ttl": held, **({"aaaa": stray} if stray else {})}
                acts.append(Action(host=d.name, phase=Phase.dns, kind="update", subject=subject, before=held_as,
                                   after={**after, "ttl": rec.ttl}, reason=why))  # fmt: skip
                continue
            kind = "create" if not answers else "update"
            before: dict[str, Any] | None = (
                {"type": "A", "value": ", ".join(answers)} if answers else None
            )  # a set, shown as `after`
            if not answers:
                reason = "no A record at the authoritative server"
            elif name in recorded and answers == [recorded[name].value]:  # what apply wrote: the files changed
                reason = "the address changed"
            elif name in recorded:
                reason = f"the server answers {', '.join(answers)}: changed since apply wrote it"
            else:  # a record some other hand or tool made: replacing it is a change to review
                reason = f"the server answers {', '.join(answers)}, {NOT_RECORDED_HERE}"
            if stray:
                before, reason = {**(before or {}), "aaaa": stray}, reason + also
        else:
            old = recorded.get(name)
            if old is not None and old.value == rec.value:
                continue
            kind = "create" if old is None else "update"
            before = {"type": old.type, "value": old.value} if old else None
            reason = "not in the manifest" if old is None else "the address changed"
            if old is not None and old.value == NO_ANSWER:
                reason = "the server did not confirm an earlier apply's change: sent again"
        acts.append(
            Action(host=d.name, phase=Phase.dns, kind=kind, subject=subject, before=before, after=after, reason=reason)
        )
    records = {n: {"type": r.type, "value": r.value} for n, r in recorded.items()}
    acts += removals(d.name, Phase.dns, "dns", records, d.records, stopped=own_names(d, records))
    return acts


def _cert_drift(d: DesiredHost, f: Facts, key: str, hostname: str) -> tuple[str, str, str] | None:
    """(before, after, why) when the proxy does not serve a TLS route with the certificate its file holds,
    or None (also when unknown):
    - the proxy holds another certificate file for it, or none (its TLS entry removed by another hand):
      the handshake for the name fails, or gets another name's certificate;
    - a handshake for the name gets another certificate than the file holds: the proxy read the file before
      it changed and serves the old one until it loads it again.
    Adding the route again fixes both: it gives the proxy the file, which it reads then."""
    cert = next((c for c in d.certs.values() if hostname in c.sans), None)
    if cert is None:
        return None
    held = (f.live_certs or {}).get(key)
    if held is not None and held != cert.path:
        holds = f"the certificate file {held}" if held else "no certificate (its TLS entry was removed)"
        why = f"drift: the proxy holds {holds} for it, not {cert.path}: apply adds the route again with its file"
        return held or "(none)", cert.path, why
    seen = f.cert(cert.path)
    served = (f.served_certs or {}).get(key)
    if seen is None or not seen.sha256 or not served or served == seen.sha256:
        return None
    why = (f"drift: the proxy serves another certificate for {hostname} than {cert.path} holds (it has not read "
           "the file since it changed): apply gives it the route again, so it reads the file")  # fmt: skip
    return f"sha256:{served[:12]}", f"sha256:{seen.sha256[:12]}", why


def _no_server(host: str, f: Facts, route: DesiredRoute, subject: str, after: dict[str, Any]) -> Action | None:
    """A TLS route on a listener no server of the proxy takes (Caddy): adding it would fail at apply, so
    the plan refuses it, naming the server to add."""
    missing = f.listeners_missing.get(str(route.listener)) if not is_l4(route.mode) else None
    if not missing:
        return None
    return Action(host=host, phase=Phase.route, kind="refuse", subject=subject, after=after,
                  reason=f"{missing[0]}: apply could not add the route", hint=missing[1] or None)  # fmt: skip


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
        if refusal := _no_server(d.name, f, route, subject, after):
            acts.append(refusal)
            continue
        if old is None:
            theirs = f.live_routes.get(key) if f.live_routes is not None else None
            reason = "declared in the files"
            if theirs is not None:  # a route some other hand made: replacing it is a change to review
                reason += f"; the proxy already sends it to {theirs}, a route mcfleet did not make: apply replaces it"
            elif served is not None and hostname in served:  # a proxy read by hostname only
                reason += "; the proxy already serves it, a route mcfleet did not make: apply replaces it"
            acts.append(
                Action(
                    host=d.name,
                    phase=Phase.route,
                    kind="create",
                    subject=subject,
                    before={"backend": theirs} if theirs is not None else None,
                    after=after,
                    reason=reason,
                )
            )
            continue
        changed = old.mode != route.mode or old.service != route.service or old.backend != route.backend
        live = f.live_routes.get(key) if f.live_routes is not None else None
        live_mode = (f.live_modes or {}).get(key)
        shadow = (f.live_shadowed or {}).get(key) if live == route.backend else None
        if not changed and shadow:
            served_as = {"listener": route.listener, "mode": old.mode, "service": old.service, "backend": live,
                         "shadowed_by": shadow}  # fmt: skip
            acts.append(Action(host=d.name, phase=Phase.route, kind="update", subject=subject, before=served_as,
                               after=after, reason=f"drift: {shadow} takes its requests first, so the route is "
                               "never reached: apply puts mcfleet's route before it"))  # fmt: skip
        elif not changed and live is not None and live_mode is not None and is_l4(live_mode) != is_l4(route.mode):
            served_as = {"listener": route.listener, "mode": live_mode, "service": old.service, "backend": live}
            why = (f"drift: the proxy serves it as {live_mode}"
                   + (" (HAProxy's map passes TLS through before Caddy sees it)" if is_l4(live_mode) else "")
                   + f", the files say {route.mode}")  # fmt: skip
            acts.append(Action(host=d.name, phase=Phase.route, kind="update", subject=subject, before=served_as,
                               after=after, reason=why))  # fmt: skip
        elif not changed and f.live_routes is not None and live != route.backend:
            before = {"listener": route.listener, "mode": old.mode, "service": old.service, "backend": live}
            unserved = {"served": False} if live is None else {}  # shown only when the proxy has no route for it
            reason = f"drift: the proxy sends it to {live}" if live else "drift: the proxy serves no route for it"
            acts.append(
                Action(host=d.name, phase=Phase.route, kind="update", subject=subject, before=before | unserved,
                       after=after | ({"served": True} if unserved else {}), reason=reason)
            )  # fmt: skip
        elif not changed and served is not None and hostname not in served:
            before = {"listener": route.listener, "mode": old.mode, "service": old.service, "backend": old.backend,
                      "served": False}  # fmt: skip
            acts.append(
                Action(
                    host=d.name,
                    phase=Phase.route,
                    kind="update",
                    subject=subject,
                    before=before,
                    after={**after, "served": True},
                    reason="drift: the proxy serves no route for it",
                )
            )
        elif not changed and not is_l4(route.mode) and (stale := _cert_drift(d, f, key, hostname)):
            served_as = {"listener": route.listener, "mode": old.mode, "service": old.service,
                         "backend": old.backend if live is None else live, "certificate": stale[0]}  # fmt: skip
            acts.append(Action(host=d.name, phase=Phase.route, kind="update", subject=subject, before=served_as,
                               after={**after, "certificate": stale[1]}, reason=stale[2]))  # fmt: skip
        elif changed:
            before = {"listener": old.listener, "mode": old.mode, "service": old.service, "backend": old.backend}
            why = "the route changed"
            if old.backend == NO_ANSWER:
                why = "the proxy did not confirm an earlier apply's change: sent again"
            acts.append(
                Action(
                    host=d.name,
                    phase=Phase.route,
                    kind="update",
                    subject=subject,
                    before=before,
                    after=after,
                    reason=why,
                )
            )
    routes = {h: {"mode": r.mode, "backend": r.backend} for h, r in recorded.items()}
    acts += removals(d.name, Phase.route, "route", routes, d.routes, stopped=_stopped_routes(d, recorded))
    return acts + map_file_drift(d, f, {a.subject for a in acts})


def is_l4(mode: str) -> bool:
    """TLS passed through untouched (l4) or ended by the proxy (l7, reencrypt): two proxies when route_l4 is set."""
    return mode == "l4"


def map_file_drift(d: DesiredHost, f: Facts, planned: set[str]) -> list[Action]:
    """HAProxy's map file against the running HAProxy, which alone is asked above: a route the file lacks
    (or sends elsewhere) is lost at HAProxy's next start, a line only the file holds comes back then.
    Apply writes the file from the running map (HaproxyRoutes persists after every call)."""
    saved, live = f.route_map, f.live_routes
    if saved is None or live is None:
        return []
    where = f"HAProxy's map file {saved.path}"
    acts = []
    for key, route in sorted(d.routes.items()):
        held = saved.entries.get(key)
        if route.mode != "l4" or f"route {key}" in planned or live.get(key) != route.backend or held == route.backend:
            continue
        if saved.missing:
            why = f"{where} is missing or no plain file: a restarted HAProxy would not serve it"
        elif held is None:
            why = f"{where} lacks it: a restarted HAProxy would not serve it"
        else:
            why = f"{where} sends it to {held}: a restarted HAProxy would"
        before = {"mode": route.mode, "backend": route.backend, "saved": held}
        acts.append(Action(host=d.name, phase=Phase.route, kind="update", subject=f"route {key}", before=before,
                           after={**before, "saved": route.backend},
                           reason=f"drift: {why} (the running one sends it to {route.backend})"))  # fmt: skip
    for key, held in sorted(saved.entries.items()):
        if key in live or key in d.routes or f"route {key}" in planned:
            continue
        acts.append(Action(host=d.name, phase=Phase.route, kind="delete", subject=f"route {key}",
                           before={"mode": "l4", "backend": held},
                           reason=f"drift: only {where} holds it: a restarted HAProxy would serve it again "
                           "(the running one does not)"))  # fmt: skip
    return acts


def removals(
    host: str,
    phase: Phase,
    label: str,
    recorded: Mapping[str, object],
    declared: Container[str],
    *,
    stopped: Mapping[str, str] | None = None,
) -> list[Action]:
    """What the manifest says mcfleet manages here but the files no longer declare: delete it.  `stopped`:
    the keys of a service whose file says `"active": false` -> that service, which is why they go."""
    return [
        Action(
            host=host,
            phase=phase,
            kind="delete",
            subject=f"{label} {key}",
            before=before,
            reason=stopped_reason(service)
            if (service := (stopped or {}).get(key))
            else "no longer declared in the files",
        )
        for key, before in sorted(recorded.items())
        if key not in declared
    ]


def _stopped_routes(d: DesiredHost, recorded: Mapping[str, ManifestRoute]) -> dict[str, str]:
    return {key: r.service for key, r in recorded.items() if r.service is not None and r.service in d.inactive}


def stopped_reason(service: str) -> str:
    return f'"active": false in {service}.json: removed while the service is kept stopped'


def own_names(d: DesiredHost, names: Iterable[str]) -> dict[str, str]:
    """The DNS names among `names` of a service of this host kept stopped: its own name is `<service>.<zone>`."""
    return {n: svc for n in names if (svc := n.partition(".")[0]) in d.inactive}


async def add_dns(loaded: LoadedFleet, desired: Mapping[str, DesiredHost], facts: GatherResult) -> GatherResult:
    provider = loaded.fleet.providers.dns if loaded.fleet else None
    if not isinstance(provider, Rfc2136Provider):
        return facts
    wanted: dict[str, set[str]] = {}
    for host, item in facts.items():
        if isinstance(item, Facts):
            wanted[host] = set(dns_names(desired[host])) | {
                r.name for r in (item.manifest.dns if item.manifest else [])
            }
    every = sorted(set().union(*wanted.values())) if wanted else []
    if not every:
        return facts
    from mcfleet.observe.dns import query_names

    return _with_answers(facts, wanted, await query_names(every, provider.server, provider.port))  # in parallel


def _with_answers(facts: GatherResult, wanted: dict[str, set[str]], read: ZoneAnswers) -> GatherResult:
    """Each host's facts with the answers to the names it asked for."""
    out = dict(facts)
    for host, names in wanted.items():
        item = out[host]
        if names and isinstance(item, Facts):
            out[host] = item.model_copy(update=read.facts_update(names))
    return out


async def add_routes(loaded: LoadedFleet, desired: Mapping[str, DesiredHost], facts: GatherResult) -> GatherResult:
    provider = loaded.fleet.providers.route if loaded.fleet else None
    if not isinstance(provider, CaddyProvider):
        return facts
    wanted: dict[str, set[str]] = {}
    for host, item in facts.items():
        if isinstance(item, Facts):
            recorded = {r.hostname for r in (item.manifest.routes if item.manifest else [])}
            wanted[host] = {r.hostname for r in desired[host].routes.values()} | recorded
    if not any(wanted.values()):
        return facts
    from mcfleet.observe.routes import observed_hostnames

    served, error = await observed_hostnames(provider.admin_url, provider.server)
    out = dict(facts)
    for host, names in wanted.items():
        item = out[host]
        if names and isinstance(item, Facts):
            seen = sorted(names & served) if served is not None else None
            out[host] = item.model_copy(update={"routes": seen, "routes_error": error})
    return out


class CertKind(NoRead):
    name = "cert"
    phase = Phase.cert
    records_desired_set = True
    # the actions that need the provider's credential, and what apply does with it
    credential_actions: ClassVar[Mapping[str, str]] = {"create": "issue", "replace": "issue"}

    async def write_refusal(self, loaded: LoadedFleet) -> tuple[str, str | None] | None:
        """(why, what to do) when every issuance would fail before it reaches the CA: the credential's file
        cannot be read, or is not a key.  Asked only of a plan with certificates to issue."""
        from mcfleet.providers.select import cert_backend

        return await _credential_refusal(cert_backend(loaded.fleet) if loaded.fleet else None)

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return not_configured("cert", loaded.fleet.providers.cert if loaded.fleet else None)

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        return certs_diff(d, f, m, now)

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        loaded = ctx.loaded
        from mcfleet.providers.steps import StepBroken, apply_certs, apply_routes

        step = await _made_if_cut(ctx, self.phase, "certs", apply_certs(loaded, ctx.node, ctx.desired, actions))
        renewed = step.renewed & {c.path for c in ctx.manifest.certs}
        if step.status == "changed" and renewed:  # a proxy keeps a cert in memory: give it its live routes again
            live = {f"{r.listener}/{r.hostname}" for r in ctx.manifest.routes}
            kept = {k: r for k, r in ctx.desired.routes.items() if k in live}
            try:
                refresh = await apply_routes(loaded, ctx.node, replace(ctx.desired, routes=kept), [], renewed)
            except (asyncio.CancelledError, StepBroken) as exc:  # ended while the proxy reloads: the certs stand
                _outcome(step, ctx, self.phase, "certs")
                if isinstance(exc, StepBroken):
                    raise exc.cause from None
                raise
            if refresh.status == "failed":
                step = replace(step, status="failed", message=f"{step.message}; reloading the proxy: {refresh.message}")
        return _outcome(step, ctx, self.phase, "certs")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        if self.blocked(ctx.loaded):
            return m
        issued = {a.subject.removeprefix("cert ") for a in actions if a.kind in ("create", "replace")}
        return m.model_copy(update={"certs": record_certs(ctx.desired, m, issued)})


class DnsKind:
    name = "dns"
    phase = Phase.dns
    records_desired_set = True
    credential_actions: ClassVar[Mapping[str, str]] = {"create": "create", "update": "change", "delete": "delete"}

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return not_configured("dns", loaded.fleet.providers.dns if loaded.fleet else None)

    def read_early(self, ctx: ReadContext, host: str) -> None:
        return None  # it asks the DNS server once for the whole fleet, not the nodes

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        provider = ctx.loaded.fleet.providers.dns if ctx.loaded.fleet else None
        if isinstance(provider, Rfc2136Provider) or provider is None:
            return await add_dns(ctx.loaded, ctx.desired, facts)
        return await add_provider_dns(ctx.loaded, ctx.desired, facts)

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        return dns_diff(d, f, m)

    async def write_refusal(self, loaded: LoadedFleet) -> tuple[str, str | None] | None:
        """(why, what to do) when the DNS server would refuse every record apply writes: it rejects the
        credential (a TSIG key with a wrong secret or an unknown name, an MCIAS token), or the file that
        holds it cannot be read.  Asked only of a plan with record changes; None when the credential is
        accepted (or the server does not answer)."""
        from mcfleet.providers.select import dns_backend

        return await _credential_refusal(dns_backend(loaded.fleet) if loaded.fleet else None)

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        from mcfleet.providers.steps import apply_dns

        step = await _made_if_cut(ctx, self.phase, "records", apply_dns(ctx.loaded, ctx.desired, actions))
        return _outcome(step, ctx, self.phase, "records")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        if self.blocked(ctx.loaded):
            return m
        return m.model_copy(update={"dns": record_dns(ctx.desired)})


class RouteKind:
    name = "route"
    phase = Phase.route
    records_desired_set = True

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return not_configured("route", loaded.fleet.providers.route if loaded.fleet else None)

    def read_early(self, ctx: ReadContext, host: str) -> Coroutine[Any, Any, LiveRoutes] | None:
        """The live routes of the proxies on a host whose files route through it, read as `read` reads them."""
        provider = ctx.loaded.fleet.providers.route if ctx.loaded.fleet else None
        desired = ctx.desired[host]
        if provider is None or ctx.pool is None or not desired.routes:
            return None
        if isinstance(provider, CaddyProvider) and not provider.admin_url.startswith("unix:"):
            return None  # read over TCP from this machine, the whole fleet at once
        from mcfleet.providers.read import host_proxy_routes

        return host_proxy_routes(ctx.loaded, ctx.pool, host, tls_listeners(desired))

    async def read(self, ctx: ReadContext, facts: GatherResult) -> GatherResult:
        provider = ctx.loaded.fleet.providers.route if ctx.loaded.fleet else None
        if isinstance(provider, CaddyProvider) and not provider.admin_url.startswith("unix:"):
            return await add_routes(ctx.loaded, ctx.desired, facts)
        if provider is None or ctx.pool is None:
            return facts
        early = {h: f for h in facts if (f := ctx.early_read(self.name, h)) is not None}
        return await add_live_routes(ctx.loaded, ctx.desired, facts, ctx.pool, early)

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        return routes_diff(d, f, m)

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        from mcfleet.providers.steps import apply_routes

        step = await _made_if_cut(ctx, self.phase, "routes", apply_routes(ctx.loaded, ctx.node, ctx.desired, actions))
        return _outcome(step, ctx, self.phase, "routes")

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        if self.blocked(ctx.loaded):
            return m
        return m.model_copy(update={"routes": record_routes(ctx.desired)})


async def add_provider_dns(
    loaded: LoadedFleet, desired: Mapping[str, DesiredHost], facts: GatherResult
) -> GatherResult:
    """The answers of a DNS provider that is not a plain DNS server (MCNS: its record API)."""
    wanted = {
        host: set(dns_names(desired[host])) | {r.name for r in (item.manifest.dns if item.manifest else [])}
        for host, item in facts.items()
        if isinstance(item, Facts)
    }
    from mcfleet.providers.read import dns_answers

    return _with_answers(facts, wanted, await dns_answers(loaded, set().union(*wanted.values()) if wanted else set()))


def tls_listeners(desired: DesiredHost) -> set[int]:
    """The listeners of the host's routes whose TLS its proxy ends."""
    return {r.listener for r in desired.routes.values() if not is_l4(r.mode)}


async def add_live_routes(
    loaded: LoadedFleet,
    desired: Mapping[str, DesiredHost],
    facts: GatherResult,
    pool: SshPool,
    early: Mapping[str, Awaitable[LiveRoutes]] | None = None,
) -> GatherResult:
    """Each proxy host's live routes, read on the node through its SSH connection (`early`: the reads
    started already, by host)."""
    hosts = [
        h
        for h, item in facts.items()
        if isinstance(item, Facts) and (desired[h].routes or (item.manifest and item.manifest.routes))
    ]
    from mcfleet.providers.read import proxy_routes

    tls = {h: tls_listeners(desired[h]) for h in hosts}
    found = await proxy_routes(loaded, pool, hosts, tls, early)
    out = dict(facts)
    for host, read in found.items():
        item = out[host]
        if not isinstance(item, Facts):
            continue
        if isinstance(read, str):
            out[host] = item.model_copy(update={"routes_error": read})
        else:
            live = read.routes
            missing = {str(n): [why, hint or ""] for n, (why, hint) in read.missing.items()}
            out[host] = item.model_copy(update={"live_routes": {k: r.backend for k, r in live.items()},
                                                "live_modes": {k: r.mode for k, r in live.items()},
                                                "live_shadowed": {k: r.shadowed_by for k, r in live.items()
                                                                  if r.shadowed_by},
                                                "live_certs": {k: r.cert for k, r in live.items()
                                                               if not is_l4(r.mode)},
                                                "listeners_missing": missing})  # fmt: skip
    return out
