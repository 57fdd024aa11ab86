"""Caddy tries a server's routes in order: a route of the operator's in front that takes every request for
a name (no matcher, a host pattern that covers it) ends it there, and mcfleet's route behind it is never
reached.  The Caddy provider reports it (`shadowed_by`), and the plan lists it as drift."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcfleet.fleet.desired import DesiredAgent, DesiredHost, DesiredRoute
from mcfleet.fleet.models import CaddyProvider
from mcfleet.kinds.providers import routes_diff
from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import Manifest, ManifestRoute
from mcfleet.providers.route.caddy import CaddyRoutes, host_pattern_covers, shadowed_by

NAME = "web.svc.example.test"
MINE = {"@id": "mcfleet-443-other.svc.example.test", "match": [{"host": ["other.svc.example.test"]}],
        "handle": [{"handler": "reverse_proxy"}], "terminal": True}  # fmt: skip


def _route(
    match: Any = None, handlers: tuple[str, ...] = ("static_response",), terminal: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"handle": [{"handler": h} for h in handlers]}
    if match is not None:
        out["match"] = match
    if terminal:
        out["terminal"] = True
    return out


def test_a_route_that_takes_every_request_for_the_name_shadows_it() -> None:
    assert shadowed_by("edge", [_route()], NAME) == "route #0 of Caddy's server edge (it matches every request)"
    assert shadowed_by("edge", [MINE, _route([{"host": ["*.svc.example.test"]}], ("reverse_proxy",))], NAME) == (
        "route #1 of Caddy's server edge (host *.svc.example.test)"
    )
    headers_then_on = _route([{"host": [NAME]}], ("headers",))  # passes the request on to the next route
    assert shadowed_by("edge", [headers_then_on, _route([{"host": [NAME]}], ("headers",), terminal=True)], NAME) == (
        "route #1 of Caddy's server edge (host web.svc.example.test)"
    )


def test_a_route_that_takes_only_part_of_the_requests_or_another_name_does_not() -> None:
    assert shadowed_by("edge", [], NAME) == ""
    assert shadowed_by("edge", [MINE], NAME) == ""  # mcfleet's own (another name)
    assert shadowed_by("edge", [_route([{"host": [NAME], "path": ["/static/*"]}])], NAME) == ""
    assert shadowed_by("edge", [_route([{"host": ["*.example.test"]}])], NAME) == ""  # one label only
    assert shadowed_by("edge", [_route([{"host": [NAME]}], ("headers",))], NAME) == ""
    assert shadowed_by("edge", [_route(None, ("subroute",))], NAME) == ""  # falls through when nothing in it matches
    site_block = _route([{"host": ["*.svc.example.test"]}], ("subroute",), terminal=True)  # as a Caddyfile adapts
    assert shadowed_by("edge", [site_block], NAME) == "route #0 of Caddy's server edge (host *.svc.example.test)"


def test_host_patterns_match_as_caddy_matches_them() -> None:
    assert host_pattern_covers("WEB.svc.example.test", NAME)
    assert host_pattern_covers("*.svc.example.test", NAME)
    assert host_pattern_covers("web.*.example.test", NAME)
    assert not host_pattern_covers("*.example.test", NAME)
    assert not host_pattern_covers("svc.example.test", NAME)


def test_the_plan_lists_a_shadowed_route_and_apply_re_adds_it() -> None:
    key, backend = f"443/{NAME}", "127.0.0.1:20080"
    route = DesiredRoute(hostname=NAME, mode="l7", service="web", service_host="n1", backend=backend)
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    host = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, routes={key: route})
    applied = Manifest(routes=[ManifestRoute(hostname=NAME, listener=443, mode="l7", service="web", backend=backend)])
    shadow = "route #0 of Caddy's server edge (it matches every request)"
    seen = Facts(host="n1", live_routes={key: backend}, live_modes={key: "l7"}, live_shadowed={key: shadow})
    [act] = routes_diff(host, seen, applied)
    assert (act.kind, act.subject) == ("update", f"route {key}")
    assert act.before == {"listener": 443, "mode": "l7", "service": "web", "backend": backend, "shadowed_by": shadow}
    assert act.reason == f"drift: {shadow} takes its requests first, so the route is never reached: apply puts " \
                         "mcfleet's route before it"  # fmt: skip
    assert routes_diff(host, replace_shadow(seen, {}), applied) == []
    assert routes_diff(host, replace_shadow(seen, None), applied) == []  # not asked


def replace_shadow(facts: Facts, shadowed: dict[str, str] | None) -> Facts:
    return facts.model_copy(update={"live_shadowed": shadowed})


def test_a_tls_route_on_a_listener_caddy_has_no_server_for_is_refused_by_the_plan() -> None:
    """Adding it fails at apply (`_server_for`), so the plan refuses it with Caddy's words and the server to
    add, whether the route is new or was applied before the server went away; an l4 route is HAProxy's."""
    key, backend = f"8443/{NAME}", "127.0.0.1:20080"
    route = DesiredRoute(hostname=NAME, mode="l7", service="web", service_host="n1", backend=backend, listener=8443)
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    host = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, routes={key: route})
    why = "Caddy has no server for listener 8443 (looked for 'edge-8443'; it has edge)"
    hint = "add a server 'edge-8443' listening on port 8443 to Caddy's config, or use another listener"
    seen = Facts(host="n1", live_routes={}, listeners_missing={"8443": [why, hint]})
    applied = Manifest(routes=[ManifestRoute(hostname=NAME, listener=8443, mode="l7", service="web", backend=backend)])
    for manifest in (Manifest(), applied):
        [act] = routes_diff(host, seen, manifest)
        assert (act.kind, act.subject, act.reason, act.hint) == (
            "refuse", f"route {key}", f"{why}: apply could not add the route", hint)  # fmt: skip
    assert [a.kind for a in routes_diff(host, seen.model_copy(update={"listeners_missing": {}}), Manifest())] == [
        "create"
    ]
    l4 = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent,
                     routes={key: DesiredRoute(NAME, "l4", "web", "n1", backend, 8443)})  # fmt: skip
    assert [a.kind for a in routes_diff(l4, seen, Manifest())] == ["create"]


def test_a_caddy_without_config_reads_as_no_routes_and_no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Caddy started without a config answers `null` for /config/apps (and 400 for any path below it): the
    read finds no route, and each TLS listener is named as missing its server (the plan's refusal)."""
    admin = CaddyRoutes(CaddyProvider(kind="caddy", admin_url="http://127.0.0.1:1", server="edge"))
    answers = {"/config/apps": None}
    monkeypatch.setattr(admin, "_call", lambda method, path, body=None: answers[path])
    assert asyncio.run(admin.list_routes()) == {}
    assert asyncio.run(admin.missing_servers([443])) == {
        443: ("Caddy has no server for listener 443 (looked for 'edge-443'; it has none)",
              "add a server 'edge-443' listening on port 443 to Caddy's config, or use another listener")
    }  # fmt: skip
    answers["/config/apps"] = {"http": {"servers": {"edge": {"routes": "not a list"}}}, "tls": []}
    assert asyncio.run(admin.list_routes()) == {} and admin.servers_read == ["edge"]
