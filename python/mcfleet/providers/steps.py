"""The cert, DNS and route steps of apply: carry out a plan's actions with the fleet's providers.

Each function runs exactly the actions it is given (what the plan showed) on one host and
returns a `StepOutcome`; a provider that is down or refuses fails that action with the
provider's message and hint, the host's other actions of the step still run, and the step
is `failed` so that apply stops this host's later steps (other hosts go on).  Re-running
converges: every call is idempotent (replace-style DNS updates, upserting routes, certs
issued again only when the plan says so).

Subjects, as the plan writes them: `cert <stem>`, `dns <name>`, `route <listener>/<hostname>`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcfleet.apply.nodeio import ensure_store, put_file
from mcfleet.errors import McfleetError
from mcfleet.fleet.desired import DesiredHost, DesiredRoute, proxy_user
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import CaddyProvider, Fleet, HaproxyProvider, McProxyProvider, RouteProvider
from mcfleet.plan.model import Action
from mcfleet.providers.base import NoAnswer, ProviderError
from mcfleet.providers.route.base import ProxyRoute, RouteBackend
from mcfleet.providers.select import cert_backend, dns_backend, route_provider
from mcfleet.transport.base import Node
from mcfleet.transport.socket_state import socket_problem

if TYPE_CHECKING:
    from mcfleet.providers.dns.base import DnsBackend
    from mcfleet.providers.route.haproxy import SaveMap


class StepCancelled(asyncio.CancelledError):
    """A step cancelled mid-way (Ctrl-C), with what it had put in place by then (`partial.made`, `.unsure`):
    still a cancellation to asyncio, and the kind records `partial` before passing it on."""

    def __init__(self, partial: StepOutcome) -> None:
        super().__init__("interrupted")
        self.partial = partial


class StepBroken(Exception):
    """A step ended mid-way by an error other than a provider's answer (the SSH connection lost while a
    certificate was installed), with what it had put in place by then: the kind records `partial`, then
    raises `cause` on."""

    def __init__(self, partial: StepOutcome, cause: Exception) -> None:
        super().__init__(str(cause))
        self.partial = partial
        self.cause = cause


def _cut(made: set[str], unsure: set[str], sending: str | None, exc: BaseException) -> BaseException:
    """What to raise for a step that `exc` ended after it had put `made` in place (`unsure` of them
    unanswered) while it was sending `sending`, which the peer may still have taken: unsure too."""
    cut = StepOutcome("failed", "interrupted")
    cut.unsure = unsure | ({sending} if sending else set())
    cut.made = made | cut.unsure
    if isinstance(exc, asyncio.CancelledError):
        return StepCancelled(cut)
    return StepBroken(cut, exc) if isinstance(exc, Exception) else exc


@dataclass
class StepOutcome:
    """How one provider step ended, with its timings and renewed certificates."""

    status: str  # changed | unchanged | failed | blocked
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # subject -> seconds
    renewed: set[str] = field(default_factory=set)  # cert paths written by this step
    # keys of the host's desired certs / records / routes this step put in place (cert names, DNS
    # names, "listener/hostname"): what a failed step still did, for the manifest
    made: set[str] = field(default_factory=set)
    # of those, the ones whose change got no answer (NoAnswer: a timeout), which the peer may still carry
    # out (a DNS server that was hung takes it when it resumes): the manifest lists them with the value
    # NO_ANSWER (observe/manifest.py), and the next plan sends them again, or removes them
    unsure: set[str] = field(default_factory=set)


def _subject(action: Action, label: str) -> str:
    return action.subject[len(label) + 1 :] if action.subject.startswith(label + " ") else action.subject


def _route_mode(action: Action, desired: DesiredHost) -> str:
    """The mode of the route an action adds (as declared) or removes (as it was)."""
    key = _subject(action, "route")
    if action.kind != "delete" and key in desired.routes:
        return desired.routes[key].mode
    before = action.before if isinstance(action.before, dict) else {}
    return str(before.get("mode", "l7"))


def _finish(done: list[str], failed: list[str], timings: dict[str, float], what: str) -> StepOutcome:
    if failed:
        return StepOutcome("failed", "; ".join(failed), timings)
    if not done:
        return StepOutcome("unchanged", f"no {what} to change", timings)
    return StepOutcome("changed", ", ".join(done), timings)


def _error(subject: str, exc: ProviderError) -> str:
    return f"{subject}: {exc.message}" + (f" (what to do: {exc.hint})" if exc.hint else "")


async def local_socket(node: Node, remote: str) -> str:
    """A local path that reaches the node's unix socket `remote` (forwarded through SSH)."""
    forward: Any = getattr(node, "forward_unix", None)
    return remote if forward is None else str(await forward(remote))


