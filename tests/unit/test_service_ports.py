"""A service whose host port another program on the node listens on is refused by the plan (podman
could not start it: apply failed in the middle of its stage); the ports of mcfleet's own
services are not "another program"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcfleet.fleet.desired import DesiredAgent, DesiredHost, DesiredService
from mcfleet.fleet.models import Service
from mcfleet.kinds.service import ServiceKind
from mcfleet.kinds.service_ports import held_by_services, overlaps, wanted_endpoints
from mcfleet.observe.facts import AgentFacts, ContainerFacts, Facts
from mcfleet.observe.manifest import Manifest
from mcfleet.observe.parse import parse_listening

PORT = 20001


def hello(bind: list[str] | None = None, publish: list[dict[str, Any]] | None = None) -> DesiredService:
    route: dict[str, Any] = {"port": 8080, "mode": "l7", **({"bind": bind} if bind is not None else {})}
    component = {"name": "hello", "image": "r/demo/hello:1", "routes": [route], "publish": publish or []}
    spec = Service.model_validate({"name": "hello", "stage": "services", "components": [component]})
    return DesiredService("hello", "services", "h1", ("hello",), {}, {"hello/0": PORT}, spec)


def host(svc: DesiredService) -> DesiredHost:
    agent = DesiredAgent(path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/s",
                         unit_sha256="", sha256=None)  # fmt: skip
    return DesiredHost(name="n1", os="debian", arch="amd64", agent=agent, services={"hello": svc})


def plan(svc: DesiredService, listening: list[tuple[str, str, int]] | None, **facts: Any) -> list[tuple[str, str]]:
    f = Facts(host="n1", **{"containers": [], "service_specs": {}, "listening": listening, **facts})
    return [(a.kind, a.reason) for a in ServiceKind().diff(host(svc), f, Manifest(), now=datetime(2026, 1, 1))]


def test_a_program_listening_on_a_services_port_refuses_the_service_with_what_to_do() -> None:
    [(kind, reason)] = plan(hello(), [("tcp", "127.0.0.1", PORT)], ports_held=[])
    assert kind == "refuse"
    assert reason == (f"service hello publishes on a port another program on n1 listens on (127.0.0.1:{PORT}): "
                      "podman could not start its container")  # fmt: skip
    f = Facts(host="n1", containers=[], service_specs={}, listening=[("tcp", "::", PORT)], ports_held=[])
    [act] = ServiceKind().diff(host(hello()), f, Manifest(), now=datetime(2026, 1, 1))
    assert f"[::]:{PORT}" in act.reason and act.hint is not None
    assert f"ss -tulpn '( sport = :{PORT} )'" in act.hint and "hello.json" in act.hint


def test_nothing_is_refused_for_mcfleets_own_ports_another_address_or_protocol_or_on_a_guess() -> None:
    taken = [("tcp", "127.0.0.1", PORT)]
    assert [k for k, _ in plan(hello(), taken, ports_held=[("tcp", PORT)])] == ["create"]  # its own forwarder
    assert [k for k, _ in plan(hello(), [("tcp", "::1", PORT)], ports_held=[])] == ["create"]
    assert [k for k, _ in plan(hello(), [("udp", "127.0.0.1", PORT)], ports_held=[])] == ["create"]
    assert [k for k, _ in plan(hello(), [("tcp", "127.0.0.1", PORT + 1)], ports_held=[])] == ["create"]
    assert [k for k, _ in plan(hello(), None, ports_held=[])] == ["create"]  # the node's sockets not asked
    # the agent installed but its ports unknown (it did not answer): nothing is refused on a guess
    present = AgentFacts(path="/srv/mcp/mcp-agent", present=True)
    assert [k for k, _ in plan(hello(), taken, agent=present)] == ["create"]
    assert [k for k, _ in plan(hello(), taken, ports_held=[], services_error="timed out")] == ["create"]
    # no agent yet (a first apply): nothing of mcfleet's can hold the port
    assert [k for k, _ in plan(hello(), taken)] == ["refuse"]


def test_a_fixed_udp_publish_conflicts_only_with_a_udp_listener() -> None:
    dns = hello(publish=[{"host_port": 53, "container_port": 53, "protocol": "udp"}])
    assert ("udp", "", 53) in wanted_endpoints(dns)
    assert [k for k, _ in plan(dns, [("udp", "127.0.0.53", 53)], ports_held=[])] == ["refuse"]
    assert [k for k, _ in plan(dns, [("tcp", "127.0.0.53", 53)], ports_held=[])] == ["create"]


def test_wildcards_cover_the_addresses_of_their_family_and_the_dual_stack_one_both() -> None:
    assert overlaps("127.0.0.1", "0.0.0.0") and overlaps("0.0.0.0", "10.0.0.5") and overlaps("127.0.0.1", "::")
    assert overlaps("::", "127.0.0.1") and overlaps("", "::1") and overlaps("10.0.0.5", "10.0.0.5")
    assert not overlaps("127.0.0.1", "10.0.0.5") and not overlaps("::1", "0.0.0.0") and not overlaps("0.0.0.0", "::1")


def test_the_ports_the_agents_services_hold_whatever_their_containers_state() -> None:
    """A container podman restarts in a loop is `exited` between runs while its port forwarder still listens
    (seen on the lab: the plan refused the service whose bad file apply was about to fix)."""
    spec = {"components": [{"publish": [{"host_port": 53, "protocol": "udp"}, {"host_port": 5353}, "junk"]}]}
    facts = {
        "containers": [
            {"name": "hello", "state": "running", "labels": {"io.mcfleet.service": "hello"}},
            {"name": "db", "state": "exited", "labels": {"io.mcfleet.service": "db"}},
        ],
        "registry": [
            {"name": "hello", "ports": {"hello/8080": PORT}, "spec": spec},
            {"name": "db", "ports": {"db/5432": 20002}, "spec": {}},
            "junk",
        ],
    }
    assert held_by_services(facts) == [("tcp", 5353), ("tcp", PORT), ("tcp", 20002), ("udp", 53)]
    assert held_by_services({}) == []


def test_the_kernels_socket_table_addresses_are_decoded() -> None:
    text = ("tcp 0100007F:4E21\ntcp 00000000000000000000000001000000:0035\n"
            "udp 00000000:0035\nbad line\ntcp 0100007F:zz\n")  # fmt: skip
    assert parse_listening(text) == [("tcp", "127.0.0.1", 20001), ("tcp", "::1", 53), ("udp", "0.0.0.0", 53)]
    assert parse_listening("absent") is None and parse_listening("") == []


def test_ports_a_running_container_of_mcfleets_publishes_are_its_own_when_the_registry_lost_it() -> None:
    """The agent's registry removed or reset beside running containers: its ports are not another program's."""
    running = {"name": "hello", "state": "running", "published": [f"tcp/{PORT}", "udp/5353"]}
    stopped = {"name": "old", "state": "exited", "published": ["tcp/20002"]}
    assert held_by_services({"registry": [], "containers": [running, stopped]}) == [("tcp", PORT), ("udp", 5353)]
    taken = [("tcp", "127.0.0.1", PORT)]
    container = ContainerFacts(name="hello", state="running", published=[f"tcp/{PORT}"])
    # (its containers run, and no apply recorded it: an update, not a refusal)
    assert [k for k, _ in plan(hello(), taken, ports_held=[("tcp", PORT)], containers=[container])] == ["update"]
    # an older agent does not say which ports a container publishes: the service's own running container
    # holds the ones it publishes; a container of the service that does not run holds none
    older = ContainerFacts(name="hello", state="running")
    assert [k for k, _ in plan(hello(), taken, ports_held=[], containers=[older])] == ["update"]
    exited = ContainerFacts(name="hello", state="exited")
    assert [k for k, _ in plan(hello(), taken, ports_held=[], containers=[exited])] == ["refuse"]
    # a newer agent's list is taken as it is: the running container publishes another port
    elsewhere = ContainerFacts(name="hello", state="running", published=["tcp/20009"])
    assert [k for k, _ in plan(hello(), taken, ports_held=[], containers=[elsewhere])] == ["refuse"]
