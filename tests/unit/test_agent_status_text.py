"""`mcfleet agent status`'s HEALTH text: an agent that answered is running, whatever its reason says."""

from __future__ import annotations

from types import SimpleNamespace

from mcfleet.apply.status import _health_text

INSTALLED = SimpleNamespace(binary_sha256="ab" * 32, has_systemd=True, active="active")


def test_an_agent_that_answers_not_serving_is_reported_with_its_reason() -> None:
    # the agent runs; podman's socket file is gone (its reason carries "No such file or directory")
    why = ("health status NOT_SERVING: podman API not reachable at unix:///run/user/850/podman/podman.sock: "
           "No such file or directory")  # fmt: skip
    assert _health_text(why, INSTALLED, answered=True) == why
    assert _health_text(why, INSTALLED) == why  # its form alone says the agent answered


def test_an_agent_socket_that_is_missing_or_closed_is_no_agent_running() -> None:
    missing = ("agent not reachable: failed to connect to all addresses; last error: UNKNOWN: "
               "unix:/srv/mcp/mcp-agent.sock: No such file or directory")  # fmt: skip
    assert _health_text(missing, INSTALLED) == "no agent running (unit active)"
    assert _health_text("UNAVAILABLE: Socket closed", SimpleNamespace(binary_sha256=None)) == (
        "no agent running (not installed: `mcfleet agent upgrade` or `mcfleet apply`)"
    )
    # a node without systemd (the lab's fast nodes): not told to install what its unit cannot run
    bare = SimpleNamespace(binary_sha256=None, has_systemd=False)
    assert _health_text("UNAVAILABLE: Socket closed", bare) == "no agent (the node does not run systemd)"


def test_skew_is_an_agent_unlike_the_others_not_a_host_without_one() -> None:
    """The lab after the demo: two nodes run the agent, two have none yet.  Was: all four "version skew"
    (the two without an agent counted as a version, and tied with the real one)."""
    from mcfleet.apply.status import AgentStatus, mark_skew, status_row

    new, old = "ab" * 32, "cd" * 32
    rows = [
        AgentStatus("full1", True, binary_sha256=new, running_sha256=new, health="SERVING"),
        AgentStatus("full2", True, binary_sha256=new, running_sha256=new, health="SERVING"),
        AgentStatus("node1", True, health="no agent running"),
        AgentStatus("node2", True, health="no agent running"),
    ]
    assert [r.skew for r in mark_skew(rows)] == [False] * 4
    assert [status_row(r)[-1] for r in mark_skew(rows)] == [""] * 4
    rows.append(AgentStatus("full3", True, binary_sha256=old, running_sha256=old, health="SERVING"))
    assert [r.host for r in mark_skew(rows) if r.skew] == ["full3"]
    assert status_row(mark_skew(rows)[-1])[-1] == "version skew"
