"""validate: `ssh.jump` that loops (a -> b -> a, or a host to itself) or names no fleet host is a finding
on each host's host.json#/ssh/jump; exec/plan/ssh would otherwise fail or hang on it later."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import REPO, run_cli

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"  # hosts alpha, beta, edge1


def fleet_with_jumps(tmp_path: Path, jumps: dict[str, str]) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    for name, via in jumps.items():
        path = root / "hosts" / name / "host.json"
        host = json.loads(path.read_text())
        host.setdefault("ssh", {})["jump"] = via
        path.write_text(json.dumps(host))
    return root


def findings(root: Path) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = run_cli("validate", str(root), "--json", "--no-cache")
    assert "internal error" not in err
    return code, json.loads(out)["findings"]


def test_a_jump_loop_is_a_finding_on_each_host_of_the_loop(tmp_path: Path) -> None:
    code, found = findings(fleet_with_jumps(tmp_path, {"alpha": "beta", "beta": "alpha"}))
    assert code == 2
    got = {(f["code"], f["file"], f["pointer"], f["host"]) for f in found}
    assert got == {
        ("jump-loop", "hosts/alpha/host.json", "/ssh/jump", "alpha"),
        ("jump-loop", "hosts/beta/host.json", "/ssh/jump", "beta"),
    }
    messages = {f["host"]: f["message"] for f in found}
    assert "alpha → beta → alpha" in messages["alpha"] and "beta → alpha → beta" in messages["beta"]
    assert all(f["hint"] for f in found)
    _, out, _ = run_cli("validate", str(tmp_path / "fleet"), "--no-cache")
    assert "jump-loop: hosts/alpha/host.json#/ssh/jump" in out


def test_a_longer_loop_names_only_its_hosts(tmp_path: Path) -> None:
    # edge1 -> alpha leads into the loop alpha -> beta -> alpha: the loop's hosts are what to fix
    code, found = findings(fleet_with_jumps(tmp_path, {"alpha": "beta", "beta": "alpha", "edge1": "alpha"}))
    assert code == 2
    assert sorted(f["host"] for f in found) == ["alpha", "beta"]


def test_a_jump_to_itself_is_a_finding(tmp_path: Path) -> None:
    code, found = findings(fleet_with_jumps(tmp_path, {"edge1": "edge1"}))
    assert code == 2
    assert [(f["code"], f["file"], f["pointer"]) for f in found] == [
        ("jump-loop", "hosts/edge1/host.json", "/ssh/jump")
    ]
    assert "edge1 → edge1" in found[0]["message"]


def test_a_jump_naming_no_fleet_host_is_a_finding(tmp_path: Path) -> None:
    code, found = findings(fleet_with_jumps(tmp_path, {"alpha": "alhpa-gw"}))
    assert code == 2
    assert [(f["code"], f["file"], f["pointer"]) for f in found] == [
        ("unknown-reference", "hosts/alpha/host.json", "/ssh/jump")
    ]
    assert "'alhpa-gw'" in found[0]["message"] and "user@host[:port]" in found[0]["hint"]


def test_a_chain_of_fleet_hosts_and_an_outside_jump_host_are_valid(tmp_path: Path) -> None:
    root = fleet_with_jumps(tmp_path, {"alpha": "beta", "beta": "edge1", "edge1": "kyle@gw.example.net:2222"})
    code, out, err = run_cli("validate", str(root), "--no-cache")
    assert (code, err) == (0, ""), out
