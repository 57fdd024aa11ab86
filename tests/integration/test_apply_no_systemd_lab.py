"""A node whose PID 1 is not systemd cannot run the agent's unit: apply fails that host before
provisioning or pushing anything (a lab fast node is exactly such a node)."""

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
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    assert code == 1, err
    failed = [e for e in events if e.get("host") == node and e.get("status") == "failed"]
    assert failed and "does not run systemd" in failed[0]["message"]
    ran = {e["phase"] for e in events if e.get("host") == node and e.get("status") not in ("skipped", "failed")}
    assert not ran & {"provision", "push", "activate", "manifest"}, ran
    assert lab_fleet.exec_in(node, ["sh", "-c", "ls -A /srv; getent passwd mcp || true"]).stdout == before
