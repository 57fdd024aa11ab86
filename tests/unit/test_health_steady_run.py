"""How long a container's run has lasted, from podman's StartedAt: a passed health check counts only for
a run that has lasted STEADY_S (its age decides whether the agent waits before looking again)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from mcfleet.agent import health as health_module
from mcfleet.agent.health import _same_run_after, run_age_s
from mcfleet.agent.podman_ops import RunState

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


class Inspected:
    """The agent's Podman as `_same_run_after` uses it: run_state answers `after`, counted."""

    def __init__(self, after: RunState) -> None:
        self.after, self.calls = after, 0

    def run_state(self, name: str) -> RunState:
        self.calls += 1
        return self.after

    async def in_thread(self, fn: Callable[[str], RunState], name: str) -> RunState:
        return fn(name)


def _stamp(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@pytest.mark.parametrize(("health", "said"), [(SimpleNamespace(kind="tcp"), "its tcp check passed"), (None, "it ran")])
def test_a_run_that_ends_within_the_steady_time_is_not_healthy(
    monkeypatch: pytest.MonkeyPatch, health: object, said: str
) -> None:
    monkeypatch.setattr(health_module, "STEADY_S", 0.3)
    spec = SimpleNamespace(name="hello", health=health)
    for ended in ("restarted", "exited"):
        seen = RunState("running", 0, 4, _stamp(0.05))  # started 50 ms ago: looked at again 250 ms later
        after = (
            RunState("running", 0, 5, _stamp(0.01))
            if ended == "restarted"
            else RunState("exited", 1, 4, seen.started_at)
        )
        podman = Inspected(after)
        with pytest.raises(RuntimeError, match=f"^{said}, then its container stopped within 0.3 s of starting"):
            asyncio.run(_same_run_after(spec, podman, seen))  # type: ignore[arg-type]
        assert podman.calls == 1
    seen = RunState("running", 0, 4, _stamp(0.05))
    same = Inspected(seen)
    asyncio.run(_same_run_after(spec, same, seen))  # type: ignore[arg-type]
    assert same.calls == 1
    old = Inspected(RunState("exited", 1, 9, ""))  # a run that has lasted: not looked at again
    asyncio.run(_same_run_after(spec, old, RunState("running", 0, 4, _stamp(60))))  # type: ignore[arg-type]
    assert old.calls == 0


class CrashLoop:
    """The agent's Podman as `wait_healthy` uses it, for a container podman restarts at once after each exit:
    every other look finds it running, in a run that has just begun; the ones between find it stopped."""

    def __init__(self, exit_code: int) -> None:
        self.exit_code, self.looks = exit_code, 0

    def run_state(self, name: str) -> RunState:
        self.looks += 1
        run = self.looks // 2
        if self.looks % 2:
            return RunState("running", 0, run, _stamp(0))
        return RunState("exited", self.exit_code, run, _stamp(0))

    async def in_thread(self, fn: Callable[[str], RunState], name: str) -> RunState:
        return fn(name)


def test_a_crash_loop_seen_only_by_the_steady_look_reports_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted at once, a container that dies right after starting reads `running` at every look of the wait
    but the steady one; the exit code that one saw is the crash loop's verdict's."""
    monkeypatch.setattr(health_module, "STEADY_S", 0.02)
    monkeypatch.setattr(health_module, "RETRY_S", 0.01)
    monkeypatch.setattr(health_module, "CRASH_LOOP_AFTER_S", 0.1)
    spec = SimpleNamespace(name="hello", health=None, restart="always")
    podman = CrashLoop(3)
    wait = health_module.wait_healthy(spec, podman, time.monotonic() + 5, crash_loop_ends=True)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError, match=r"keeps stopping \(restarted \d+ times in \d+ s, last exit code 3\)"):
        asyncio.run(wait)
