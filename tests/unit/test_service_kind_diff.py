"""The service kind's plan for a changed service file: which values changed, and `-/+` when the
change recreates a container (its spec hash on the node differs), `~` when it does not."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from mcfleet.agent.spec import LABEL_HASH
from mcfleet.fleet.desired import DesiredService
from mcfleet.fleet.models import Service
from mcfleet.kinds.service import _service_actions, spec_changes, spec_hashes
from mcfleet.observe.facts import ContainerFacts
from mcfleet.observe.manifest import ManifestService


def doc(env: list[str], stage: str = "services") -> dict[str, Any]:
    return {
        "name": "hello",
        "stage": stage,
        "components": [
            {"name": "hello", "image": "r/demo/hello:1", "env": env, "routes": [{"port": 8080, "mode": "l7"}]}
        ],
    }


def desired(data: dict[str, Any], hash_: str) -> DesiredService:
    spec = Service.model_validate(data)
    return DesiredService(
        "hello", data["stage"], hash_, ("hello",), {"hello": "r/demo/hello:1"}, {"hello/8080": 20001}, spec
    )


def running(svc: DesiredService) -> dict[str, ContainerFacts]:
    """Its container on the node, labelled with its spec hash."""
    return {"hello": ContainerFacts(name="hello", state="running", image="r/demo/hello:1",
                                    labels={LABEL_HASH: spec_hashes(svc)["hello"]})}  # fmt: skip


def recorded(hash_: str) -> ManifestService:
    return ManifestService(hash=hash_, stage="services", containers=["hello"], images={"hello": "r/demo/hello:1"})


def sent(svc: DesiredService) -> dict[str, Any] | None:
    """Its definition as the agent's registry holds it."""
    return svc.spec.model_dump(mode="json", by_alias=True, exclude={"files"}) if svc.spec else None


def test_spec_changes_name_each_changed_value_with_old_and_new() -> None:
    before, after = doc(["GREETING=hi", "KEEP=1"]), doc(["GREETING=hey", "KEEP=1"], stage="core")
    assert spec_changes(before, after) == [
        'components[0].env[0]: "GREETING=hi" → "GREETING=hey"',
        'stage: "services" → "core"',
    ]
    assert spec_changes(before, doc(["GREETING=hi"])) == [
        'components[0].env: ["GREETING=hi", "KEEP=1"] → ["GREETING=hi"]'
    ]
    assert spec_changes(before, before) == []


def test_a_changed_env_recreates_the_container_so_the_plan_says_replace_with_the_values() -> None:
    old = desired(doc(["GREETING=hi"]), "old")
    new = desired(doc(["GREETING=hey"]), "new")
    [action] = _service_actions(SimpleNamespace(name="n1"), "hello", new, recorded("old"), running(old),  # type: ignore[arg-type]
                                old_spec=sent(old))  # fmt: skip
    assert action.kind == "replace"
    assert action.reason == (
        'the service definition changed: components[0].env[0]: "GREETING=hi" → "GREETING=hey" (recreates hello)'
    )


def test_a_change_that_keeps_the_container_spec_is_an_update() -> None:
    old = desired(doc([]), "old")
    new = desired(doc([], stage="core"), "new")  # the stage is not part of the container
    [action] = _service_actions(SimpleNamespace(name="n1"), "hello", new, recorded("old"), running(new),  # type: ignore[arg-type]
                                old_spec=sent(old))  # fmt: skip
    assert action.kind == "update"
    assert action.reason == 'the service definition changed: stage: "services" → "core"'


