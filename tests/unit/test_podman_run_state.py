"""The agent's view of a container's run state: podman's inspect of a container being restarted can fail
with "read /proc/PID/cgroup: no such process" (its process exited meanwhile); asked again, it answers.
Seen on a lab node while a deploy waited for a container that kept stopping (was: the deploy failed with
"podman inspect of hello failed")."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from podman.errors import APIError

from mcfleet.agent.podman_ops import INSPECT_RACE_TRIES, Podman, RunState
from mcfleet.errors import PeerError

RACE = "500 Server Error: Internal Server Error (read /proc/62082/cgroup: no such process)"


class Inspections:
    """podman-py's `containers.get` answering from a list: an exception to raise, or a container's attrs."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    def get(self, name: str) -> SimpleNamespace:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(attrs=answer)


def _podman(answers: list[Any]) -> tuple[Podman, Inspections]:
    podman = Podman("unix:///nonexistent/podman.sock")  # never connected: the client is replaced
    inspections = Inspections(answers)
    podman._client = SimpleNamespace(containers=inspections)  # type: ignore[assignment]
    podman._restart_if_stale = lambda exc, generation: False  # type: ignore[method-assign]  # not a stale service
    return podman, inspections


def test_an_inspect_that_meets_an_exiting_process_is_asked_again() -> None:
    attrs = {"State": {"Status": "stopped", "ExitCode": 1}, "RestartCount": 7}
    podman, inspections = _podman([APIError(RACE), APIError(RACE), attrs])
    assert podman.run_state("hello") == RunState("stopped", 1, 7)
    assert inspections.calls == 3


def test_other_inspect_failures_and_a_race_that_persists_still_fail() -> None:
    podman, inspections = _podman([APIError(RACE)])
    with pytest.raises(PeerError, match="no such process"):
        podman.run_state("hello")
    assert inspections.calls == INSPECT_RACE_TRIES
    podman, inspections = _podman([APIError("500 Server Error: database is locked")])
    with pytest.raises(PeerError, match="database is locked"):
        podman.run_state("hello")
    assert inspections.calls == 1


class Removals:
    """podman-py's `containers.get(name).remove(...)`: the removal answers from a list, as above."""

    def __init__(self, answers: list[Exception | None]) -> None:
        self.answers = answers
        self.calls = 0

    def get(self, name: str) -> SimpleNamespace:
        def remove(**_options: object) -> None:
            self.calls += 1
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if answer is not None:
                raise answer

        return SimpleNamespace(remove=remove)


def test_a_remove_that_meets_an_exiting_process_is_asked_again() -> None:
    """Seen in CI: a failed deploy removes the replacement podman restarts in a loop to put the old
    container back, the remove met the exiting process, and the service was left down ("the previous
    web could not be put back (podman remove of web failed: … no such process): it is down")."""
    podman, _ = _podman([{}])
    removals = Removals([APIError(RACE), APIError(RACE), None])
    podman._stopping = SimpleNamespace(containers=removals)  # type: ignore[assignment]
    podman.remove("web")
    assert removals.calls == 3
    stuck = Removals([APIError("500 Server Error: device or resource busy")])
    podman._stopping = SimpleNamespace(containers=stuck)  # type: ignore[assignment]
    with pytest.raises(PeerError, match="resource busy"):
        podman.remove("web")
    assert stuck.calls == 1
