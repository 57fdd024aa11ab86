"""How long a container's run has lasted, from podman's StartedAt: a passed health check counts only for
a run that has lasted STEADY_S (its age decides whether the agent waits before looking again)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcfleet.agent.health import run_age_s

NOW = datetime(2026, 12, 5, 7, 30, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("started_at", "age"),
    [
        ("2026-12-05T07:29:59.5Z", 0.5),
        ("2026-12-05T07:29:59.250000000Z", 0.75),  # nanoseconds, as podman writes them
        ("2026-12-05T08:29:58.000000001+01:00", 2.0),  # a local offset
        ("2026-12-05T07:29:00Z", 60.0),
        ("  2026-12-05T07:30:00Z\n", 0.0),
    ],
)
def test_podmans_started_at_gives_the_runs_age(started_at: str, age: float) -> None:
    assert run_age_s(started_at, NOW) == pytest.approx(age, abs=1e-6)


@pytest.mark.parametrize("started_at", ["", "0001-01-01T00:00:00Z garbage", "yesterday", "2026-13-05T07:29:59Z"])
def test_an_unreadable_start_has_no_age(started_at: str) -> None:
    assert run_age_s(started_at, NOW) is None