def test_a_service_the_agent_registered_and_the_files_dropped_is_removed_even_if_never_recorded() -> None:
    """Its first deploy failed (its image is missing), so the manifest never listed it, but the agent's
    registry does: once its file is deleted the plan removes it (was: nothing, and the agent kept trying
    to start it at every boot and recover)."""
    from datetime import datetime

    from mcfleet.fleet.desired import DesiredAgent, DesiredHost
    from mcfleet.kinds.service import ServiceKind
    from mcfleet.observe.facts import Facts
    from mcfleet.observe.manifest import Manifest

    hello = desired(doc(["GREETING=hi"]), "h1")
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    host = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, services={"hello": hello})
    had = ManifestService(hash="h1", stage="services", containers=["hello"], images={"hello": "r/demo/hello:1"})
    seen = [ContainerFacts(name="hello", state="running", image="r/demo/hello:1",
                           labels={LABEL_HASH: spec_hashes(hello)["hello"]})]  # fmt: skip
    # the registry's definition as agents send it
    sent = hello.spec.model_dump(mode="json", by_alias=True, exclude={"files"}) if hello.spec else {}
    facts = Facts(host="n1", containers=seen, service_specs={"hello": sent, "ghost": doc([])})
    acts = ServiceKind().diff(host, facts, Manifest(services={"hello": had}), now=datetime(2026, 1, 1))
    assert [(a.kind, a.subject, a.before) for a in acts] == [("delete", "service ghost", {"stage": "services"})]
    assert acts[0].reason.startswith("registered with the agent, not declared in the files")
    gone = ServiceKind().diff(host, facts.model_copy(update={"service_specs": {}}), Manifest(services={"hello": had}),
                              now=datetime(2026, 1, 1))  # fmt: skip
    assert gone == []
    # "active": false in its file: never removed (kept registered and stopped: tests/unit/test_service_inactive.py)
    off = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent,
                      services={"hello": dataclasses.replace(hello, active=False)})  # fmt: skip
    assert off.inactive == {"hello"}
    acts = ServiceKind().diff(off, facts.model_copy(update={"service_specs": {}}), Manifest(services={"hello": had}),
                              now=datetime(2026, 1, 1))  # fmt: skip
    assert [a.kind for a in acts] == ["update"] and not any(a.kind == "delete" for a in acts)


def test_a_long_deploy_call_says_what_it_waits_for_and_since_when(monkeypatch: Any) -> None:
    """The agent's ReconcileServices waits for the stage's health checks (up to 120 s) in one call: the
    apply shows a line every HEARTBEAT_S meanwhile (was: nothing for two minutes), and returns its answer."""
    import asyncio

    from mcfleet.kinds import service

    monkeypatch.setattr(service, "HEARTBEAT_S", 0.05)
    said: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.4)
        return "answer"

    async def run() -> str:
        return await service.heartbeat(slow(), said.append, "stage services: sick starting")

    assert asyncio.run(run()) == "answer"
    # one line per HEARTBEAT_S while it waits (fewer when a loaded machine wakes the loop late)
    assert 2 <= len(said) <= 8, said
    assert all(s.startswith("stage services: sick starting, waiting for their health") for s in said)
    assert said[0].endswith("(0 s)")

    async def cancelled() -> bool:
        inner = asyncio.ensure_future(asyncio.sleep(10))
        outer = asyncio.ensure_future(service.heartbeat(inner, None, "x"))
        await asyncio.sleep(0.01)
        outer.cancel()
        await asyncio.gather(outer, return_exceptions=True)
        await asyncio.sleep(0)
        return inner.cancelled()

    assert asyncio.run(cancelled())  # an interrupted apply does not leave the call running


def test_a_service_running_but_never_recorded_as_deployed_is_deployed_again() -> None:
    """Its container runs with the right spec, but its stage never got healthy, so no apply recorded it:
    the plan deploys it again (was: no change, so the next apply routed traffic to it and published its
    DNS name while it failed its health checks)."""
    sick = desired(doc(["GREETING=hi"]), "h1")
    on_node = {"hello": ContainerFacts(name="hello", state="running", image="r/demo/hello:1",
                                       labels={LABEL_HASH: spec_hashes(sick)["hello"]})}  # fmt: skip
    [action] = _service_actions(SimpleNamespace(name="n1"), "hello", sick, None, on_node, old_spec=None)  # type: ignore[arg-type]
    assert (action.kind, action.subject) == ("update", "service hello")
    assert action.reason.startswith("on the node, but no apply finished deploying it")
    had = ManifestService(hash="h1", stage="services", containers=["hello"], images={"hello": "r/demo/hello:1"})
    assert _service_actions(SimpleNamespace(name="n1"), "hello", sick, had, on_node, old_spec=None) == []  # type: ignore[arg-type]


