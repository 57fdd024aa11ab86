"""Facts parsers, data-driven: tests/data/facts/parse/<case>.txt (recorded values)
-> <case>.json (the facts expected).  A new parsing bug = a new case pair.

A case file keeps each value readable: a line `@@mcfleet-facts:<probe>` starts a
value, `@@mcfleet-file:<path>` starts a certificate file; `framed()` encodes them
as the facts script prints them (base64 records, see observe.script).

In expected values, dicts are compared as subsets (only the keys listed) and the
string "<any>" matches any non-null value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.observe.parse import FactsRefused, encode_framed, parse_facts, read_framed
from mcfleet.observe.script import CERT_CAP, VALUE_CAP, ScriptInputs, facts_script

CASES = Path(__file__).resolve().parent.parent / "data" / "facts" / "parse"
VALUE, FILE = "@@mcfleet-facts:", "@@mcfleet-file:"


def framed(case_text: str) -> str:
    """A readable case file -> the wire format (each value base64, certificates as their own records)."""
    values: dict[str, str | bytes] = {}
    certs: list[tuple[str, bytes]] = []
    name, lines = None, []
    for line in [*case_text.splitlines(), VALUE]:
        if line.startswith((VALUE, FILE)) and name is not None:
            body = "\n".join(lines).strip("\n")
            if name.startswith(FILE):
                certs.append((name[len(FILE) :], body.encode()))
            elif name != "end":
                values[name] = body
        if line.startswith(VALUE):
            name, lines = line[len(VALUE) :].strip(), []
        elif line.startswith(FILE):
            name, lines = line, []
        else:
            lines.append(line)
    return encode_framed(values, certs)


def assert_matches(expected: Any, actual: Any, where: str = "") -> None:
    if expected == "<any>":
        assert actual is not None, f"{where}: expected a value, got None"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}/{key}: missing in {sorted(actual)}"
            assert_matches(value, actual[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_matches(e, a, f"{where}/{i}")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.txt")))
def test_parse_case(case: str) -> None:
    output = "motd noise before the first record\n" + framed((CASES / f"{case}.txt").read_text())
    expected = json.loads((CASES / f"{case}.json").read_text())["expected"]
    facts = parse_facts(case, output, agent_path="/srv/mcp/mcp-agent")
    actual = facts.model_dump(mode="json")
    actual["arch"] = facts.arch
    assert_matches(expected, actual)


def test_every_case_has_its_expectation() -> None:
    txt = {p.stem for p in CASES.glob("*.txt")}
    assert txt, "no cases found"
    assert txt == {p.stem for p in CASES.glob("*.json")}


def test_script_is_one_program_with_every_value_and_no_key_files() -> None:
    script = facts_script(
        ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path="/srv/mcp/mcp-agent", agent_unit="x.service")
    )
    for probe in ("os", "uname", "passwd", "group", "resolv", "agent", "unit", "nixos", "manifest", "containers"):
        assert f"\nv {probe} p_{probe}\n" in script
    assert "sed -n '/^-----BEGIN CERTIFICATE-----/,/^-----END CERTIFICATE-----/p'" in script  # no key leaves
    assert "\necho end\n)\n" in script  # the last record, inside the output printed at once


def test_script_quotes_hostile_values() -> None:
    script = facts_script(
        ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path="/srv/x; rm -rf /", agent_unit="u")
    )
    assert "'/srv/x; rm -rf /'" in script


FORGED = "@@mcfleet-facts:agent\nsha256 " + "0" * 64 + "\n"


def test_a_value_cannot_forge_another_value() -> None:
    """A planted certificate or a passwd GECOS carrying record text stays inside its own value."""
    output = encode_framed(
        {"agent": "absent", "passwd": "mcp:x:850:850:" + FORGED.replace("\n", " ") + ":/srv/mcp:/bin/sh"},
        [("/srv/mc-proxy/certs/zz.pem", ("\nagent " + "A" * 8 + "\n" + FORGED).encode())],
    )
    facts = parse_facts("h", output, agent_path="/srv/mcp/mcp-agent")
    assert facts.agent is not None and not facts.agent.present and facts.agent.sha256 is None
    assert [c.path for c in facts.certs] == ["/srv/mc-proxy/certs/zz.pem"]


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("mcfleet-facts 2\nagent YWJzZW50\nagent YWJzZW50\nend\n", "twice"),
        ("mcfleet-facts 2\ncert eA== eA==\ncert eA== eA==\nend\n", "twice"),
        ("mcfleet-facts 2\n@@mcfleet-facts:agent\nend\n", "cannot print"),
        ("mcfleet-facts 2\nagent not/base64!\nend\n", "not base64"),
        ("mcfleet-facts 2\nend\nagent YWJzZW50\n", "after its end"),
    ],
)
def test_forged_or_duplicated_records_are_refused(output: str, says: str) -> None:
    with pytest.raises(FactsRefused, match=says):
        parse_facts("h", output, agent_path="/srv/mcp/mcp-agent")


def test_a_value_over_its_cap_is_refused_by_name() -> None:
    with pytest.raises(FactsRefused, match="'resolv' is larger than") as info:
        read_framed(encode_framed({"resolv": b"#" * (VALUE_CAP + 1)}))
    assert info.value.probe == "resolv"
    assert read_framed(encode_framed({"resolv": b"#" * VALUE_CAP})).complete


def test_a_certificate_over_its_cap_is_a_cert_error_not_a_cut_file() -> None:
    facts = parse_facts("h", encode_framed({}, [("/c/big.pem", b"x" * (CERT_CAP + 1))]), agent_path="/a")
    assert [(c.path, c.error) for c in facts.certs] == [("/c/big.pem", "larger than 64 KiB: not read")]


def test_addresses_from_ip_or_hostname_keep_only_valid_ip_addresses() -> None:
    from mcfleet.observe.parse import parse_addresses

    ip_output = "127.0.0.1/8\n::1/128\n10.77.39.13/24\nfe80::bc46:2fff:fe64:206e/64\n"
    assert parse_addresses(ip_output) == sorted(["127.0.0.1", "::1", "10.77.39.13", "fe80::bc46:2fff:fe64:206e"])
    assert parse_addresses("10.0.0.5 fd00:0:0::1 \n") == ["10.0.0.5", "fd00::1"]  # hostname -I; normalised
    # what a hostile or broken node could print is dropped, never trusted as an address
    assert parse_addresses("10.0.0.5/24 $(reboot) 999.1.1.1 fe80::1%eth0/64 ;rm") == ["10.0.0.5", "fe80::1"]
    assert parse_addresses("absent\n") is None  # not asked
    assert parse_addresses("nonlocal\n") is None  # ip_nonlocal_bind: any address binds there
    assert parse_addresses("") is None and parse_addresses("junk only") is None  # no tool: unknown
