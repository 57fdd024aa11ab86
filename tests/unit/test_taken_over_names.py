"""The DNS and route kinds' plans when the server or proxy already holds a name the fleet declares."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from mcfleet.fleet.desired import DesiredAgent, DesiredHost, DesiredRecord
from mcfleet.kinds.providers import dns_diff
from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import Manifest, ManifestRecord

NAME = "web.svc.example.test"


def _host() -> DesiredHost:
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    return DesiredHost(name="n1", os="debian", arch="amd64", agent=agent,
                       records={NAME: DesiredRecord(NAME, "10.0.0.5")})  # fmt: skip


def test_a_record_another_hand_made_is_replaced_visibly_and_one_apply_wrote_says_it_drifted() -> None:
    facts = Facts(host="n1", dns={NAME: ["10.0.0.9"]})
    [theirs] = dns_diff(_host(), facts, Manifest())
    assert (theirs.kind, theirs.before) == ("update", {"type": "A", "value": "10.0.0.9"})
    assert theirs.reason == "the server answers 10.0.0.9, a record mcfleet did not make: apply replaces it"
    ours = Manifest(dns=[ManifestRecord(name=NAME, value="10.0.0.5")])
    [drifted] = dns_diff(_host(), facts, ours)
    assert drifted.reason == "the server answers 10.0.0.9: changed since apply wrote it"
    assert dns_diff(_host(), Facts(host="n1", dns={NAME: ["10.0.0.5"]}), Manifest()) == []
    # the files moved the name (a service made public: to the edge) while the server holds what apply wrote
    moved = Manifest(dns=[ManifestRecord(name=NAME, value="10.0.0.9")])
    [changed] = dns_diff(_host(), facts, moved)
    assert (changed.reason, changed.before, changed.after) == (
        "the address changed", {"type": "A", "value": "10.0.0.9"}, {"type": "A", "value": "10.0.0.5"}
    )  # fmt: skip
    [missing] = dns_diff(_host(), Facts(host="n1", dns={NAME: []}), ours)
    assert (missing.kind, missing.reason) == ("create", "no A record at the authoritative server")


def test_a_route_the_proxy_serves_that_mcfleet_did_not_make_is_named_in_the_create() -> None:
    from dataclasses import replace

    from mcfleet.fleet.desired import DesiredRoute
    from mcfleet.kinds.providers import routes_diff

    route = DesiredRoute(hostname=NAME, mode="l7", service="web", service_host="n1", backend="10.0.0.5:20001")
    host = replace(_host(), routes={route.key: route})
    [theirs] = routes_diff(host, Facts(host="n1", live_routes={route.key: "10.0.0.9:80"}), Manifest())
    assert (theirs.kind, theirs.before) == ("create", {"backend": "10.0.0.9:80"})
    assert theirs.reason == ("declared in the files; the proxy already sends it to 10.0.0.9:80, a route mcfleet "
                             "did not make: apply replaces it")  # fmt: skip
    [fresh] = routes_diff(host, Facts(host="n1", live_routes={}), Manifest())
    assert (fresh.reason, fresh.before) == ("declared in the files", None)
    [by_name] = routes_diff(host, Facts(host="n1", routes=[NAME]), Manifest())  # a proxy read by hostname
    assert by_name.reason.endswith("; the proxy already serves it, a route mcfleet did not make: apply replaces it")


def test_a_change_the_peer_did_not_confirm_is_recorded_unknown_and_sent_again_or_removed() -> None:
    """A DNS update or a route that got no answer (a hung server may still carry it out) is recorded with
    the value "?" from the step's `unsure`: the next plan sends it again when the server cannot be read,
    follows the server when it can, and removes it once it is no longer declared (was: not recorded, so a
    record the server took late outlived its service)."""
    from dataclasses import replace

    from mcfleet.fleet.desired import DesiredRoute
    from mcfleet.kinds.base import MADE
    from mcfleet.kinds.providers import _outcome, record_dns, record_routes, routes_diff
    from mcfleet.observe.manifest import NO_ANSWER, ManifestRoute
    from mcfleet.phase import Phase
    from mcfleet.providers.steps import StepOutcome

    route = DesiredRoute(hostname=NAME, mode="l7", service="web", service_host="n1", backend="10.0.0.5:20001")
    host = replace(_host(), routes={route.key: route})
    ctx: Any = SimpleNamespace(desired=host, data={})  # what _outcome reads of the apply's context
    _outcome(StepOutcome("failed", "refused"), ctx, Phase.dns, "records")  # nothing put in place
    assert Phase.dns not in ctx.data.get(MADE, {})  # so the record after the failure says no "part of dns"
    _outcome(StepOutcome("failed", "no answer", made={NAME}, unsure={NAME}), ctx, Phase.dns, "records")
    _outcome(StepOutcome("failed", "no answer", made={route.key}, unsure={route.key}), ctx, Phase.route, "routes")
    assert record_dns(ctx.data[MADE][Phase.dns]) == [ManifestRecord(name=NAME, value=NO_ANSWER)]
    [recorded_route] = record_routes(ctx.data[MADE][Phase.route])
    assert recorded_route.backend == NO_ANSWER

    unsure = Manifest(dns=[ManifestRecord(name=NAME, value=NO_ANSWER)])
    [again] = dns_diff(_host(), Facts(host="n1"), unsure)  # the server not read
    assert (again.kind, again.reason) == ("update", "the server did not confirm an earlier apply's change: sent again")
    assert dns_diff(_host(), Facts(host="n1", dns={NAME: ["10.0.0.5"]}), unsure) == []  # it did take it
    [gone] = dns_diff(replace(_host(), records={}), Facts(host="n1"), unsure)
    assert (gone.kind, gone.subject) == ("delete", f"dns {NAME}")
    routed = Manifest(routes=[ManifestRoute(hostname=NAME, mode="l7", service="web", backend=NO_ANSWER)])
    [resent] = routes_diff(host, Facts(host="n1"), routed)
    assert resent.reason == "the proxy did not confirm an earlier apply's change: sent again"


def test_a_record_held_with_another_ttl_than_the_providers_is_changed() -> None:
    """providers.dns.ttl changed: the server holds every record with the old TTL; the plan lists each
    (apply writes it again with the new TTL), and once the server holds the fleet's TTL, nothing."""
    ttl_host = replace(_host(), records={NAME: DesiredRecord(NAME, "10.0.0.5", ttl=120)})
    [changed] = dns_diff(ttl_host, Facts(host="n1", dns={NAME: ["10.0.0.5"]}, dns_ttl={NAME: 60}), Manifest())
    assert (changed.kind, changed.reason) == ("update", "the server holds it with TTL 60 s, the fleet's is 120 s")
    assert (changed.before["ttl"], changed.after["ttl"]) == (60, 120)
    assert dns_diff(ttl_host, Facts(host="n1", dns={NAME: ["10.0.0.5"]}, dns_ttl={NAME: 120}), Manifest()) == []
    assert dns_diff(ttl_host, Facts(host="n1", dns={NAME: ["10.0.0.5"]}), Manifest()) == []  # TTL not read
    # a wrong address and a wrong TTL: one change, for the address (apply writes both)
    [moved] = dns_diff(ttl_host, Facts(host="n1", dns={NAME: ["10.0.0.9"]}, dns_ttl={NAME: 60}), Manifest())
    assert moved.after == {"type": "A", "value": "10.0.0.5"}