def test_a_service_published_on_an_address_the_node_lacks_is_refused() -> None:
    """podman would fail to bind it in the middle of its stage, after the stages before it changed: the
    plan refuses it instead (loopback and wildcards are every node's; a name is not checked)."""
    from datetime import datetime

    from mcfleet.fleet.desired import DesiredAgent, DesiredHost
    from mcfleet.kinds.service import ServiceKind
    from mcfleet.observe.facts import Facts
    from mcfleet.observe.manifest import Manifest

    def host_with(binds: list[str], host_ip: str | None = None) -> DesiredHost:
        data = doc(["GREETING=hi"])
        data["components"][0]["routes"][0]["bind"] = binds
        if host_ip is not None:
            data["components"][0]["publish"] = [{"host_ip": host_ip, "host_port": 5353, "container_port": 53}]
        agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                             unit_sha256="", sha256=None)  # fmt: skip
        return DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, services={"hello": desired(data, "h1")})

    def acts(binds: list[str], addresses: list[str] | None, host_ip: str | None = None) -> list[tuple[str, str]]:
        facts = Facts(host="n1", containers=[], service_specs={}, addresses=addresses)
        return [(a.kind, a.reason) for a in ServiceKind().diff(host_with(binds, host_ip), facts, Manifest(),
                                                               now=datetime(2026, 1, 1))]  # fmt: skip

    node = ["127.0.0.1", "10.0.0.5", "fd00::1"]
    [(kind, reason)] = acts(["127.0.0.1", "10.0.0.9"], node)
    assert kind == "refuse" and reason.startswith("service hello publishes on 10.0.0.9, which n1 does not have")
    assert "(its addresses: 10.0.0.5, fd00::1)" in reason
    for fine in (["127.0.0.1", "10.0.0.5"], ["0.0.0.0"], ["fd00:0::1"], ["::"], ["myhost.lan"]):
        assert [k for k, _ in acts(fine, node)] == ["create"], fine
    assert [k for k, _ in acts(["10.0.0.9"], None)] == ["create"]  # addresses unknown: nothing to refuse on
    # a fixed publish's host_ip is bound by podman the same way
    [(kind, reason)] = acts(["127.0.0.1"], node, host_ip="10.0.0.8")
    assert kind == "refuse" and reason.startswith("service hello publishes on 10.0.0.8, which n1 does not have")
    assert [k for k, _ in acts(["127.0.0.1"], node, host_ip="10.0.0.5")] == ["create"]


def test_a_service_stopped_by_hand_says_so_and_how_to_keep_it_stopped() -> None:
    """`mcfleet agent stop` keeps a service stopped across agent restarts, but the files still say it runs:
    the plan's drift says who stopped it and that apply starts it again (was: only "hello is exited"), and what
    keeps it stopped instead: `"active": false`."""
    from mcfleet.kinds.service import held_stopped

    hello = desired(doc(["GREETING=hi"]), "h1")
    d = SimpleNamespace(name="n1")
    had = ManifestService(hash="h1", stage="services", containers=["hello"], images={"hello": "r/demo/hello:1"})
    seen = {"hello": ContainerFacts(name="hello", state="exited", image="r/demo/hello:1",
                                    labels={LABEL_HASH: spec_hashes(hello)["hello"]})}  # fmt: skip
    registry = {"registry": [{"name": "hello", "desired": "stopped"}, {"name": "db", "desired": "running"}, "junk"]}
    assert held_stopped(registry) == ["hello"]
    [act] = _service_actions(d, "hello", hello, had, seen, old_spec=None, held=held_stopped(registry))  # type: ignore[arg-type]
    assert act.reason == ('drift: hello is exited (stopped with `mcfleet agent stop`: apply starts it again; '
                          '"active": false in hello.json keeps it stopped instead)')  # fmt: skip
    [plain] = _service_actions(d, "hello", hello, had, seen, old_spec=None)  # type: ignore[arg-type]
    assert plain.reason == "drift: hello is exited"


