"""A backend the plan could not read (the DNS server, a proxy) is said in the plan, under its kind: the
kind was compared with what the last apply recorded, so the plan may miss drift there."""

from __future__ import annotations

from pathlib import Path

from mcfleet.fleet.load import load_fleet
from mcfleet.observe.facts import Facts
from mcfleet.plan.model import Plan
from mcfleet.plan.planner import build
from mcfleet.plan.render import render_text

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
NODE = {"os_id": "nixos", "arch_raw": "x86_64"}  # what the minimal fleet's hosts say they are


def test_a_backend_that_did_not_answer_is_named_under_its_kind_even_without_changes() -> None:
    loaded = load_fleet(MINIMAL)
    facts = {
        "alpha": Facts(host="alpha", dns_error="127.0.0.1:1 gave no answer for a.example.test within 2 s", **NODE),
        "beta": Facts(host="beta", routes_error="caddy admin: connection refused", **NODE),
        "edge1": Facts(
            host="edge1",
            services_error="the agent did not answer (agent Facts failed: UNAVAILABLE)",
            os_id="debian",
            arch_raw="x86_64",
        ),
    }
    plan = build(loaded, facts, kinds=[], check_backends=False)  # no kind: no actions, only what was not read
    assert [(u.host, u.phase, u.reason.split(":")[0]) for u in plan.unobserved] == [
        ("alpha", "dns", "the DNS server was not read (127.0.0.1"),
        ("beta", "route", "the proxy was not read (caddy admin"),
        ("edge1", "deploy", "the agent did not answer (agent Facts failed"),
    ]
    lines = render_text(plan).splitlines()
    assert "alpha: no changes" not in lines  # was: "no changes", though the records were never asked
    at = lines.index("alpha")
    assert lines[at + 1 : at + 3] == [
        "  dns",
        "    not read: the DNS server was not read (127.0.0.1:1 gave no answer for a.example.test within 2 s): "
        "records compared with what the last apply recorded",
    ]
    assert "drift not seen" in lines[lines.index("beta") + 2]
    assert Plan.model_validate_json(plan.model_dump_json()).unobserved == plan.unobserved
    assert Plan.model_validate({"hosts": ["alpha"]}).unobserved == []  # a plan saved before still loads


def test_backends_that_answered_leave_no_note() -> None:
    plan = build(load_fleet(MINIMAL), {"alpha": Facts(host="alpha", **NODE)}, kinds=[], check_backends=False)
    assert plan.unobserved == [] and render_text(plan).startswith("alpha: no changes")


def test_an_agent_that_does_not_answer_leaves_its_reason_in_the_facts(tmp_path: Path) -> None:
    """The service kind's read against a real gRPC client whose socket nobody listens on."""
    import asyncio

    from mcfleet.fleet.desired import desired_state
    from mcfleet.kinds import ReadContext
    from mcfleet.kinds.service import ServiceKind
    from mcfleet.observe.facts import AgentFacts
    from mcfleet.transport.local import LocalNode

    loaded = load_fleet(MINIMAL)
    entry = loaded.hosts["alpha"]
    agent = entry.host.agent.model_copy(update={"socket": str(tmp_path / "nobody-listens.sock")})
    loaded.hosts["alpha"] = type(entry)(entry.host.model_copy(update={"agent": agent}), entry.services, entry.dir)

    class Pool:  # the one thing the read asks of a pool: a connection to the host
        async def connect(self, _entry: object) -> LocalNode:
            return LocalNode("alpha", store=str(tmp_path / "store"))

    facts = {"alpha": Facts(host="alpha", agent=AgentFacts(path=agent.path, present=True), **NODE)}
    ctx = ReadContext(loaded=loaded, desired=desired_state(loaded), pool=Pool())  # type: ignore[arg-type]
    read = asyncio.run(ServiceKind().read(ctx, facts))["alpha"]
    assert isinstance(read, Facts) and read.containers is None
    assert read.services_error is not None and "nobody-listens.sock" in read.services_error
    plan = build(loaded, {"alpha": read}, kinds=[], check_backends=False)
    assert [u.phase for u in plan.unobserved] == ["deploy"]


def test_the_agent_of_a_host_without_services_is_asked_too(tmp_path: Path) -> None:
    """beta declares no service and its manifest lists none; its agent may still hold one (a first deploy
    that failed, whose file was then deleted), so the read asks it: here its socket has nobody."""
    import asyncio

    from mcfleet.fleet.desired import desired_state
    from mcfleet.fleet.load import HostEntry
    from mcfleet.kinds import ReadContext
    from mcfleet.kinds.service import ServiceKind
    from mcfleet.observe.facts import AgentFacts
    from mcfleet.transport.local import LocalNode

    loaded = load_fleet(MINIMAL)
    entry = loaded.hosts["beta"]
    assert not entry.services
    agent = entry.host.agent.model_copy(update={"socket": str(tmp_path / "beta-agent.sock")})
    loaded.hosts["beta"] = type(entry)(entry.host.model_copy(update={"agent": agent}), entry.services, entry.dir)
    asked: list[str] = []

    class Pool:
        async def connect(self, e: HostEntry) -> LocalNode:
            asked.append(e.host.name)
            return LocalNode("beta", store=str(tmp_path / "store"))

    facts = {"beta": Facts(host="beta", agent=AgentFacts(path=agent.path, present=True), **NODE)}
    ctx = ReadContext(loaded=loaded, desired=desired_state(loaded), pool=Pool())  # type: ignore[arg-type]
    read = asyncio.run(ServiceKind().read(ctx, facts))["beta"]
    assert asked == ["beta"]
    assert isinstance(read, Facts) and read.services_error is not None and "beta-agent.sock" in read.services_error
    no_agent = {"beta": Facts(host="beta", agent=AgentFacts(path=agent.path, present=False), **NODE)}
    assert asyncio.run(ServiceKind().read(ctx, no_agent)) == no_agent and asked == ["beta"]  # nothing to ask


