"""Service → container specs: env with $PORT/$PORT_<NAME>, ports, volumes, labels, spec hash; ports."""

from __future__ import annotations

from typing import Any

import pytest

from mcfleet.agent.ports import take_ports
from mcfleet.agent.spec import PortMap, VolumeMap, container_specs
from mcfleet.errors import McfleetError
from mcfleet.fleet.models import Service


def svc(name: str = "mcq", **component: Any) -> Service:
    base: dict[str, Any] = {"name": "api", "image": "mcr.example/mcq:v1.2.0"}
    return Service.model_validate({"name": name, "stage": "services", "components": [{**base, **component}]})


def test_single_unnamed_route_gets_port() -> None:
    service = svc(routes=[{"port": 8443, "mode": "l7"}], env=["A=1"], volumes=["/srv/mcq:/srv/mcq"])
    [spec] = container_specs(service, {"api/0": 23456})
    assert spec.name == "mcq-api"
    assert spec.env == {"A": "1", "PORT": "8443"}  # the port to listen on inside
    assert spec.ports == [PortMap("127.0.0.1", 23456, 8443, "tcp")]
    assert spec.volumes == [VolumeMap("/srv/mcq", "/srv/mcq", "rw")]
    assert spec.labels["io.mcfleet.managed"] == "true"
    assert spec.labels["io.mcfleet.stage"] == "services"
    assert spec.host_port_for(8443) == ("127.0.0.1", 23456)


def test_named_routes_get_port_name() -> None:
    service = svc(routes=[{"name": "rest", "port": 8443, "mode": "l7"}, {"name": "grpc", "port": 9443, "mode": "l4"}])
    [spec] = container_specs(service, {"api/rest": 20001, "api/grpc": 20002})
    assert spec.env == {"PORT_REST": "8443", "PORT_GRPC": "9443"}
    assert "PORT" not in spec.env


def test_spec_hash_changes_with_the_container_shape_only() -> None:
    one = container_specs(svc(env=["A=1"]), {})[0]
    same = container_specs(svc(env=["A=1"], health={"kind": "tcp", "port": 1}), {})[0]
    other = container_specs(svc(env=["A=2"]), {})[0]
    assert one.spec_hash == same.spec_hash  # a health check does not shape the container
    assert one.spec_hash != other.spec_hash
    assert len(one.spec_hash) == 16


def test_the_agent_takes_the_ports_it_is_given_then_pinned_then_registered() -> None:
    a = svc("a", routes=[{"port": 80, "mode": "l7"}])
    b = svc("b", routes=[{"port": 80, "mode": "l7", "host_port": 10000}])
    first = take_ports([(a, {"api/0": 20001}), (b, {})], {})
    assert first == {"a": {"api/0": 20001}, "b": {"api/0": 10000}}  # given; pinned
    again = take_ports([(a, {}), (b, {})], first)
    assert again == first  # the registry's ports when the request names none (boot, Recover)
    asked = take_ports([(a, {"api/0": 10050})], first)
    assert asked["a"] == {"api/0": 10050}  # what the request names wins


def test_port_conflicts_and_missing_ports_are_errors() -> None:
    a = svc("a", routes=[{"port": 80, "mode": "l7", "host_port": 12000}])
    b = svc("b", routes=[{"port": 80, "mode": "l7", "host_port": 12000}])
    with pytest.raises(McfleetError, match="host port 12000 is given to both a/api/0 and b/api/0"):
        take_ports([(a, {}), (b, {})], {})
    c = svc("c", routes=[{"port": 80, "mode": "l7"}, {"port": 81, "mode": "l7"}])
    with pytest.raises(McfleetError, match="no host port given for route api/1 of service c"):
        take_ports([(c, {"api/0": 12001})], {})