def test_the_progress_line_names_what_a_stage_deploys_and_what_it_only_checks() -> None:
    """A stage's other services are only checked again: the line no longer calls them all "starting"."""
    from mcfleet.fleet.models import Stage
    from mcfleet.kinds.service import stage_line

    assert stage_line(Stage("services"), ["hello", "web", "api"], {"web"}) == (
        "stage services: deploying web; checking hello, api"
    )
    assert stage_line(Stage("services"), ["hello"], {"hello"}) == "stage services: deploying hello"
    assert stage_line(Stage("services"), ["hello", "web"], {"db"}) == "stage services: checking hello, web"


def test_a_definition_the_agent_holds_but_the_files_do_not_is_drift() -> None:
    """The manifest records the files' definition, the containers match it, but the agent's registry holds
    another (a later deploy failed under an agent that kept it): an update naming the values, not "no
    changes" (the agent's next boot would run what it holds)."""
    files = desired(doc(["GREETING=hi"]), "h1")
    data = doc(["GREETING=hi"])
    data["components"][0]["health"] = {"kind": "http", "port": 8080, "path": "/missing"}
    held = desired(data, "h2")
    on_node, had = running(files), recorded("h1")
    [action] = _service_actions(SimpleNamespace(name="n1"), "hello", files, had, on_node, old_spec=sent(held))  # type: ignore[arg-type]
    assert action.kind == "update"
    assert action.reason.startswith("drift: the agent holds another definition: components[0].health: {"), action
    assert _service_actions(SimpleNamespace(name="n1"), "hello", files, had, on_node, old_spec=sent(files)) == []  # type: ignore[arg-type]


def test_a_deploy_call_queued_behind_an_earlier_change_says_so_then_waits_for_its_checks(monkeypatch: Any) -> None:
    """A stage call the agent has not answered after FIRST_LOOK_S asks whether it waits behind an earlier
    change (an interrupted apply's stage); while it does, that is the progress line (was: "waiting for
    their health checks" for a stage not even begun); once the agent is at this call, the usual line."""
    import asyncio

    from mcfleet.kinds import service

    monkeypatch.setattr(service, "FIRST_LOOK_S", 0.02)
    monkeypatch.setattr(service, "HEARTBEAT_S", 0.1)
    said: list[str] = []
    answers = ["waiting for the agent to finish an earlier deploy of hello (3 s so far)", None]
    asked: list[float] = []

    async def behind() -> str | None:
        asked.append(asyncio.get_running_loop().time())
        return answers.pop(0) if answers else None

    async def slow() -> str:
        await asyncio.sleep(0.45)
        return "answer"

    async def run() -> str:
        return await service.heartbeat(slow(), said.append, "stage services: deploying hello", behind)

    assert asyncio.run(run()) == "answer"
    assert (
        said[0]
        == "stage services: deploying hello: waiting for the agent to finish an earlier deploy of hello (3 s so far)"
    )
    rest = said[1:]
    assert rest and all(
        s.startswith("stage services: deploying hello, waiting for their health checks (") for s in rest
    )
    assert len(asked) == 2  # asked at the first look and at the next heartbeat; then no more
    # not queued at the first look: nothing said then, the usual heartbeat after
    said.clear()
    answers[:] = [None]
    asked.clear()
    assert asyncio.run(run()) == "answer"
    assert len(asked) == 1 and said and all(", waiting for their health checks (" in s for s in said), said


