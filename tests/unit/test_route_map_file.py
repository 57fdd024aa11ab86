"""HAProxy's map file against the running HAProxy: the facts script reads the file (never through a link),
and the plan lists a route the file lacks or sends elsewhere (lost at HAProxy's next start) and a line
only the file holds (back at the next start); apply writes the file from the running map."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from mcfleet.fleet.desired import DesiredAgent, DesiredHost, DesiredRoute
from mcfleet.kinds.providers import routes_diff
from mcfleet.observe.facts import Facts, RouteMapFacts
from mcfleet.observe.manifest import Manifest, ManifestRoute
from mcfleet.observe.parse import parse_facts, parse_route_map
from mcfleet.observe.script import ScriptInputs, facts_script
from mcfleet.transport.local import LocalNode

SNI = "sni.example.test"
KEY = f"8443/{SNI}"
BACKEND = "127.0.0.1:45056"
MAP = "/srv/mc-proxy/sni.map"


def _read(route_map: str) -> RouteMapFacts | None:
    inp = ScriptInputs(users=("root",), uids=(0,), gids=(0,), agent_path="/nonexistent/agent",
                       agent_unit="none.service", route_map=route_map)  # fmt: skip
    result = asyncio.run(LocalNode().run(facts_script(inp), timeout=30))
    assert result.exit_status == 0, result.stderr
    return parse_facts("local", result.stdout, agent_path=inp.agent_path, route_map=route_map).route_map


def test_the_facts_script_reads_the_map_file_as_haproxy_does_and_never_through_a_link(tmp_path: Path) -> None:
    saved = tmp_path / "sni.map"
    saved.write_text(f"# written by mcfleet\n\n{KEY} {BACKEND}\n8443/old.example.test   10.0.0.9:443 \n")
    assert _read(str(saved)) == RouteMapFacts(
        path=str(saved), entries={KEY: BACKEND, "8443/old.example.test": "10.0.0.9:443"}
    )
    assert _read(str(tmp_path / "none.map")) == RouteMapFacts(path=str(tmp_path / "none.map"), missing=True)
    secret = tmp_path / "secret"
    secret.write_text("root-only 1\n")
    os.symlink(secret, tmp_path / "link.map")
    assert _read(str(tmp_path / "link.map")) == RouteMapFacts(path=str(tmp_path / "link.map"), missing=True)
    linked = tmp_path / "proxy"
    linked.symlink_to(tmp_path)  # a folder on the way that the proxy's account swapped for a link
    assert _read(str(linked / "sni.map")) == RouteMapFacts(path=str(linked / "sni.map"), missing=True)
    assert _read("") is None  # not asked: no judgement


def test_the_probes_answer_is_parsed_line_by_line() -> None:
    assert parse_route_map("absent\n", MAP) is None
    assert parse_route_map("missing\n", MAP) == RouteMapFacts(path=MAP, missing=True)
    assert parse_route_map("map\n", MAP) == RouteMapFacts(path=MAP)
    tabbed = RouteMapFacts(path=MAP, entries={KEY: BACKEND})  # blanks of any kind between key and value
    assert parse_route_map(f"map\n  {KEY}\t{BACKEND}\n#x y\n   \n", MAP) == tabbed
    assert parse_route_map(f"map\n{KEY} {BACKEND}\n", MAP) == RouteMapFacts(path=MAP, entries={KEY: BACKEND})


def _host() -> DesiredHost:
    route = DesiredRoute(hostname=SNI, mode="l4", service="sni", service_host="n1", backend=BACKEND, listener=8443)
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    return DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, routes={KEY: route})


def _plan(entries: dict[str, str] | None, *, missing: bool = False, live: str | None = BACKEND) -> list[str]:
    saved = None if entries is None else RouteMapFacts(path=MAP, missing=missing, entries=entries)
    facts = Facts(host="n1", live_routes={KEY: live} if live else {}, route_map=saved)
    applied = Manifest(routes=[ManifestRoute(hostname=SNI, listener=8443, mode="l4", service="sni", backend=BACKEND)])
    return [f"{a.kind} {a.subject}: {a.reason}" for a in routes_diff(_host(), facts, applied)]


def test_a_map_file_behind_the_running_haproxy_is_a_change_to_the_route() -> None:
    assert _plan({KEY: BACKEND}) == []
    assert _plan(None) == []  # not read: nothing judged
    running = f"(the running one sends it to {BACKEND})"
    assert _plan({}) == [f"update route {KEY}: drift: HAProxy's map file {MAP} lacks it: a restarted HAProxy "
                         f"would not serve it {running}"]  # fmt: skip
    assert _plan({}, missing=True) == [f"update route {KEY}: drift: HAProxy's map file {MAP} is missing or no "
                                       f"plain file: a restarted HAProxy would not serve it {running}"]  # fmt: skip
    assert _plan({KEY: "10.0.0.9:443"}) == [f"update route {KEY}: drift: HAProxy's map file {MAP} sends it to "
                                            f"10.0.0.9:443: a restarted HAProxy would {running}"]  # fmt: skip
    # the running HAProxy lacks it too: one change (the live drift), which writes the file as well
    [live] = _plan({}, live=None)
    assert live == f"update route {KEY}: drift: the proxy serves no route for it"


def test_a_line_only_the_map_file_holds_is_deleted_unless_the_running_haproxy_serves_it() -> None:
    stale = "8443/old.example.test"
    assert _plan({KEY: BACKEND, stale: "10.0.0.9:443"}) == [
        f"delete route {stale}: drift: only HAProxy's map file {MAP} holds it: a restarted HAProxy would serve "
        "it again (the running one does not)"
    ]  # fmt: skip
    facts = Facts(host="n1", live_routes={KEY: BACKEND, stale: "10.0.0.9:443"},
                  route_map=RouteMapFacts(path=MAP, entries={KEY: BACKEND, stale: "10.0.0.9:443"}))  # fmt: skip
    theirs = routes_diff(_host(), facts, Manifest(routes=[]))  # another hand's route, in both: left alone
    assert [a.subject for a in theirs] == [f"route {KEY}"]  # (sni itself: not recorded yet, so created)
    # a route the files no longer declare: its removal alone, not a second delete for the file
    gone = replace(_host(), routes={})
    recorded = Manifest(routes=[ManifestRoute(hostname=SNI, listener=8443, mode="l4", backend=BACKEND)])
    only_file = Facts(host="n1", live_routes={}, route_map=RouteMapFacts(path=MAP, entries={KEY: BACKEND}))
    assert [(a.kind, a.reason) for a in routes_diff(gone, only_file, recorded)] == [
        ("delete", "no longer declared in the files")
    ]


def test_a_route_served_in_the_other_mode_is_a_change_even_at_the_same_backend() -> None:
    """The files say l7 (Caddy ends TLS); HAProxy's map, which comes first, still passes the name through
    to the same address (an apply before this fix moved the route and left the l4 entry): the l7 route is
    never reached, so the plan lists it, with the mode apply moves it from."""
    l7 = replace(_host().routes[KEY], mode="l7")
    host = replace(_host(), routes={KEY: l7})
    applied = Manifest(routes=[ManifestRoute(hostname=SNI, listener=8443, mode="l7", service="sni", backend=BACKEND)])
    passing = Facts(host="n1", live_routes={KEY: BACKEND}, live_modes={KEY: "l4"})
    [act] = routes_diff(host, passing, applied)
    assert (act.kind, act.subject) == ("update", f"route {KEY}")
    assert act.before == {"listener": 8443, "mode": "l4", "service": "sni", "backend": BACKEND}
    assert act.reason == ("drift: the proxy serves it as l4 (HAProxy's map passes TLS through before Caddy sees it), "
                          "the files say l7")  # fmt: skip
    ending = Facts(host="n1", live_routes={KEY: BACKEND}, live_modes={KEY: "l7"})
    assert routes_diff(host, ending, applied) == []
    reencrypt = replace(host, routes={KEY: replace(l7, mode="reencrypt")})  # ended by Caddy too: the same side
    assert (
        routes_diff(
            reencrypt,
            ending,
            applied.model_copy(
                update={
                    "routes": [
                        ManifestRoute(hostname=SNI, listener=8443, mode="reencrypt", service="sni", backend=BACKEND)
                    ]
                }
            ),
        )
        == []
    )


def test_a_route_sent_elsewhere_shows_the_backend_and_one_missing_shows_it_unserved() -> None:
    """What the plan shows for live-route drift: the backend that changes, and `served: false → true` only when
    the proxy holds no route for the name (a route sent elsewhere is served, so that line would say nothing)."""
    applied = Manifest(routes=[ManifestRoute(hostname=SNI, listener=8443, mode="l4", service="sni", backend=BACKEND)])

    def change(live: dict[str, str]) -> list[tuple[str, object, object]]:
        [act] = routes_diff(_host(), Facts(host="n1", live_routes=live), applied)
        before, after = act.before or {}, act.after or {}
        return [
            (k, before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)
        ]

    assert change({KEY: "10.0.0.9:443"}) == [("backend", "10.0.0.9:443", BACKEND)]
    assert change({}) == [("backend", None, BACKEND), ("served", False, True)]
