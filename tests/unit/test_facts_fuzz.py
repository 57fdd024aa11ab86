"""Fuzzing the facts parsers: whatever a node prints, parsing returns facts or refuses the host, never crashes."""

from __future__ import annotations

import contextlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcfleet.observe.parse import FactsRefused, encode_framed, parse_facts
from mcfleet.observe.script import MAGIC

PROBES = ["os", "uname", "euid", "passwd", "group", "subuid", "subgid", "resolv", "agent", "unit", "nixos",
          "manifest", "containers", "passwd-file", "group-file", "dirs", "files", "addrs", "listen"]  # fmt: skip
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
            "no-systemd",
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
            "@@mcfleet-facts:agent",
            MAGIC,
            "end",
        ]
    ),
)
VALUES = st.dictionaries(st.sampled_from(PROBES), st.lists(LINES, max_size=6).map("\n".join), max_size=13)
CERTS = st.lists(st.tuples(st.sampled_from(["/c/a.pem", "/c/b.pem"]), LINES.map(str.encode)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(VALUES, CERTS, st.booleans())
# a superscript digit is a digit to str.isdigit() and not to int(): found by this test (was: ValueError)
@example({"euid": "¹"}, [], False)
@example({"files": "F /srv/a/b ² 0 644 -", "listen": "tcp 0100007F:¹"}, [], True)
def test_parse_never_raises_on_well_framed_output(
    values: dict[str, str], certs: list[tuple[str, bytes]], end: bool
) -> None:
    try:
        facts = parse_facts("fuzz", encode_framed(dict(values), certs, end=end), agent_path="/srv/mcp/mcp-agent")
    except FactsRefused as exc:
        assert "twice" in exc.message  # the only refusal well-framed values can earn: a repeated certificate path
        return
    assert facts.host == "fuzz"
    facts.model_dump_json()  # and the result always serialises (plans digest it)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=20).map("\n".join))
def test_raw_noise_is_facts_or_a_refusal(output: str) -> None:
    with contextlib.suppress(FactsRefused):
        parse_facts("fuzz", output, agent_path="/srv/mcp/mcp-agent").model_dump_json()
