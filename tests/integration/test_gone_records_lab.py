"""The records a host gone from hosts/ left at the DNS server (Knot, RFC 2136 + TSIG): a plan of the whole
fleet lists, as that host's removals, exactly those the server still answers with the noted address,
inside the zone; a plan of some hosts, a plan without the dns kind and a server that does not answer
list none; a key the server rejects makes them refusals; apply's step removes them at the server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Rfc2136Provider
from mcfleet.kinds import KINDS
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.plan.gone_records import gone_record_actions, with_gone_records
from mcfleet.plan.model import GoneHost, Plan
from mcfleet.providers.dns.rfc2136 import Rfc2136Dns
from mcfleet.providers.steps import apply_dns
from tests.unit.test_plan_cases import write_case_fleet

pytestmark = pytest.mark.lab


def _fleet(root: Path, knot: KnotInfo, **dns: Any) -> LoadedFleet:
    provider = {"kind": "rfc2136", "server": knot.server, "port": knot.port, "key_name": knot.key_name,
                "key_file": knot.key_file, **dns}  # fmt: skip
    return write_case_fleet(root, {"fleet": {"zone": knot.zone, "providers": {"dns": provider}},
                                   "hosts": {"keep": {}, "edge": {}}})  # fmt: skip


def _removals(loaded: LoadedFleet, plan: Plan, names: list[str], kinds: Any = KINDS) -> Plan:
    return asyncio.run(with_gone_records(loaded, plan, names, kinds))


def test_a_gone_hosts_records_the_server_still_holds_are_removed_by_a_plan_of_the_whole_fleet(
    knot: KnotInfo, tmp_path: Path
) -> None:
    zone = knot.zone
    loaded = _fleet(tmp_path / "fleet", knot)
    server = Rfc2136Dns(Rfc2136Provider(kind="rfc2136", server=knot.server, port=knot.port, key_name=knot.key_name,
                                        key_file=knot.key_file), zone)  # fmt: skip
    left, changed, missing = f"goneleft.{zone}", f"gonechanged.{zone}", f"gonemissing.{zone}"
    asyncio.run(server.set_a(left, "10.9.0.1"))
    asyncio.run(server.set_a(changed, "10.9.0.99"))  # another hand pointed it elsewhere since: not ours now
    asyncio.run(server.delete_a(missing))
    noted = [f"{left} A 10.9.0.1", f"{changed} A 10.9.0.2", f"{missing} A 10.9.0.3", "www.example.org A 10.9.0.4"]
    plan = Plan(hosts=["keep", "edge"], gone={"olde": GoneHost(services=["web"], records=noted)})

    whole = _removals(loaded, plan, ["keep", "edge"])
    assert [(a.host, a.phase, a.kind, a.subject) for a in gone_record_actions(whole)] == [
        ("olde", "dns", "delete", f"dns {left}")
    ]
    assert whole.counts()["delete"] == 1 and whole.gone_unknown is None
    # a plan of some hosts, or without the dns kind, names the gone host and removes nothing
    assert _removals(loaded, plan, ["edge"]) == plan
    assert _removals(loaded, plan, ["keep", "edge"], [k for k in KINDS if k.phase != "dns"]) == plan
    # a server that does not answer: nothing planned, and the plan says why
    silent = _removals(_fleet(tmp_path / "silent", knot, server="127.0.0.1", port=9), plan, ["keep", "edge"])
    assert silent.actions == [] and silent.gone_unknown is not None and "DNS server was not read" in silent.gone_unknown
    # a key the server rejects: refusals, which apply will not run past
    bad_key = tmp_path / "wrong.secret"
    bad_key.write_text("d3Jvbmcta2V5LW5vdC10aGUtc2VydmVycw==\n")
    bad_key.chmod(0o600)
    refused = _removals(_fleet(tmp_path / "badkey", knot, key_file=str(bad_key)), plan, ["keep", "edge"])
    assert [(a.kind, a.subject) for a in refused.actions] == [("refuse", f"dns {left}")]
    assert "d3Jvbmcta2V5" not in refused.model_dump_json()  # the secret never shows

    # apply's step for the gone host: removed at the server, verified there; the others left as they are
    step = asyncio.run(apply_dns(loaded, None, gone_record_actions(whole)))
    assert (step.status, step.message) == ("changed", f"{left} removed"), step
    assert asyncio.run(server.answers([left, changed])) == {left: [], changed: ["10.9.0.99"]}
    asyncio.run(server.delete_a(changed))
