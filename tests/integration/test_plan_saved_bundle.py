"""`mcfleet plan -o` builds the agent bundle first when it is missing (a real pex build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcfleet.bundle.build import cached_bundle_sha256, current_inputs_hash
from mcfleet.cli.commands_plan import bundle_hashes
from mcfleet.fleet.load import load_fleet

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_plan_saved_for_apply_builds_a_missing_bundle_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan -o` compares every Debian agent: without the bundle, apply (which builds it) would plan an agent
    upgrade the saved plan lacks and refuse the plan as edited.  A real build (pex, ~15 s)."""
    monkeypatch.setenv("MCFLEET_BUNDLE_CACHE", str(tmp_path))
    hashes, note, inputs = bundle_hashes(load_fleet(REPO), ["svc", "rift"], build_missing=True)
    built = cached_bundle_sha256()
    assert built is not None and hashes == {"svc": built} and note is None
    assert inputs == current_inputs_hash()