def map_saver(node: Node, path: str) -> SaveMap:
    """Writes HAProxy's map file on the proxy's node, atomically, as root (HAProxy reads it at start)."""

    async def save(text: str) -> None:
        try:
            await ensure_store(node)  # the root helper that writes files (apply's lock installed it: a no-op then)
            await put_file(node, path, text=text, mode="0644")
        except McfleetError as exc:
            raise ProviderError(
                f"the route is live in HAProxy but its map file {path} was not written: {exc.message}",
                hint="fix the folder on the proxy node and re-run apply (a restarted HAProxy would lose the route)",
            ) from None

    return save


def node_socket(fleet: Fleet, provider: RouteProvider) -> tuple[str, str, str] | None:
    """(the proxy's name, the unix socket on its node it is reached through, the fleet.json field naming it);
    None for a Caddy reached over TCP."""
    key = "route_l4" if provider is fleet.providers.route_l4 and provider is not fleet.providers.route else "route"
    if isinstance(provider, CaddyProvider):
        from mcfleet.providers.route.caddy import UNIX

        unix = provider.admin_url.startswith(UNIX)
        return ("Caddy", provider.admin_url[len(UNIX) :], f"providers.{key}.admin_url") if unix else None
    if isinstance(provider, HaproxyProvider):
        return "HAProxy", provider.admin_socket, f"providers.{key}.admin_socket"
    return "mc-proxy", provider.socket, f"providers.{key}.socket"


async def no_socket(node: Node, fleet: Fleet, provider: RouteProvider) -> ProviderError | None:
    """Why a proxy reached through SSH could not be asked, when its socket is not on the node (or is a link):
    its client saw only a connection closed without an answer (transport.socket_state); asked after a
    failure only (a plan that reads the proxy pays nothing)."""
    found = node_socket(fleet, provider)
    if found is None or getattr(node, "forward_unix", None) is None:  # this machine: the error names the path
        return None
    what, path, field_name = found
    problem = await socket_problem(node, path, what)
    if problem is None:  # one listens (or the node cannot tell): the first error stands
        return None
    if problem.state == "link":  # the relay connects only to a socket at the path itself (transport.relay)
        return ProviderError(
            f"{what} on {node.name} was not reached: {problem.text}",
            hint=f"set {field_name} in fleet.json to the socket the link points to",
        )
    return ProviderError(
        f"{what} is not listening on {node.name}: {problem.text}",
        hint=f"start {what} on {node.name}, or fix {field_name} in fleet.json",
    )


def _socket_checks(node: Node, fleet: Fleet) -> Callable[[str], Awaitable[ProviderError | None]]:
    """no_socket for the proxy of a route mode, asked once per proxy."""
    gone: dict[int, ProviderError | None] = {}

    async def check(mode: str) -> ProviderError | None:
        provider = route_provider(fleet, mode)
        assert provider is not None
        if id(provider) not in gone:
            gone[id(provider)] = await no_socket(node, fleet, provider)
        return gone[id(provider)]

    return check


async def open_route_backend(provider: RouteProvider, node: Node) -> RouteBackend:
    # imported here: a fleet pays for the route backends it configures only (mc-proxy's is grpc)
    if isinstance(provider, CaddyProvider):
        from mcfleet.providers.route.caddy import UNIX, CaddyRoutes

        if provider.admin_url.startswith(UNIX):
            return CaddyRoutes(provider, await local_socket(node, provider.admin_url[len(UNIX) :]))
        return CaddyRoutes(provider)
    if isinstance(provider, HaproxyProvider):
        from mcfleet.providers.route.haproxy import HaproxyRoutes

        local = await local_socket(node, provider.admin_socket)
        return HaproxyRoutes(provider, map_saver(node, provider.map_file), local)
    if isinstance(provider, McProxyProvider):
        from mcfleet.providers.route.mcproxy import McProxyRoutes

        return McProxyRoutes(await local_socket(node, provider.socket), provider.socket)
    raise AssertionError(provider)


# --------------------------------------------------------------------------- cert


