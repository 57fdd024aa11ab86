"""The DNS kind's plan when the authoritative server already answers for a name the fleet declares."""

from __future__ import annotations

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
    assert (theirs.kind, theirs.before) == ("update", {"type": "A", "values": ["10.0.0.9"]})
    assert theirs.reason == "the server answers 10.0.0.9, a record mcfleet did not make: apply replaces it"
    ours = Manifest(dns=[ManifestRecord(name=NAME, value="10.0.0.5")])
    [drifted] = dns_diff(_host(), facts, ours)
    assert drifted.reason == "the server answers 10.0.0.9: changed since apply wrote it"
    assert dns_diff(_host(), Facts(host="n1", dns={NAME: ["10.0.0.5"]}), Manifest()) == []
    [missing] = dns_diff(_host(), Facts(host="n1", dns={NAME: []}), ours)
    assert (missing.kind, missing.reason) == ("create", "no A record at the authoritative server")
