"""--on selection and `mcfleet hosts` (files only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcfleet.errors import SelectionError
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.select import select_hosts
from tests.conftest import REPO, run_cli

LOADED = load_fleet(REPO)


def _names(selector: str | None) -> list[str]:
    return [e.host.name for e in select_hosts(LOADED, selector)]


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        (None, ["hyperborea", "orion", "rift", "svc"]),
        ("rift", ["rift"]),
        ("svc,rift", ["rift", "svc"]),
        ("@edge", ["svc"]),
        ("@master", ["rift"]),
        ("@rpi", ["hyperborea"]),
        ("@worker,!@master", ["hyperborea", "orion"]),
        ("!svc", ["hyperborea", "orion", "rift"]),
        ("o*", ["orion"]),
        ("*r*", ["hyperborea", "orion", "rift"]),
        (" rift , rift ", ["rift"]),
    ],
)
def test_selector(selector: str | None, names: list[str]) -> None:
    assert _names(selector) == names


def test_list_of_selectors() -> None:
    assert [e.host.name for e in select_hosts(LOADED, ["rift", "@edge"])] == ["rift", "svc"]


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        ("rfit", "did you mean 'rift'"),
        ("@egde", "did you mean 'edge'"),
        ("x*", "matches no host"),
        ("rift,!rift", "the selection is empty"),
        ("", "the selector is empty"),  # `--on "$HOSTS"` with the variable unset: not the whole fleet
        (" , ", "the selector is empty"),
    ],
)
def test_bad_selector(selector: str, text: str) -> None:
    with pytest.raises(SelectionError) as info:
        select_hosts(LOADED, selector)
    assert text in info.value.format()


def test_hosts_json_lists_the_inventory() -> None:
    code, out, err = run_cli("hosts", str(REPO), "--on", "@edge", "--json")
    assert code == 0, err
    [svc] = json.loads(out)["hosts"]
    assert svc["name"] == "svc" and svc["roles"] == ["edge"] and svc["addresses"][0] == "100.106.232.4"
    assert svc["users"]["mcp"] == {"uid": 992, "gid": 991}


def test_hosts_table() -> None:
    code, out, _err = run_cli("hosts", str(REPO))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "OS", "ARCH", "ROLES", "TAGS", "ADDRESSES", "SERVICES"]
    rift = next(line.split() for line in lines if line.startswith("rift"))
    services = str(len(list((REPO / "hosts" / "rift" / "services").glob("*.json"))))
    assert rift == ["rift", "nixos", "amd64", "master,worker", "tailnet,lan", "100.95.252.120,192.168.88.181", services]


def test_hosts_unknown_name_exits_2_with_suggestion() -> None:
    code, _out, err = run_cli("hosts", str(REPO), "--on", "hyperbórea")
    assert code == 2
    assert "did you mean 'hyperborea'" in err


def test_hosts_on_a_partly_broken_fleet_warns_and_lists_the_rest() -> None:
    broken = REPO / "tests" / "data" / "bad-fleets" / "missing-file"
    code, out, err = run_cli("hosts", str(broken))
    assert code == 0
    assert "warning: 1 host file(s) do not load and are listed as invalid" in err and "mcfleet validate" in err
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["alpha", "beta", "edge1", "gamma"]
    assert "invalid: hosts/gamma/host.json: folder hosts/gamma has no host.json" in out.splitlines()[-1]


def test_hosts_without_fleet_json_is_invalid_input(tmp_path: object) -> None:
    code, _out, err = run_cli("hosts", str(tmp_path))
    assert code == 2
    assert "fleet.json" in err and "Traceback" not in err


def test_a_host_whose_file_does_not_load_is_named_as_such_never_dropped(tmp_path: Any) -> None:
    """beta's host.json is broken: naming it, or a pattern matching it, says which file to fix (was: `no host
    named 'beta'`, did you mean…, and a pattern silently planned the others); `!beta` leaves it out."""
    import shutil

    root = tmp_path / "fleet"
    shutil.copytree(REPO / "tests" / "data" / "fleets" / "minimal", root)
    (root / "hosts" / "beta" / "host.json").write_text("{")
    loaded = load_fleet(root)
    for selector in ("beta", "b*", "alpha,beta"):
        with pytest.raises(SelectionError) as err:
            select_hosts(loaded, selector)
        assert err.value.message == "host 'beta' is left out: hosts/beta/host.json has problems", selector
        assert "fix hosts/beta/host.json" in (err.value.hint or "")
    assert [e.host.name for e in select_hosts(loaded, "!beta")] == ["alpha", "edge1"]
    assert [e.host.name for e in select_hosts(loaded, "*,!beta")] == ["alpha", "edge1"]
    code, _out, err_text = run_cli("-C", str(root), "ssh", "beta")
    assert code == 2 and "host 'beta' is left out: hosts/beta/host.json has problems" in err_text, err_text
