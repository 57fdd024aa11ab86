"""Hosts gone from hosts/: what each manifest listed is kept in .mcfleet/hosts-seen.json, a plan names a
host that left its folder with things on its node, and `mcfleet forget` ends the notice."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from mcfleet.cli.plan_run import exit_code, unknown_drift_note
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.observe.facts import Facts, Unreachable
from mcfleet.observe.manifest import Manifest, ManifestAgent, ManifestRecord, ManifestRoute, ManifestService
from mcfleet.plan.gone import (
    forget,
    gone_hosts,
    left_behind,
    note_records_removed,
    note_written,
    read_seen,
    seen_path,
    update_seen,
)
from mcfleet.plan.model import Action, Plan
from mcfleet.plan.planner import with_gone
from mcfleet.plan.render import render_text
from tests.conftest import REPO, run_cli

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
AGENT_ONLY = Manifest(agent=ManifestAgent(sha256="ab" * 32))
SERVING = Manifest(
    applied_at="2026-12-01T10:00:00Z",
    agent=ManifestAgent(sha256="ab" * 32),
    services={"web": ManifestService(hash="h1"), "api": ManifestService(hash="h2")},
    dns=[ManifestRecord(name="web.zone.test", value="10.0.0.5")],
    routes=[ManifestRoute(hostname="web.zone.test", mode="l7", service="web")],
)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(MINIMAL, dest)
    return dest


def test_a_manifest_with_only_the_agent_and_users_leaves_nothing_worth_a_notice() -> None:
    assert left_behind(None) is None
    assert left_behind(AGENT_ONLY) is None
    entry = left_behind(SERVING)
    assert entry is not None
    assert entry.services == ["api", "web"]
    assert entry.records == ["web.zone.test A 10.0.0.5"]
    assert entry.routes == ["web.zone.test:443"]
    assert entry.applied_at == "2026-12-01T10:00:00Z"


def test_the_file_is_private_in_the_ignored_state_folder_and_rewritten_only_on_a_change(fleet: Path) -> None:
    seen, problem = update_seen(fleet, {"alpha": SERVING, "beta": AGENT_ONLY})
    assert problem is None and list(seen) == ["alpha"]
    path = seen_path(fleet)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (fleet / ".mcfleet" / ".gitignore").read_text().strip().endswith("*")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    restamped = SERVING.model_copy(update={"applied_at": "2026-12-02T00:00:00Z"})
    update_seen(fleet, {"alpha": restamped})  # only the stamp differs: not a change worth a write
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    note_written(fleet, "alpha", AGENT_ONLY)  # apply took its services away: nothing left to tell
    assert read_seen(fleet) == ({}, None)


def test_a_host_not_observed_this_time_keeps_its_entry(fleet: Path) -> None:
    update_seen(fleet, {"alpha": SERVING})
    seen, _ = update_seen(fleet, {"beta": AGENT_ONLY})
    assert list(seen) == ["alpha"]


def test_an_unreadable_file_is_set_aside_said_and_made_again(fleet: Path) -> None:
    path = seen_path(fleet)
    path.parent.mkdir()
    path.write_text('{"format": 1, "hosts": {"alpha": {"services": "not a list"}}}')
    seen, problem = update_seen(fleet, {"beta": SERVING})
    assert problem is not None and str(path) in problem and "set aside" in problem
    assert (path.parent / "hosts-seen.json.unreadable").read_text().startswith('{"format": 1')
    assert list(json.loads(path.read_text())["hosts"]) == ["beta"] and list(seen) == ["beta"]


def test_gone_hosts_are_those_without_a_folder(fleet: Path) -> None:
    update_seen(fleet, {"alpha": SERVING, "orion": SERVING})
    seen, _ = read_seen(fleet)
    assert list(gone_hosts(seen, load_fleet(fleet).hosts)) == ["orion"]


def test_a_dns_name_another_host_now_declares_is_not_left_behind(fleet: Path) -> None:
    moved = SERVING.model_copy(update={"services": {}, "routes": []})  # only web's record was left
    update_seen(fleet, {"orion": moved})
    seen, _ = read_seen(fleet)
    assert gone_hosts(seen, ["alpha"], ["api.zone.test"])["orion"].records == ["web.zone.test A 10.0.0.5"]
    assert gone_hosts(seen, ["alpha"], ["web.zone.test"]) == {}  # web moved to a declared host: nothing left
    entry = left_behind(SERVING)
    assert entry is not None
    still = gone_hosts({"orion": entry}, [], ["web.zone.test"])["orion"]  # its services and routes stay
    assert still.records == [] and still.services == ["api", "web"] and still.routes == ["web.zone.test:443"]


def test_a_plan_names_the_gone_host_and_keeps_the_entry_of_a_host_whose_manifest_is_corrupt(fleet: Path) -> None:
    loaded = load_fleet(fleet)
    update_seen(fleet, {"alpha": SERVING, "orion": SERVING})
    facts = {
        "alpha": Facts(host="alpha", manifest_error="not JSON"),  # says nothing: alpha's entry stays
        "beta": Facts(host="beta", manifest=SERVING),
        "edge1": Unreachable(host="edge1", reason="timed out"),
    }
    plan = with_gone(loaded, Plan(hosts=["alpha", "beta", "edge1"]), facts, desired_state(loaded))
    assert list(plan.gone) == ["orion"] and plan.gone_unknown is None
    assert sorted(read_seen(fleet)[0]) == ["alpha", "beta", "orion"]

    text = render_text(plan)
    assert "orion: gone from hosts/: nothing plans it any more; its manifest of 2026-12-01T10:00:00Z" in text
    assert "    services: api, web\n" in text and "    DNS records: web.zone.test A 10.0.0.5\n" in text
    assert "restore hosts/orion, take its services away, apply" in text and "mcfleet forget orion" in text
    # a plan of some hosts does not remove its records: it says which plan does
    assert (
        "hint: an apply of the whole fleet removes its DNS records the server still holds; to remove the rest" in text
    )
    assert text.rstrip().endswith("; 1 host gone from hosts/ (orion).")
    assert exit_code(plan, detailed=False) == 0
    assert exit_code(plan, detailed=True) == 1  # the fleet does not match its files
    assert "gone from hosts/" in unknown_drift_note(plan) and "orion" in unknown_drift_note(plan)
    assert json.loads(plan.model_dump_json())["gone"]["orion"]["routes"] == ["web.zone.test:443"]


def test_records_apply_removed_leave_the_note_and_a_host_left_with_nothing_is_dropped(fleet: Path) -> None:
    update_seen(fleet, {"orion": SERVING, "vega": SERVING.model_copy(update={"services": {}, "routes": []})})
    note_records_removed(fleet, "orion", ["web.zone.test"])
    note_records_removed(fleet, "vega", ["web.zone.test"])
    note_records_removed(fleet, "nobody", ["web.zone.test"])  # never noted: nothing to change
    seen, problem = read_seen(fleet)
    assert problem is None and list(seen) == ["orion"]  # vega left only that record
    assert seen["orion"].records == [] and seen["orion"].services == ["api", "web"]


def test_a_gone_hosts_record_removals_are_shown_under_it_and_counted(fleet: Path) -> None:
    """A plan of the whole fleet lists the records a gone host left at the DNS server as its `- dns`
    actions (plan.gone_records, against a real server in tests/integration/test_gone_records_lab.py)."""
    entry = left_behind(SERVING)
    assert entry is not None
    removal = Action(host="orion", phase="dns", kind="delete", subject="dns web.zone.test",
                     before={"type": "A", "value": "10.0.0.5"}, reason="orion is gone from hosts/ and no declared host "
                     "has web.zone.test: its record is removed")  # fmt: skip
    text = render_text(Plan(hosts=["alpha"], gone={"orion": entry}, actions=[removal]))
    assert "    routes: web.zone.test:443\n  dns removals\n    - dns web.zone.test  orion is gone" in text
    assert "hint: apply removes its DNS records listed above; to remove the rest, restore hosts/orion" in text
    assert "alpha: no changes" in text
    assert "Plan: 0 to create, 0 to update, 0 to replace, 1 to delete, 0 refused; 1 host gone" in text


def test_a_plan_with_nothing_gone_is_unchanged(fleet: Path) -> None:
    plan = Plan(hosts=["alpha"])
    loaded = load_fleet(fleet)
    assert with_gone(loaded, plan, {"alpha": Facts(host="alpha", manifest=SERVING)}, desired_state(loaded)) is plan


def test_forget_drops_a_gone_host_and_refuses_a_declared_or_unknown_one(fleet: Path) -> None:
    update_seen(fleet, {"alpha": SERVING, "orion": SERVING})
    code, _out, err = run_cli("-C", str(fleet), "forget", "alpha")
    assert code == 2 and "alpha still has a folder under hosts/: not gone" in err
    code, _out, err = run_cli("-C", str(fleet), "forget", "rift")
    assert code == 2 and "invalid input: not a gone host: rift" in err  # was "invalid input: HOST: not a gone…"
    assert "the gone hosts (a plan lists them): orion" in err
    code, out, err = run_cli("-C", str(fleet), "forget", "orion", "--json")
    assert code == 0, err
    assert json.loads(out)["forgotten"]["orion"]["services"] == ["api", "web"]
    assert sorted(read_seen(fleet)[0]) == ["alpha"]
    assert forget(fleet, ["orion"]) == {}  # already forgotten: nothing to drop