def test_the_heartbeat_says_which_health_checks_fail_and_why(monkeypatch: Any) -> None:
    """A wrong health check path shows in the first heartbeat line (was: only in the error after the
    stage timeout, 120 s of 'waiting for their health checks')."""
    import asyncio
    from types import SimpleNamespace

    from mcfleet.kinds import service

    monkeypatch.setattr(service, "HEARTBEAT_S", 0.05)
    said: list[str] = []
    failing = {"hello": "HTTP 404 from /nosuch", "api": "x" * 400}

    class Client:
        async def busy(self) -> object:
            return SimpleNamespace(failing=failing)

    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "answer"

    async def run() -> str:
        return await service.heartbeat(
            slow(),
            said.append,
            "stage services: deploying hello",
            checks=lambda: service.failing_checks(Client()),  # type: ignore[arg-type]
        )

    assert asyncio.run(run()) == "answer"
    assert said and all("; failing so far: api: xxx" in s and "…; hello: HTTP 404 from /nosuch" in s for s in said), (
        said
    )
    assert all(len(s) < 300 for s in said)  # a long reason is cut
    failing.clear()  # all passed: the plain line
    said.clear()
    asyncio.run(run())
    assert said and all(
        s.startswith("stage services: deploying hello, waiting for") and "failing" not in s for s in said
    )


def test_drift_seen_while_the_agent_finishes_an_earlier_change_says_it_may_still_change() -> None:
    from datetime import datetime

    from mcfleet.fleet.desired import DesiredAgent, DesiredHost
    from mcfleet.kinds.service import ServiceKind, busy_text
    from mcfleet.observe.facts import Facts
    from mcfleet.observe.manifest import Manifest

    hello = desired(doc(["GREETING=hi"]), "h1")
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    host = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, services={"hello": hello})
    other = desired(doc(["GREETING=bye"]), "h2")
    busy = busy_text({"busy": {"what": "deploy", "services": ["db", "hello"], "running_s": 3.4, "waiting": 0}})
    assert busy == "deploy of db, hello (3 s so far)"
    assert busy_text({}) is None  # an agent that sends no "busy"
    assert busy_text({"busy": {"services": "x", "running_s": "?"}}) == "change"  # a malformed one: no traceback
    facts = Facts(host="n1", containers=list(running(other).values()), service_specs={"hello": sent(other)},
                  agent_busy=busy)  # fmt: skip
    [action] = ServiceKind().diff(host, facts, Manifest(services={"hello": recorded("h1")}), now=datetime(2026, 1, 1))
    assert action.reason == (
        "drift: the container spec on the node differs (hello); "
        "the agent is still finishing a deploy of db, hello (3 s so far): this may change when it ends"
    )
    # a change from the files is not drift: said as it is
    facts = facts.model_copy(
        update={"containers": list(running(hello).values()), "service_specs": {"hello": sent(hello)}}
    )
    changed = desired(doc(["GREETING=new"]), "h3")
    host.services["hello"] = changed
    [action] = ServiceKind().diff(host, facts, Manifest(services={"hello": recorded("h1")}), now=datetime(2026, 1, 1))
    assert "still finishing" not in action.reason and action.reason.startswith("the service definition changed")


def test_a_deploy_that_fails_on_a_container_says_where_its_output_is() -> None:
    from mcfleet.kinds.service import logs_hint

    hello, api = desired(doc([]), "h1"), DesiredService("api", "services", "h2", ("api-web", "api-db"))
    loop = "stage services did not get healthy: api-db cannot get healthy: its container keeps stopping (restarted 44"
    assert logs_hint(loop, "full1", [hello, api]) == " (see `mcfleet logs full1 api`)"
    both = "stage services did not get healthy: hello not healthy (http check): refused; api-web not healthy (tcp"
    assert logs_hint(both, "full1", [hello, api]) == " (see `mcfleet logs full1 hello`, `mcfleet logs full1 api`)"
    assert logs_hint("stage services: podman start of hello failed: ...", "full1", [hello, api]) == ""
    assert logs_hint("xhello not healthy", "full1", [hello]) == ""  # another container's name that ends alike


