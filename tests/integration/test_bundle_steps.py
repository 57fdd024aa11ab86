"""A first agent bundle build (~15 s) says which step it is in, so the live view is never blank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_apply_shows_the_bundle_steps_as_build_progress_of_the_hosts_waiting(
    agent_bundle: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's prebuild (what `apply` runs first): each step is a `build` progress event, once
    the build has lasted BUILD_QUIET_S (0 here: every step is shown)."""
    import asyncio
    import io

    from mcfleet.apply import session as session_module
    from mcfleet.apply.session import ApplySession, SessionOptions
    from mcfleet.fleet.load import load_fleet
    from mcfleet.report.progress import Progress

    monkeypatch.setenv("MCFLEET_BUNDLE_CACHE", str(agent_bundle.path.parent.parent))  # the session's bundle cache
    monkeypatch.setattr(session_module, "BUILD_QUIET_S", 0.0)
    loaded = load_fleet(Path(__file__).resolve().parents[1] / "data" / "fleets" / "minimal")
    lines = io.StringIO()
    session = ApplySession(loaded, SessionOptions(progress=Progress(lines)))
    debian = sorted(n for n, e in loaded.hosts.items() if str(e.host.os) == "debian")
    built = asyncio.run(session.prebuild(debian))
    assert built["pex"].sha256 == agent_bundle.sha256
    progress = [(e.host, e.message) for e in session.log.events if str(e.status) == "progress"]
    first = debian[0]
    assert progress[0] == (first, "pex: preparing (built once, then cached)")
    assert {(h, "agent bundle: hashing its inputs") for h in debian} <= set(progress)  # every host waiting for it
    assert progress[-1] == (first, "pex: ready")
    assert f"[{first}] build: agent bundle: hashing its inputs\n" in lines.getvalue()


def test_a_build_that_ends_within_the_quiet_time_says_nothing(
    agent_bundle: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached bundle is ready in ~70 ms: its "preparing", "hashing its inputs" and "ready" lines
    were printed before every apply (4 lines for 2 hosts on the demo lab)."""
    import asyncio

    from mcfleet.apply import session as session_module
    from mcfleet.apply.session import ApplySession, SessionOptions
    from mcfleet.fleet.load import load_fleet

    monkeypatch.setenv("MCFLEET_BUNDLE_CACHE", str(agent_bundle.path.parent.parent))
    monkeypatch.setattr(session_module, "BUILD_QUIET_S", 30.0)  # far longer than a cached build, even under load
    loaded = load_fleet(Path(__file__).resolve().parents[1] / "data" / "fleets" / "minimal")
    session = ApplySession(loaded, SessionOptions())
    debian = sorted(n for n, e in loaded.hosts.items() if str(e.host.os) == "debian")
    built = asyncio.run(session.prebuild(debian))
    assert built["pex"].sha256 == agent_bundle.sha256
    assert [e for e in session.log.events if str(e.status) == "progress"] == []
