"""T1: nix/lib and Python agree on the resolver rules and the two former blind spots.

Beyond the one bad fleet per code (test_lib_agreement), these fleets hit the edges: a
resolved host with 4 servers (valid), an internal fallback pushing the public one to 4th
place (two findings), unreachable resolvers per tags, an address listed twice by one host,
a uid in the normal-user range; and the derived resolver values of every host.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.nix.host_values import host_values
from tests.nix.test_lib_agreement import REPO, _as_findings, _key, _nix

pytestmark = pytest.mark.nix

_spec = importlib.util.spec_from_file_location("bad_fleets_make", REPO / "tests" / "data" / "bad-fleets" / "_make.py")
assert _spec is not None and _spec.loader is not None
_make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_make)


def _beta_dns(dns: dict[str, Any]) -> Any:
    return lambda f: f["hosts/beta/host.json"].__setitem__("dns", dns)


def _both(f: dict[str, Any]) -> None:
    f["hosts/beta/host.json"]["addresses"] = ["10.0.0.3", "10.0.0.3"]
    f["hosts/edge1/host.json"]["users"]["backup"] = {"uid": 1001, "gid": 60500}
    f["hosts/edge1/host.json"]["tags"] = ["tailnet"]
    f["hosts/edge1/host.json"]["dns"] = {"nameservers": ["100.95.252.120", "10.0.0.1"], "fallback": ["1.1.1.1"]}


CASES: dict[str, Any] = {
    "resolved-four-servers": _beta_dns(
        {"resolver": "systemd-resolved", "nameservers": ["10.0.0.1", "10.0.0.53", "10.0.1.53"], "fallback": ["1.1.1.1"]}
    ),
    "internal-then-unreached": _beta_dns(
        {"nameservers": ["10.0.0.1", "10.0.0.53"], "fallback": ["10.0.0.2", "1.1.1.1"]}
    ),
    "glibc-two-plus-two": _beta_dns({"nameservers": ["10.0.0.1", "10.0.0.53"], "fallback": ["1.1.1.1", "8.8.8.8"]}),
    "fallback-dns-only": _beta_dns(
        {"resolver": "systemd-resolved", "nameservers": ["10.0.0.1"], "fallback_dns": ["9.9.9.9"]}
    ),
    "same-host-address-user-range-unreachable": _both,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dns_cases_agree(nix_bin: str, tmp_path: Path, case: str) -> None:
    files = copy.deepcopy(_make.minimal())
    CASES[case](files)
    root = tmp_path / "fleet"
    _make.write(root, files)
    loaded = load_fleet(root)
    assert not loaded.findings, [f.format() for f in loaded.findings]
    py = check(loaded)
    data = _nix(root)
    nix = _as_findings(data["findings"])
    assert sorted(_key(f) for f in nix) == sorted(_key(f) for f in py), case
    if case == "same-host-address-user-range-unreachable":
        assert {f.code for f in py} == {"address-duplicate", "id-dynamic-range", "dns-unreachable"}
    for name in loaded.hosts:
        assert host_values(loaded, name) == data["hosts"][name], f"{case}: {name}"
