"""A node whose PID 1 is not systemd cannot run the agent's unit: the plan refuses it, so apply
refuses before provisioning or pushing anything (a lab fast node is exactly such a node)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fixtures_lab import LabFleet

pytestmark = [pytest.mark.lab]


def test_apply_leaves_a_node_without_systemd_untouched(lab_fleet: LabFleet, tmp_path: Path) -> None:
    node = lab_fleet.names[0]
    root = tmp_path / "fleet"
    # our own copy (the journal and lock go there), without the lab's runtime state
    shutil.copytree(lab_fleet.fleet_dir, root, ignore=shutil.ignore_patterns(".lab", ".mcfleet"))
    before = lab_fleet.exec_in(node, ["sh", "-c", "ls -A /srv; getent passwd mcp || true"]).stdout

    code, out, err = run_cli("apply", str(root), "--on", node, "--json")

    # The plan refuses the agent (no systemd on the node), so apply refuses the plan: nothing runs.
    assert code == 1, err
    assert f"refused: {node}: agent: the plan contains a refusal: {node} does not run systemd" in err, err
    # stdout carries only the bundle build's progress lines (the plan hashes the agent's inputs);
    # no phase started, changed or failed anything
    events = [json.loads(line) for line in out.splitlines()]
    assert all(e["type"] == "event" and e["status"] == "progress" and e["phase"] == "build" for e in events), out
    assert lab_fleet.exec_in(node, ["sh", "-c", "ls -A /srv; getent passwd mcp || true"]).stdout == before