def test_a_container_podman_keeps_restarting_is_a_crash_loop_the_plan_replaces_whatever_its_state() -> None:
    """Between two runs of a crash loop the container reads "running" one moment and "stopped" the next:
    the plan said "no changes" or "drift: hello is stopped" by turns, and apply's start met the loop
    again.  podman's restart count since the agent last started it, with a start a moment ago, is the
    loop whatever the state; apply recreates the container from its image (the agent does the same)."""
    from mcfleet.kinds.service import container_facts

    hello = desired(doc(["GREETING=hi"]), "h1")
    d = SimpleNamespace(name="n1")
    label = {LABEL_HASH: spec_hashes(hello)["hello"]}

    def seen(**fields: Any) -> dict[str, ContainerFacts]:
        return {"hello": ContainerFacts(name="hello", image="r/demo/hello:1", labels=label, **fields)}

    for state in ("running", "stopped"):
        [act] = _service_actions(d, "hello", hello, recorded("h1"), seen(state=state, restarts=41, exit_code=1,  # type: ignore[arg-type]
                                 up_s=0.2), old_spec=None)  # fmt: skip
        assert act.kind == "replace", state
        assert act.reason == (
            "hello: crash loop: podman restarted it 41 times, last exit code 1 (apply recreates it from its image)"
        )
    # stopped with `mcfleet agent stop` right after its loop: the count stays, but the hold is what to say
    [held] = _service_actions(d, "hello", hello, recorded("h1"), seen(state="exited", restarts=41, up_s=5.0),  # type: ignore[arg-type]
                              old_spec=None, held=["hello"])  # fmt: skip
    assert held.kind == "update" and held.reason.startswith("drift: hello is exited (stopped with `mcfleet agent stop`")
    # one crash weeks ago, running since; two quick restarts; a count from an agent that started it long ago
    calm = [seen(state="running", restarts=1, up_s=0.5), seen(state="running", restarts=2, up_s=0.5),
            seen(state="running", restarts=40, up_s=3600.0), seen(state="running", restarts=9, up_s=None)]  # fmt: skip
    for facts in calm:
        assert _service_actions(d, "hello", hello, recorded("h1"), facts, old_spec=None) == [], facts  # type: ignore[arg-type]
    # the agent's answer, and an older agent's without the fields (no loop seen)
    agent = {"containers": [{"name": "hello", "state": "stopped", "restarts": 5, "exit_code": 2, "up_s": 1.5},
                            {"name": "old", "state": "running", "labels": {}}]}  # fmt: skip
    looping, old = container_facts(agent)
    assert looping.crash_loop == "crash loop: podman restarted it 5 times, last exit code 2"
    assert old.crash_loop is None and old.restarts == 0 and old.up_s is None


def test_with_podman_not_answering_each_deployed_service_is_brought_up_by_apply() -> None:
    """The agent answers, its podman does not (a stopped socket, or mcp's user manager restarted, which
    takes the containers down): what runs is unknown, so each deployed service is an update that apply's
    deploy makes once the host phase has podman back (was: nothing, and a second apply after the first).
    A new service stays a create; an agent that does not answer at all changes nothing."""
    from datetime import datetime

    from mcfleet.fleet.desired import DesiredAgent, DesiredHost
    from mcfleet.kinds.service import PODMAN_DOWN, ServiceKind
    from mcfleet.observe.facts import Facts
    from mcfleet.observe.manifest import Manifest

    hello, new = desired(doc(["GREETING=hi"]), "h1"), desired(doc([]), "n1")
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    host = DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, services={"hello": hello, "new": new})
    recorded_ = Manifest(services={"hello": recorded("h1")})
    down = Facts(host="n1", services_error=f"{PODMAN_DOWN} (podman list failed: Connection refused)")
    acts = ServiceKind().diff(host, down, recorded_, now=datetime(2026, 1, 1))
    by_subject = {a.subject: a for a in acts}
    assert sorted((a.kind, a.subject) for a in acts) == [("create", "service new"), ("update", "service hello")]
    assert by_subject["service hello"].reason.endswith("apply brings it up once podman answers")
    silent = down.model_copy(update={"services_error": "the agent did not answer (timed out)"})
    assert [(a.kind, a.subject) for a in ServiceKind().diff(host, silent, recorded_, now=datetime(2026, 1, 1))] == [
        ("create", "service new")
    ]


