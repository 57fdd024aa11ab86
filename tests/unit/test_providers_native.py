"""The seed-native backends (MCNS, Metacrypt, mc-proxy) against their contract fakes.

Every secret file holds a poison value; no error text may carry it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.models import McnsProvider, MetacryptProvider
from mcfleet.kinds.providers import DnsKind, add_provider_dns
from mcfleet.observe.dns import ZoneAnswers
from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import Manifest
from mcfleet.observe.plan_notes import one_plan
from mcfleet.providers.base import ProviderError
from mcfleet.providers.cert.base import cert_info, new_key_and_csr
from mcfleet.providers.cert.metacrypt import MetacryptCert
from mcfleet.providers.dns.mcns import McnsDns
from mcfleet.providers.route.base import ProxyRoute
from mcfleet.providers.route.mcproxy import McProxyRoutes
from tests.contract_fakes.mcns import run_mcns
from tests.contract_fakes.mcproxy import start_mcproxy
from tests.contract_fakes.metacrypt import run_metacrypt
from tests.json_server import serve_json
from tests.unit.test_plan_cases import CASES, case_facts, write_case_fleet

ZONE = "svc.mcp.example.test"
POISON = "POISON-7f3a9c-secret-never-printed"


def _token(tmp_path: Path, value: str = POISON) -> str:
    path = tmp_path / "mcias-token"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def test_mcns_creates_updates_and_deletes_a_records_with_the_token(tmp_path: Path) -> None:
    with run_mcns(ZONE, POISON) as (url, state):
        dns = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
        name = f"web.{ZONE}"
        asyncio.run(dns.set_a(name, "10.0.0.5"))
        assert asyncio.run(dns.answers([name])) == {name: ["10.0.0.5"]}
        asyncio.run(dns.set_a(name, "10.0.0.5"))  # converged: no write
        assert [c for c in state.calls if not c.startswith("GET")] == [f"POST /v1/zones/{ZONE}/records"]
        asyncio.run(dns.set_a(name, "10.0.0.6"))
        assert asyncio.run(dns.answers([name])) == {name: ["10.0.0.6"]}
        assert sum(c.startswith("PUT") for c in state.calls) == 1
        assert asyncio.run(dns.answers_full([name])) == ZoneAnswers({name: ["10.0.0.6"]}, {name: dns.ttl})
        dns.ttl = 900  # providers.dns.ttl changed: the same address is written again with it
        asyncio.run(dns.set_a(name, "10.0.0.6"))
        assert asyncio.run(dns.answers_full([name])) == ZoneAnswers({name: ["10.0.0.6"]}, {name: 900})
        asyncio.run(dns.delete_a(name))
        assert asyncio.run(dns.answers_full([name])) == ZoneAnswers({name: []})
        assert state.serial == 5  # create, update, TTL update, delete each bumped it


def test_mcns_refuses_a_wrong_token_and_a_name_outside_the_zone(tmp_path: Path) -> None:
    with run_mcns(ZONE, "the-right-token") as (url, _state):
        dns = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
        with pytest.raises(ProviderError) as wrong:
            asyncio.run(dns.answers([f"web.{ZONE}"]))
        assert "MCNS answered 403" in wrong.value.message
        assert POISON not in wrong.value.message + (wrong.value.hint or "")
    with run_mcns(ZONE, POISON) as (url, state):
        # the fake itself refuses a foreign name (the backend refuses it before sending, too)
        import json
        import urllib.request

        req = urllib.request.Request(
            f"{url}/v1/zones/{ZONE}/records",
            data=json.dumps({"name": "evil.example.org", "type": "A", "value": "10.6.6.6"}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {POISON}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403
        refused.value.close()
        unauth = urllib.request.Request(f"{url}/v1/zones/{ZONE}/records")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(unauth, timeout=5)
        assert missing.value.code == 401
        missing.value.close()
        assert state.records == {}


def test_mcns_token_check_before_a_plan_lists_record_changes(tmp_path: Path) -> None:
    """What the plan asks before it lists record changes: does MCNS take the token?"""
    with run_mcns(ZONE, POISON) as (url, state):
        assert (
            asyncio.run(McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE).key_refusal())
            is None
        )
    with run_mcns(ZONE, "the-right-token") as (url, state):
        wrong = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
        refused = asyncio.run(wrong.key_refusal())
        assert refused is not None and refused.message.startswith("MCNS rejects the MCIAS token of token_file")
        assert "403" in refused.message and POISON not in refused.message + (refused.hint or "")
        missing = McnsDns(McnsProvider(kind="mcns", url=url, token_file=str(tmp_path / "nope")), ZONE)
        refused = asyncio.run(missing.key_refusal())
        assert refused is not None and str(tmp_path / "nope") in refused.message
        assert state.records == {}
    # MCNS down: not the token's fault (the plan's read of the records says it did not answer)
    assert (
        asyncio.run(McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE).key_refusal())
        is None
    )


def test_mcns_token_check_after_the_plans_read_asks_nothing_more(tmp_path: Path) -> None:
    """A plan reads the zone's records, then checks the token before it lists record changes: that check is
    the same GET with the same token, so the read answers for it, once; another token is asked again."""
    with run_mcns(ZONE, POISON) as (url, state), one_plan():
        dns = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
        asyncio.run(dns.answers_full([f"web.{ZONE}"]))
        asked = len(state.calls)
        assert asyncio.run(dns.key_refusal()) is None
        assert len(state.calls) == asked  # not asked again
        assert asyncio.run(dns.key_refusal()) is None
        assert len(state.calls) == asked + 1  # the next check asks
        other = tmp_path / "other"
        other.write_text("another-token")
        other.chmod(0o600)
        wrong = McnsDns(McnsProvider(kind="mcns", url=url, token_file=str(other)), ZONE)
        refused = asyncio.run(wrong.key_refusal())
        assert refused is not None and "403" in refused.message


def test_mcns_read_outside_a_plan_or_in_an_earlier_one_answers_for_no_check(tmp_path: Path) -> None:
    """What a read learned is one plan's: a check after the plan is over (the token may have been revoked
    since), or made by a caller that is not planning, asks MCNS (was: any later check in the process took
    a note an earlier read left)."""
    with run_mcns(ZONE, POISON) as (url, state):
        dns = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
        with one_plan():
            asyncio.run(dns.answers_full([f"web.{ZONE}"]))  # a plan with no record changes: no check
        asked = len(state.calls)
        assert asyncio.run(dns.key_refusal()) is None
        assert len(state.calls) == asked + 1  # the plan is over: asked
        asyncio.run(dns.answers_full([f"web.{ZONE}"]))  # not planning
        with one_plan():
            assert asyncio.run(dns.key_refusal()) is None
        assert len(state.calls) == asked + 3  # asked


def test_mcns_token_check_after_a_read_that_got_no_answer_does_not_wait_again(tmp_path: Path) -> None:
    """A MCNS that drops every connection (or never answers): the plan's read already failed, and the check
    would only find the same (not the token's fault), after a second wait.  It asks nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[int] = []

    def drop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    try:
        dns = McnsDns(McnsProvider(kind="mcns", url=f"http://127.0.0.1:{server.getsockname()[1]}",
                                   token_file=_token(tmp_path)), ZONE)  # fmt: skip
        with one_plan():
            with pytest.raises(ProviderError, match="dropped the connection"):
                asyncio.run(dns.answers_full([f"web.{ZONE}"]))
            asked = len(accepted)
            assert asked >= 1
            assert asyncio.run(dns.key_refusal()) is None
            assert len(accepted) == asked  # not asked again
    finally:
        server.close()


def test_mcns_down_is_an_error_with_what_to_do(tmp_path: Path) -> None:
    with run_mcns(ZONE, POISON) as (url, _state):
        pass  # stopped: nothing listens on the port any more
    dns = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
    with pytest.raises(ProviderError) as down:
        asyncio.run(dns.set_a(f"web.{ZONE}", "10.0.0.5"))
    assert "unreachable" in down.value.message and "re-run apply" in (down.value.hint or "")


def test_missing_token_file_names_the_file_not_a_value(tmp_path: Path) -> None:
    dns = McnsDns(McnsProvider(kind="mcns", url="http://127.0.0.1:9", token_file=str(tmp_path / "nope")), ZONE)
    with pytest.raises(ProviderError) as missing:
        asyncio.run(dns.answers([f"web.{ZONE}"]))
    assert str(tmp_path / "nope") in missing.value.message


def test_metacrypt_issues_one_cert_per_hostname_with_the_token(tmp_path: Path) -> None:
    with run_metacrypt(POISON, (f".{ZONE}",), ("docs.example.test",)) as (url, state):
        cert = MetacryptCert(MetacryptProvider(kind="metacrypt", url=url, token_file=_token(tmp_path)))
        pair = new_key_and_csr(f"web.{ZONE}")
        chain = asyncio.run(cert.issue(f"web.{ZONE}", pair.csr_pem))
        info = cert_info(chain)
        assert info.sans == (f"web.{ZONE}",)
        assert 88 <= info.days_left(datetime.now(UTC)) <= 90 and not info.needs_renewal()
        assert "PRIVATE KEY" not in repr(pair) and state.issued == [f"web.{ZONE}"]
        with pytest.raises(ProviderError) as policy:
            asyncio.run(cert.issue("evil.example.org", new_key_and_csr("evil.example.org").csr_pem))
        assert "policy does not allow" in policy.value.message
    with run_metacrypt("other", (f".{ZONE}",)) as (url, _state):
        cert = MetacryptCert(MetacryptProvider(kind="metacrypt", url=url, token_file=_token(tmp_path)))
        with pytest.raises(ProviderError) as denied:
            asyncio.run(cert.issue(f"web.{ZONE}", new_key_and_csr(f"web.{ZONE}").csr_pem))
        assert "403" in denied.value.message and POISON not in denied.value.message


def test_no_wildcard_key_is_made() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        new_key_and_csr(f"*.{ZONE}")


def test_mcproxy_addroute_is_an_upsert_and_routes_round_trip(tmp_path: Path) -> None:
    sock = str(tmp_path / "mc-proxy.sock")

    async def scenario() -> None:
        server, state = await start_mcproxy(sock)
        try:
            proxy = McProxyRoutes(sock, "/srv/mc-proxy/mc-proxy.sock")
            web = ProxyRoute(443, "mcr.svc", "10.0.0.1:28080", "l7", "/srv/mc-proxy/certs/mcr.pem",
                             "/srv/mc-proxy/certs/mcr.key")  # fmt: skip
            api = ProxyRoute(8443, "mcr.svc", "10.0.0.1:28443", "l4")
            for route in (web, api, web):
                await proxy.add_route(route)
            live = await proxy.list_routes()
            assert state.calls.count("AddRoute 443/mcr.svc") == 2 and len(state.routes) == 2
            assert live == {"443/mcr.svc": web, "8443/mcr.svc": api}  # three hostname routes, one per listener
            moved = ProxyRoute(8443, "mcr.svc", "10.0.0.1:28444", "l4")
            await proxy.add_route(moved)
            assert (await proxy.list_routes())["8443/mcr.svc"].backend == "10.0.0.1:28444"
            await proxy.remove_route(443, "mcr.svc")
            await proxy.remove_route(443, "mcr.svc")  # idempotent
            assert set(await proxy.list_routes()) == {"8443/mcr.svc"}
            with pytest.raises(ProviderError, match="needs tls_cert"):
                await proxy.add_route(ProxyRoute(443, "x.svc", "10.0.0.1:1", "l7"))
        finally:
            await server.stop(None)
        with pytest.raises(ProviderError) as down:
            await McProxyRoutes(sock, "/srv/mc-proxy/mc-proxy.sock").list_routes()
        assert "unreachable" in down.value.message and "start mc-proxy" in (down.value.hint or "")

    asyncio.run(scenario())


def test_mcns_reports_a_cname_at_a_service_name_which_the_plan_refuses(tmp_path: Path) -> None:
    """MCNS enforces CNAME exclusivity: an A record cannot be added where another hand put a CNAME.  The
    plan's read of the records names it (apply would fail on it), and the DNS kind refuses the name."""
    web, hello = f"web.{ZONE}", f"hello.{ZONE}"  # web: in-sync.json's service
    with run_mcns(ZONE, POISON) as (url, _state):
        provider = McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path))
        dns = McnsDns(provider, ZONE)
        asyncio.run(dns.set_a(hello, "10.0.0.7"))
        dns._call("POST", body={"name": web, "type": "CNAME", "value": f"{hello}.", "ttl": 60})
        assert asyncio.run(dns.answers_full([web, hello])) == ZoneAnswers({web: [], hello: ["10.0.0.7"]},
                                                                          {hello: dns.ttl}, {web: hello})  # fmt: skip
        with pytest.raises(ProviderError, match="CNAME exclusivity"):
            asyncio.run(dns.set_a(web, "10.0.0.8"))  # what apply would meet

        case = json.loads((CASES / "in-sync.json").read_text())
        case["fleet"] = {"providers": {"dns": provider.model_dump(mode="json", exclude_none=True)}}
        case["facts"]["rift"]["manifest"]["dns"] = []
        loaded = write_case_fleet(tmp_path / "fleet", case)
        desired = desired_state(loaded)
        facts = asyncio.run(add_provider_dns(loaded, desired, case_facts(loaded, case)))
        seen = facts["rift"]
        assert isinstance(seen, Facts) and seen.dns_alias == {web: hello}
        acts = DnsKind().diff(desired["rift"], seen, seen.manifest or Manifest(), now=datetime.now(UTC))
        assert [(a.kind, a.subject) for a in acts] == [("refuse", f"dns {web}")]
        assert f"holds a CNAME for it (to {hello})" in acts[0].reason


def test_mcns_answer_without_a_record_list_is_not_an_empty_zone(tmp_path: Path) -> None:
    """200 with an object that holds no `records` (an error body, another API at that URL) is not the zone's
    list: read as empty, it would have planned every record as to create."""
    with serve_json(lambda _path: {"error": "maintenance"}) as url:
        dns = McnsDns(McnsProvider(kind="mcns", url=url, token_file=_token(tmp_path)), ZONE)
        with pytest.raises(ProviderError, match="MCNS answered an unexpected record list"):
            asyncio.run(dns.answers_full([f"web.{ZONE}"]))
