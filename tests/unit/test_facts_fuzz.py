"""Fuzzing the facts parsers: whatever a node prints, parsing never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcfleet.observe.parse import parse_facts
from mcfleet.observe.script import FILE, SECTION

SECTIONS = ["os", "uname", "euid", "passwd", "group", "subuid", "subgid", "resolv", "agent", "unit", "nixos",
            "manifest", "certs", "containers", "end"]  # fmt: skip
LINES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "mcp:x:850:850::/srv/mcp:/bin/sh",
            "mcp:x:-1:850::/:/bin/sh",
            "mcp:100000:65536",
            "nameserver",
            "sha256",
            "active",
            "ID=",
            '{"version": 1}',
            '{"services": {"a": {}}}',
            "[{}]",
            "[1, null]",
            "null",
            '{"a": 1}',
            '[{"Names": [], "Labels": [1]}]',
            '[{"Names": 3}]',
            "-----BEGIN CERTIFICATE-----",
            FILE,
            FILE + "/srv/mc-proxy/certs/x.pem",
        ]
    ),
)
SECTION_TEXT = st.tuples(st.sampled_from(SECTIONS), st.lists(LINES, max_size=6)).map(
    lambda t: "\n".join([SECTION + t[0], *t[1]])
)
OUTPUT = st.lists(SECTION_TEXT, max_size=16).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(OUTPUT)
def test_parse_never_raises(output: str) -> None:
    facts = parse_facts("fuzz", output, agent_path="/srv/mcp/mcp-agent")
    assert facts.host == "fuzz"
    facts.model_dump_json()  # and the result always serialises (plans digest it)