async def apply_certs(loaded: LoadedFleet, node: Node, desired: DesiredHost, actions: Iterable[Action]) -> StepOutcome:
    backend = cert_backend(loaded.fleet) if loaded.fleet else None
    if backend is None:
        return StepOutcome("blocked", "no cert provider configured (providers.cert in fleet.json)")
    from mcfleet.providers.cert.install import issue_and_install, remove_cert, restrict_key  # x509

    done: list[str] = []
    failed: list[str] = []
    timings: dict[str, float] = {}
    renewed: set[str] = set()
    made: set[str] = set()
    owner = proxy_user(loaded)  # as the plan expects it (DesiredCert.owner)
    try:
        for action in actions:
            name = _subject(action, "cert")
            try:
                if action.kind in ("create", "replace", "update"):
                    cert = desired.certs[name]
                    if action.kind == "replace":  # the key in place may be readable by others: not one second more
                        await ensure_store(node)  # root's node helper (apply's lock installed it: a no-op then)
                        await restrict_key(node, cert.path, owner)
                    installed = await issue_and_install(node, backend, cert.sans[0], cert.path, owner)
                    timings[action.subject] = installed.seconds
                    renewed.add(cert.path)
                    made.add(name)
                    done.append(f"{name} issued (until {installed.not_after[:10]})")
                elif action.kind == "delete":
                    path = (action.before or {}).get("path") if isinstance(action.before, dict) else None
                    if path:
                        await remove_cert(node, str(path))
                    done.append(f"{name} removed")
            except ProviderError as exc:
                failed.append(_error(action.subject, exc))
    except (asyncio.CancelledError, Exception) as exc:
        # Ctrl-C or a lost connection mid-way: the certificates installed so far go in the manifest.  One
        # still being issued does not: recorded, it would be taken for the new provider's (its issuer)
        # while the node may still hold the one it was to replace.
        raise _cut(made, set(), None, exc) from exc
    out = _finish(done, failed, timings, "certificates")
    out.renewed, out.made = renewed, made
    return out


# --------------------------------------------------------------------------- dns


def stray_aaaa(action: Action) -> list[str]:
    """The AAAA values the plan found at the action's name that lead elsewhere than its host: apply removes
    them (`before["aaaa"]`, see kinds/providers.dns_diff)."""
    before = action.before if isinstance(action.before, dict) else {}
    values = before.get("aaaa")
    return [str(v) for v in values] if isinstance(values, list) else []


def a_record_held(action: Action) -> bool:
    """True when the plan found the A record as it should be (address and TTL) and only stray AAAA values
    to remove: the A record is not sent again (on rfc2136 that would be a signed UPDATE and a new serial
    for nothing)."""
    before = action.before if isinstance(action.before, dict) else {}
    return bool(stray_aaaa(action)) and {k: v for k, v in before.items() if k != "aaaa"} == action.after


async def apply_dns(loaded: LoadedFleet, desired: DesiredHost | None, actions: Iterable[Action]) -> StepOutcome:
    """The record changes and removals, verified at the server.  `desired` is None for a host gone from
    hosts/ (plan.gone_records), which has removals only."""
    backend = dns_backend(loaded.fleet) if loaded.fleet else None
    if backend is None:
        return StepOutcome("blocked", "no dns provider configured (providers.dns in fleet.json)")
    done: list[str] = []
    failed: list[str] = []
    timings: dict[str, float] = {}
    written: dict[str, list[str]] = {}
    dropped: dict[str, list[str]] = {}  # name -> the AAAA values removed from it
    unsure: set[str] = set()
    sending: str | None = None  # the record whose change is on its way to the server
    try:
        for action in actions:
            name = _subject(action, "dns")
            started = time.monotonic()
            try:
                if action.kind in ("create", "update", "replace"):
                    if desired is None:
                        raise ValueError(f"{action.subject}: a record to write for a host that declares none")
                    value = desired.records[name].value
                    if not a_record_held(action):
                        sending = name
                        await backend.set_a(name, value)
                        sending = None
                        done.append(f"{name} -> {value}")
                    written[name] = [value]  # verified below either way
                    stray = stray_aaaa(action)
                    if stray:
                        await backend.delete_aaaa(name, stray)
                        dropped[name] = stray
                        done.append(f"{name} AAAA {', '.join(stray)} removed")
                elif action.kind == "delete":
                    await backend.delete_a(name)
                    written[name] = []
                    done.append(f"{name} removed")
            except ProviderError as exc:
                sending = None
                failed.append(_error(action.subject, exc))
                if isinstance(exc, NoAnswer) and action.kind != "delete":
                    unsure.add(name)
            timings[action.subject] = time.monotonic() - started
        if written and not failed:  # verified at the server that answers for the zone
            failed += await _dns_verified(backend, written, dropped)
    except (asyncio.CancelledError, Exception) as exc:
        # Ctrl-C or an error mid-way: what the server took so far goes in the manifest (the kind records it)
        raise _cut({n for n, values in written.items() if values}, unsure, sending, exc) from exc
    out = _finish(done, failed, timings, "DNS records")
    out.made = {n for n, values in written.items() if values} | unsure  # taken by the server (verified or not)
    out.unsure = unsure
    return out