def test_a_definition_the_node_runs_but_the_manifest_does_not_record_yet_says_so() -> None:
    """The agent was killed mid-deploy; restarted, its boot brought the new definition up, and the apply
    ended before its record: the plan said only "the service definition changed", with nothing changed
    to show.  It says the node runs it and apply only records it."""
    new = desired(doc(["GREETING=hey"]), "new")
    [act] = _service_actions(SimpleNamespace(name="n1"), "hello", new, recorded("old"), running(new),  # type: ignore[arg-type]
                             old_spec=sent(new))  # fmt: skip
    assert act.kind == "update" and act.reason.startswith("the node already runs this definition;")
    stopped = {"hello": running(new)["hello"].model_copy(update={"state": "exited"})}
    [act] = _service_actions(SimpleNamespace(name="n1"), "hello", new, recorded("old"), stopped,  # type: ignore[arg-type]
                             old_spec=sent(new))  # fmt: skip
    assert act.reason == "the service definition changed"


def test_a_running_container_whose_published_port_nothing_listens_on_is_restarted_by_apply() -> None:
    """The agent names the published ports of a running container that nothing listens on (rootless
    podman's forwarder is gone: the service is unreachable while podman says it runs).  The plan said
    "no changes" while `status` said the service was down; now it is drift that apply fixes."""
    from mcfleet.kinds.service import container_facts

    hello = desired(doc(["GREETING=hi"]), "h1")
    d = SimpleNamespace(name="n1")
    [seen] = container_facts({"containers": [{"name": "hello", "state": "running", "up_s": 900.0,
                                              "labels": {LABEL_HASH: spec_hashes(hello)["hello"]},
                                              "unforwarded": ["127.0.0.1:20001", "10.0.0.5:20001"]}]})  # fmt: skip
    assert seen.unforwarded == ["127.0.0.1:20001", "10.0.0.5:20001"]
    [act] = _service_actions(d, "hello", hello, recorded("h1"), {"hello": seen}, old_spec=None)  # type: ignore[arg-type]
    assert (act.kind, act.subject) == ("update", "service hello")
    assert act.reason == ("drift: nothing listens on the published port of hello (127.0.0.1:20001, 10.0.0.5:20001) "
                          "while it runs (podman's port forwarder is gone): apply restarts it")  # fmt: skip
    # an agent that does not look (rootful podman, or older): nothing said
    [quiet] = container_facts({"containers": [{"name": "hello", "state": "running",
                                               "labels": {LABEL_HASH: spec_hashes(hello)["hello"]}}]})  # fmt: skip
    assert _service_actions(d, "hello", hello, recorded("h1"), {"hello": quiet}, old_spec=None) == []  # type: ignore[arg-type]


def test_host_ports_the_files_move_are_said_as_such_not_as_drift() -> None:
    """Another route given the service's port (`host_port`) moves its assigned port: the files changed it,
    nobody on the node; the plan said "drift: the container spec on the node differs"."""
    old = dataclasses.replace(desired(doc(["GREETING=hi"]), "h1"), ports={"hello/0": 20001})
    new = dataclasses.replace(old, ports={"hello/0": 20002})
    assert spec_hashes(old) != spec_hashes(new)  # the port is part of its containers' spec
    had = ManifestService(hash="h1", stage="services", containers=["hello"], images={"hello": "r/demo/hello:1"},
                          ports={"hello/0": 20001})  # fmt: skip
    [act] = _service_actions(SimpleNamespace(name="n1"), "hello", new, had, running(old),  # type: ignore[arg-type]
                             old_spec=sent(old))  # fmt: skip
    assert act.kind == "replace" and act.reason.startswith("its host ports move: hello/0: 20001 → 20002"), act
    [act] = _service_actions(SimpleNamespace(name="n1"), "hello", old, had, running(new),  # type: ignore[arg-type]
                             old_spec=sent(old))  # fmt: skip
    assert act.reason == "drift: the container spec on the node differs (hello)"  # the files did not move it
