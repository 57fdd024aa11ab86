"""A first agent bundle build (~15 s) says which step it is in, so the live view is never blank."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcfleet.bundle.build import BUNDLE_NAME, build_agent_bundle

pytestmark = [pytest.mark.slow]


def test_a_first_build_reports_its_steps_and_a_cached_one_only_the_lookup(tmp_path: Path) -> None:
    steps: list[str] = []
    first = build_agent_bundle(cache_dir=tmp_path / "cache", step=steps.append)
    assert not first.cached
    assert steps[0] == "agent bundle: hashing its inputs"
    assert any(s.startswith(f"agent bundle: building {BUNDLE_NAME} with pex") and "cached" in s for s in steps)
    assert steps[-1] == "agent bundle: hashing the built bundle"
    again: list[str] = []
    second = build_agent_bundle(cache_dir=tmp_path / "cache", step=again.append)
    assert second.cached and second.sha256 == first.sha256
    assert again == ["agent bundle: hashing its inputs"]