async def _dns_verified(backend: DnsBackend, written: dict[str, list[str]], dropped: dict[str, list[str]]) -> list[str]:
    """What the server that answers for the zone holds otherwise than was `written` (and `dropped`): one failure
    line, or none."""
    try:
        read = await backend.answers_full(sorted(written))
    except ProviderError as exc:
        return [_error("dns verify", exc)]
    seen, ttls = read.values, read.ttls
    wrong = [f"{n} answers {seen.get(n) or 'nothing'}" for n, want in written.items() if seen.get(n) != want]
    wrong += [f"{n} still holds AAAA {', '.join(kept)}" for n, gone in dropped.items()
              if (kept := sorted(set(read.v6.get(n, [])) & set(gone)))]  # fmt: skip
    # a server that keeps another TTL (a floor of its own) would make every plan change it again
    wrong += [
        f"{n} has TTL {ttls[n]} s, not providers.dns.ttl {backend.ttl} s (the server keeps its own: set ttl to it)"
        for n, want in written.items()
        if want and seen.get(n) == want and ttls.get(n, backend.ttl) != backend.ttl
    ]
    return ["the DNS server does not answer what was written: " + "; ".join(wrong)] if wrong else []


# --------------------------------------------------------------------------- route


def _cert_for(desired: DesiredHost, hostname: str) -> str:
    return next((c.path for c in desired.certs.values() if hostname in c.sans), "")


async def _drop_other_mode(
    action: Action, route: DesiredRoute, fleet: Fleet, backend_for: Callable[[str], Awaitable[RouteBackend]]
) -> None:
    """A route that changed between l4 and l7 where those are two proxies (route_l4: HAProxy, route: Caddy):
    the old one is removed from the proxy it was in, after the new one is in place.  Left there, HAProxy's
    map (which comes first) would go on passing the name through, and Caddy's l7 route would never be
    reached; or Caddy would keep a route nothing reaches."""
    before = action.before if isinstance(action.before, dict) else {}
    old = before.get("mode")
    if not isinstance(old, str) or (old == "l4") == (route.mode == "l4"):
        return
    if route_provider(fleet, old) is route_provider(fleet, route.mode):  # one proxy for both: add_route replaced it
        return
    await (await backend_for(old)).remove_route(route.listener, route.hostname)


def _with_renewed(desired: DesiredHost, todo: list[Action], renewed: set[str]) -> list[Action]:
    """`todo`, and an update of each route whose certificate was `renewed` (a proxy reads a renewed certificate
    again when its routes are added again)."""
    planned = {_subject(a, "route") for a in todo}
    return todo + [
        Action(host=desired.name, phase="route", kind="update", subject=f"route {key}",
               reason="its certificate was renewed")
        for key, route in sorted(desired.routes.items())
        if key not in planned and _cert_for(desired, route.hostname) in renewed
    ]  # fmt: skip


def _proxy_route(desired: DesiredHost, r: DesiredRoute) -> ProxyRoute:
    """The route as the proxy takes it: an l7 route with the certificate (and its key) for its hostname."""
    from mcfleet.observe.certs import key_path

    cert = _cert_for(desired, r.hostname) if r.mode != "l4" else ""
    return ProxyRoute(r.listener, r.hostname, r.backend, r.mode, cert, key_path(cert) if cert else "")


