"""Facts parsers, data-driven: tests/data/facts/parse/<case>.txt (recorded script output)
-> <case>.json (the facts expected).  A new parsing bug = a new case pair.

In expected values, dicts are compared as subsets (only the keys listed) and the
string "<any>" matches any non-null value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.observe.parse import parse_facts, split_sections
from mcfleet.observe.script import ScriptInputs, facts_script

CASES = Path(__file__).resolve().parent.parent / "data" / "facts" / "parse"


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
    output = (CASES / f"{case}.txt").read_text()
    expected = json.loads((CASES / f"{case}.json").read_text())["expected"]
    facts = parse_facts(case, output, agent_path="/srv/mcp/mcp-agent")
    actual = facts.model_dump(mode="json")
    actual["arch"] = facts.arch
    assert_matches(expected, actual)


def test_every_case_has_its_expectation() -> None:
    txt = {p.stem for p in CASES.glob("*.txt")}
    assert txt, "no cases found"
    assert txt == {p.stem for p in CASES.glob("*.json")}


def test_script_is_one_program_with_every_section_and_no_key_files() -> None:
    script = facts_script(
        ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path="/srv/mcp/mcp-agent", agent_unit="x.service")
    )
    for section in ("os", "uname", "passwd", "group", "resolv", "agent", "unit", "nixos", "manifest", "certs", "end"):
        assert f" {section};" in script or f" {section}\n" in script
    assert "*key*) continue" in script  # private keys are never read


def test_split_sections_ignores_text_before_the_first_marker() -> None:
    assert split_sections("motd noise\n@@mcfleet-facts:a\n1\n2\n@@mcfleet-facts:b\n") == {"a": "1\n2", "b": ""}


def test_script_quotes_hostile_values() -> None:
    script = facts_script(
        ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path="/srv/x; rm -rf /", agent_unit="u")
    )
    assert "'/srv/x; rm -rf /'" in script
