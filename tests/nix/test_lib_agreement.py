"""T1: nix/lib (builtins only) and the Python validator agree on the same files.

For the real fleet, tests/data/fleets/* and every tests/data/bad-fleets/<code>/ case:
the findings of every rule nix/lib implements are identical (code, file, JSON pointer,
message, hint), and so are the per-host derived values the NixOS modules use (users
with the pin, resolvers with fallbacks, the mcp-agent unit, /srv dirs, firewall ports).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.findings import RULES, Finding
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.nix.host_values import host_values
from mcfleet.nix.lib_eval import evaluate
from mcfleet.nix.runner import NixError

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CASES = {
    "real-fleet": REPO,
    **{f"fleets/{p.name}": p for p in sorted((DATA / "fleets").glob("*")) if p.is_dir()},
    **{f"bad-fleets/{p.name}": p for p in sorted((DATA / "bad-fleets").glob("*")) if p.is_dir()},
}
# Python's job alone: nix cannot catch a JSON parse error, and the schema is pydantic's.
# Reading the files safely is Python's too: builtins.readFile has no size limit and does not
# say what a path is (device, FIFO, dangling link), and builtins.fromJSON keeps the last of
# two equal keys without telling (unreadable, file-too-large, duplicate-key).
LOAD_LEVEL = {"json-syntax", "schema", "missing-file", "name-mismatch", "unreadable", "file-too-large", "duplicate-key"}
# secret-recipient-missing reads secrets/<name>.recipients beside the JSON files, source-unreadable and
# template-unknown the files services take content from; nix/lib evaluates the JSON files only, so it
# sees neither.
# checked by Python only: they read files the Nix check never reads (secrets, sources), need the age library
# (a recipient's key), or follow `ssh.jump`, which only the SSH transport uses
PYTHON_ONLY: set[str] = {
    "secret-recipient-missing",
    "source-unreadable",
    "template-unknown",
    "secret-recipient-invalid",
    "jump-loop",
}

Key = tuple[Any, ...]


def _key(f: Finding) -> Key:
    """Identity of a finding for the comparison.

    id-duplicate names "the later" of two users: file order in Python, but a Nix attrset
    is sorted by name, so the pair (not which one is "later") is what must agree.
    """
    if f.code == "id-duplicate":
        m = re.fullmatch(r"(\S+) and (\S+) share (uid|gid) (\d+) on (\S+)", f.message)
        assert m, f.message
        return (f.code, f.file, m.group(3), m.group(4), frozenset({m.group(1), m.group(2)}))
    return (f.code, f.file, f.pointer, f.message, f.hint)


def _nix(root: Path) -> dict[str, Any]:
    return asyncio.run(evaluate(root, "{ inherit (r) findings hosts; codes = m.ruleCodes; }"))


def _as_findings(items: list[dict[str, Any]]) -> list[Finding]:
    return [Finding(x["code"], x["file"], x["pointer"], x["message"], x["hint"], x["host"]) for x in items]


def test_nix_implements_every_fleet_rule_code(nix_bin: str) -> None:
    codes = set(_nix(REPO)["codes"])
    assert codes <= set(RULES), codes - set(RULES)
    assert set(RULES) - codes == LOAD_LEVEL | PYTHON_ONLY


@pytest.mark.parametrize("case", sorted(CASES))
def test_findings_agree(nix_bin: str, case: str) -> None:
    root = CASES[case]
    py = check(load_fleet(root))
    py_codes = {f.code for f in py}
    if "json-syntax" in py_codes:
        # Nix refuses the broken file too: evaluation fails with the JSON parse error.
        with pytest.raises(NixError, match="parse error at line"):
            _nix(root)
        return
    data = _nix(root)
    nix = _as_findings(data["findings"])
    codes = set(data["codes"])
    assert sorted(_key(f) for f in nix) == sorted(_key(f) for f in py if f.code in codes), case
    assert {f.host for f in nix} == {f.host for f in py if f.code in codes}
    expect = root / "expect.json"
    if expect.exists():
        want = json.loads(expect.read_text())
        if want["code"] in codes:
            assert want["code"] in {f.code for f in nix}, f"{case}: nix/lib does not report {want['code']}"
            assert want["file"] in {f.file for f in nix if f.code == want["code"]}
    if case == "real-fleet":
        assert nix == [], [f.format() for f in nix]


# Cases with a file that is not JSON: Nix cannot load them at all (test_findings_agree checks
# that its evaluation fails), so there are no derived values to compare.
NOT_JSON = {name for name, root in CASES.items() if any(f.code == "json-syntax" for f in load_fleet(root).findings)}


def test_only_the_json_syntax_case_has_no_derived_values() -> None:
    assert sorted(NOT_JSON) == ["bad-fleets/json-syntax"]


@pytest.mark.parametrize("case", sorted(set(CASES) - NOT_JSON))
def test_derived_host_values_agree(nix_bin: str, case: str) -> None:
    root = CASES[case]
    loaded = load_fleet(root)
    nix_hosts = _nix(root)["hosts"]
    # A file Python rejects (schema) is left out of its fleet but still read by Nix,
    # so only hosts whose every file loaded cleanly are comparable.
    broken = {f.file.split("/")[1] for f in loaded.findings if f.code in LOAD_LEVEL and f.file.startswith("hosts/")}
    names = [n for n in loaded.hosts if loaded.hosts[n].dir.name not in broken]
    assert names, case
    for name in names:
        assert host_values(loaded, name) == nix_hosts[name], f"{case}: {name}"


def test_real_fleet_values_are_the_pinned_ones(nix_bin: str) -> None:
    # The values the incident report demands, as nix/lib derives them for the real fleet.
    hosts = _nix(REPO)["hosts"]
    rift = hosts["rift"]
    assert rift["users"]["mcp"]["uid"] == 850 and rift["users"]["mcp"]["gid"] == 850
    assert rift["users"]["mcp"]["pin"] == {"uid": 850, "gid": 850}
    assert rift["nameservers"][-2:] == ["1.1.1.1", "8.8.8.8"]
    assert rift["agentUnit"]["execStart"] == "/srv/mcp/mcp-agent"
    assert "ExecStart=/srv/mcp/mcp-agent\n" in rift["agentUnitText"]
    assert "d /srv/mcp 0750 mcp mcp -" in rift["tmpfiles"]
    assert "d /srv/mcns 0750 mcp mcp -" in rift["tmpfiles"]
    assert hosts["svc"]["edge"] is True
    # svc's account predates the pin (seed work log: 992/991) and says so.
    assert hosts["svc"]["users"]["mcp"]["pinException"]