def test_the_agent_of_a_host_without_services_is_not_asked_when_its_unit_cannot_be_running(tmp_path: Path) -> None:
    """No systemd, or the unit inactive or failed: the call could only fail (and would import gRPC);
    a host that declares services is asked without systemd (the plan then says why it could not read
    the containers), and with its unit inactive or failed the plan says that instead of a failed call."""
    import asyncio

    from mcfleet.fleet.desired import desired_state
    from mcfleet.fleet.load import HostEntry
    from mcfleet.kinds import ReadContext
    from mcfleet.kinds.service import ServiceKind
    from mcfleet.observe.facts import AgentFacts, Unreachable
    from mcfleet.transport.local import LocalNode

    loaded = load_fleet(MINIMAL)
    assert not loaded.hosts["beta"].services and loaded.hosts["alpha"].services
    asked: list[str] = []

    class Pool:
        async def connect(self, e: HostEntry) -> LocalNode:
            asked.append(e.host.name)
            return LocalNode(e.host.name, store=str(tmp_path / "store"))

    ctx = ReadContext(loaded=loaded, desired=desired_state(loaded), pool=Pool())  # type: ignore[arg-type]
    path = loaded.hosts["beta"].host.agent.path
    for state in ({"systemd": False}, {"systemd": True, "unit_active": "inactive"},
                  {"systemd": True, "unit_active": "failed"}):  # fmt: skip
        facts: dict[str, Facts | Unreachable] = {
            "beta": Facts(host="beta", agent=AgentFacts(path=path, present=True, **state), **NODE)
        }
        assert asyncio.run(ServiceKind().read(ctx, facts)) == facts and asked == [], state
    for state in ({"systemd": True, "unit_active": "active"}, {"systemd": True, "unit_active": "activating"}, {}):
        may_run = AgentFacts(path=path, present=True, **state)
        asyncio.run(ServiceKind().read(ctx, {"beta": Facts(host="beta", agent=may_run, **NODE)}))
        assert asked == ["beta"], state
        asked.clear()
    no_systemd = AgentFacts(path=path, present=True, systemd=False)
    read = asyncio.run(ServiceKind().read(ctx, {"alpha": Facts(host="alpha", agent=no_systemd, **NODE)}))["alpha"]
    assert asked == ["alpha"] and isinstance(read, Facts) and read.services_error is not None
    asked.clear()
    for down in ("inactive", "failed"):  # was: a connection refused at a forwarded socket's temp path
        stopped = AgentFacts(path=path, present=True, systemd=True, unit_active=down)
        read = asyncio.run(ServiceKind().read(ctx, {"alpha": Facts(host="alpha", agent=stopped, **NODE)}))["alpha"]
        assert asked == [] and isinstance(read, Facts) and read.containers is None
        assert read.services_error == f"the agent is not running (mcp-agent.service is {down}; apply starts it first)"


def test_detailed_exitcode_does_not_say_no_drift_where_a_backend_was_not_read() -> None:
    """`plan --detailed-exitcode` in a drift check: 0 must mean the fleet matches its files. A DNS server
    that did not answer leaves its records unknown: 1, with the reason on stderr. Changes pending stay 2,
    and a plain `plan` still exits 0."""
    from mcfleet.cli.plan_run import exit_code, unknown_drift_note
    from mcfleet.errors import EXIT_CHANGES, EXIT_FAILURE, EXIT_OK
    from mcfleet.plan.model import Action

    loaded = load_fleet(MINIMAL)
    down = {"alpha": Facts(host="alpha", dns_error="127.0.0.1:1 gave no answer for a.example.test within 2 s", **NODE)}
    blind = build(loaded, down, kinds=[], check_backends=False)
    assert not blind.has_changes
    assert exit_code(blind, detailed=True) == EXIT_FAILURE
    assert exit_code(blind, detailed=False) == EXIT_OK
    assert unknown_drift_note(blind) == "exit 1: not read, so drift there is unknown: alpha dns (see `not read:` above)"
    seen = build(loaded, {"alpha": Facts(host="alpha", **NODE)}, kinds=[], check_backends=False)
    assert exit_code(seen, detailed=True) == EXIT_OK
    change = Action(host="alpha", phase="dns", kind="create", subject="dns a.example.test", reason="declared")
    pending = blind.model_copy(update={"actions": [change]})
    assert exit_code(pending, detailed=True) == EXIT_CHANGES
