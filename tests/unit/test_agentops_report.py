"""What `mcfleet agent restart|start|stop|recover` prints."""

from __future__ import annotations

from mcfleet.apply.agentops import AgentOpReport


def test_a_service_that_did_not_get_healthy_says_where_its_output_is() -> None:
    error = "hello cannot get healthy: its container keeps stopping (restarted 44 times in 3 s)"
    failed = AgentOpReport(host="n1", operation="restart", ok=False, service="hello", seconds=3.6, agent_seconds=3.3,
                           error=error)  # fmt: skip
    lines = failed.render().splitlines()
    assert lines[0] == "n1: restart hello: FAILED in 3.6 s (the agent's part 3.3 s)"
    assert lines[-1] == "  see: mcfleet logs n1 hello"
    other = AgentOpReport(host="n1", operation="restart", ok=False, service="hello", error="no service 'hello'")
    assert "mcfleet logs" not in other.render()  # not a health failure: its output would not say why


def test_the_containers_acted_on_are_listed_unless_they_are_the_head_line_again() -> None:
    one = AgentOpReport(host="n1", operation="restart", ok=True, service="hello", actions=["restart hello"])
    assert one.render().splitlines() == ["n1: restart hello: ok in 0.0 s (the agent's part 0.0 s)"]  # was twice
    two = AgentOpReport(host="n1", operation="restart", ok=True, service="web", actions=["restart web", "restart db"])
    assert two.render().splitlines()[1:] == ["  restart web, restart db"]