async def apply_routes(
    loaded: LoadedFleet,
    node: Node,
    desired: DesiredHost,
    actions: Iterable[Action],
    renewed: set[str] | None = None,
) -> StepOutcome:
    """`renewed`: cert paths the cert step wrote; routes using them are given to the proxy again (reload)."""
    fleet = loaded.fleet
    if fleet is None or fleet.providers.route is None:
        return StepOutcome("blocked", "no route provider configured (providers.route in fleet.json)")
    backends: dict[int, RouteBackend] = {}

    async def backend_for(mode: str) -> RouteBackend:
        provider = route_provider(fleet, mode)
        assert provider is not None
        if id(provider) not in backends:
            backends[id(provider)] = await open_route_backend(provider, node)
        return backends[id(provider)]

    why_not_asked = _socket_checks(node, fleet)
    done: list[str] = []
    failed: list[str] = []
    timings: dict[str, float] = {}
    made: set[str] = set()
    unsure: set[str] = set()
    todo = _with_renewed(desired, list(actions), renewed or set())
    sending: str | None = None  # the route on its way to the proxy
    try:
        for action in todo:
            key = _subject(action, "route")
            listener_text, _, hostname = key.partition("/")
            started = time.monotonic()
            try:
                if action.kind in ("create", "update", "replace"):
                    r = desired.routes[key]
                    sending = key
                    await (await backend_for(r.mode)).add_route(_proxy_route(desired, r))
                    sending = None
                    made.add(key)  # in the proxy now, even if removing it from the other one fails
                    await _drop_other_mode(action, r, fleet, backend_for)
                    done.append(f"{key} -> {r.backend} ({r.mode})")
                elif action.kind == "delete":
                    before = action.before if isinstance(action.before, dict) else {}
                    mode = str(before.get("mode", "l7"))
                    await (await backend_for(mode)).remove_route(int(listener_text or 443), hostname)
                    done.append(f"{key} removed")
            except ProviderError as exc:
                sending = None
                if not isinstance(exc, NoAnswer):  # a change sent and not answered reached a listening proxy
                    exc = await why_not_asked(_route_mode(action, desired)) or exc
                failed.append(_error(action.subject, exc))
                if isinstance(exc, NoAnswer) and action.kind != "delete" and key in desired.routes:
                    unsure.add(key)
            timings[action.subject] = time.monotonic() - started
    except (asyncio.CancelledError, Exception) as exc:  # Ctrl-C or an error mid-way: what the proxies took
        raise _cut(made, unsure, sending, exc) from exc
    out = _finish(done, failed, timings, "routes")
    out.made = made | unsure
    out.unsure = unsure
    return out


@dataclass
class ProxyRead:
    """What the proxy (or proxies: route and route_l4) on a node holds: its live routes, and the asked
    listeners where the TLS-ending one could not take a route (Caddy: no server for the port; the other
    proxies take any listener), listener -> (why, what to do)."""

    routes: dict[str, ProxyRoute] = field(default_factory=dict)
    missing: dict[int, tuple[str, str | None]] = field(default_factory=dict)


async def read_proxies(loaded: LoadedFleet, node: Node, listeners: Iterable[int] = ()) -> ProxyRead:
    """One read per proxy, through one connection to its admin socket each; the proxies (route and route_l4)
    are asked at once: each read waits for SSH round trips (its relay, its connection, the question)."""
    fleet = loaded.fleet
    out = ProxyRead()
    if fleet is None:
        return out
    wanted = set(listeners)

    async def one(provider: RouteProvider) -> tuple[dict[str, ProxyRoute], dict[int, tuple[str, str | None]] | None]:
        backend = await open_route_backend(provider, node)
        try:
            routes = await backend.list_routes()
        except ProviderError as exc:
            raise await no_socket(node, fleet, provider) or exc from None
        if provider is fleet.providers.route and wanted and isinstance(provider, CaddyProvider):
            from mcfleet.providers.route.caddy import CaddyRoutes

            assert isinstance(backend, CaddyRoutes)
            return routes, await backend.missing_servers(wanted)  # the server list the route read got
        return routes, None

    # the route provider first, then route_l4 (one provider may be both)
    providers = {id(p): p for p in (fleet.providers.route, fleet.providers.route_l4) if p is not None}
    reads = await asyncio.gather(*(one(p) for p in providers.values()), return_exceptions=True)
    for read in reads:  # in that order: a failure is reported as when they were asked one after the other
        if isinstance(read, BaseException):
            raise read
        routes, missing = read
        out.routes.update(routes)
        if missing is not None:
            out.missing = missing
    return out


async def live_routes(loaded: LoadedFleet, node: Node) -> dict[str, ProxyRoute]:
    """Every route the proxy (or proxies: route and route_l4) on this node serves now."""
    return (await read_proxies(loaded, node)).routes