def test_a_name_the_server_holds_as_a_cname_is_refused_with_what_to_do() -> None:
    """A CNAME's answer carries its target's A records: they are not the name's, and an A record cannot be
    added beside a CNAME (the server ignores it, so apply's check would fail with "answers nothing")."""
    facts = Facts(host="n1", dns={NAME: []}, dns_alias={NAME: "elsewhere.example.test"})
    [refused] = dns_diff(_host(), facts, Manifest())
    assert (refused.kind, refused.subject, refused.before) == (
        "refuse", f"dns {NAME}", {"type": "CNAME", "value": "elsewhere.example.test"}
    )  # fmt: skip
    assert refused.reason == (
        "the DNS server holds a CNAME for it (to elsewhere.example.test), and an A record cannot sit beside "
        "one: remove the CNAME at the server, then plan again"
    )
    ours = Manifest(dns=[ManifestRecord(name=NAME, value="10.0.0.5")])  # even a name apply once wrote
    assert [a.kind for a in dns_diff(_host(), facts, ours)] == ["refuse"]


def test_an_aaaa_record_leading_elsewhere_rides_with_the_a_records_change() -> None:
    """The AAAA values that are no IPv6 address of the host (host.json) go in the action's `before`, which
    apply's step removes: with an A change, a TTL change, or alone; none when the server was not read."""
    stray = {NAME: ["2001:db8::66"]}
    [moved] = dns_diff(_host(), Facts(host="n1", dns={NAME: ["10.0.0.9"]}, dns_v6=stray), Manifest())
    assert moved.before == {"type": "A", "value": "10.0.0.9", "aaaa": ["2001:db8::66"]}
    assert moved.reason.endswith("; the server also holds AAAA 2001:db8::66 at it, which IPv6 clients reach "
                                 "instead (no address of its host in host.json): apply removes it")  # fmt: skip
    [created] = dns_diff(_host(), Facts(host="n1", dns={NAME: []}, dns_v6=stray), Manifest())
    assert (created.kind, created.before) == ("create", {"aaaa": ["2001:db8::66"]})
    host = _host()
    host.records[NAME] = replace(host.records[NAME], ttl=60)
    [ttl] = dns_diff(host, Facts(host="n1", dns={NAME: ["10.0.0.5"]}, dns_ttl={NAME: 300}, dns_v6=stray), Manifest())
    assert ttl.before == {"type": "A", "value": "10.0.0.5", "ttl": 300, "aaaa": ["2001:db8::66"]}
    own = replace(host.records[NAME], v6=("2001:db8:0:0::66",))  # the host's own, written another way
    host.records[NAME] = replace(own, ttl=None)
    assert dns_diff(host, Facts(host="n1", dns={NAME: ["10.0.0.5"]}, dns_v6=stray), Manifest()) == []
    assert (
        dns_diff(_host(), Facts(host="n1", dns_v6=stray), Manifest(dns=[ManifestRecord(name=NAME, value="10.0.0.5")]))
        == []
    )


def test_a_records_v6_are_the_ipv6_addresses_of_the_host_it_leads_to(tmp_path: Any) -> None:
    import json

    from mcfleet.fleet.desired import desired_state
    from tests.unit.test_plan_cases import CASES, write_case_fleet

    case = json.loads((CASES / "in-sync.json").read_text())
    [host] = case["hosts"]
    case["hosts"][host]["host"] = {"addresses": ["10.0.0.10", "2001:DB8::a", "fe80::1"]}
    desired = desired_state(write_case_fleet(tmp_path, case))[host]
    assert {r.v6 for r in desired.records.values()} == {("2001:db8::a", "fe80::1")}
