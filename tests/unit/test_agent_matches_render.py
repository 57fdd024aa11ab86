"""The agent runs exactly what `mcfleet render` prints (so a recovery by hand runs what the agent runs).

For every service of the real fleet, the agent's container spec (with exactly the ports apply
sends it: the desired state's, from the one allocator, none passed by hand) must equal the
parsed `podman run` argv of `mcfleet render`: same name, image, command, user, restart policy,
volumes, env (incl. $PORT) and published ports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcfleet.agent.spec import container_specs
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.render import render_service

REPO = Path(__file__).resolve().parents[2]
LOADED = load_fleet(REPO)
DESIRED = desired_state(LOADED)
CASES = [(entry, svc) for entry in LOADED.hosts.values() for svc in entry.services]


def _parse(argv: list[str]) -> dict[str, object]:
    opts: dict[str, list[str]] = {"-p": [], "-v": [], "-e": []}
    single: dict[str, str] = {}
    rest = argv[3:]  # podman run -d
    i = 0
    while rest[i].startswith("-"):
        flag, value = rest[i], rest[i + 1]
        if flag in opts:
            opts[flag].append(value)
        else:
            single[flag] = value
        i += 2
    return {"single": single, **opts, "image": rest[i], "cmd": rest[i + 1 :]}


def _published(spec_ports: list[tuple[str, int, int, str]], network: str | None) -> set[str]:
    if network == "host":
        return set()
    return {f"{ip}:{hp}:{cp}" if ip else f"{hp}:{cp}" for ip, hp, cp, _proto in spec_ports}


@pytest.mark.parametrize(("entry", "service"), CASES, ids=[f"{e.host.name}/{s.name}" for e, s in CASES])
def test_agent_spec_equals_rendered_command(entry: object, service: object) -> None:
    from mcfleet.fleet.load import HostEntry
    from mcfleet.fleet.models import Service

    assert isinstance(entry, HostEntry) and isinstance(service, Service)
    assert LOADED.fleet is not None
    wanted = DESIRED[entry.host.name].services[service.name]  # every real-fleet service is active
    assert wanted.spec == service
    assert len(wanted.ports) == sum(len(c.routes) for c in service.components)  # a port for every route
    specs = {s.name: s for s in container_specs(service, wanted.ports)}
    for rendered in render_service(entry, service, LOADED.fleet):
        parsed = _parse(rendered.argv)
        spec = specs[rendered.container]
        comp = next(c for c in service.components if c.name == rendered.component)
        assert parsed["image"] == spec.image
        assert parsed["cmd"] == list(spec.command)
        assert dict(item.split("=", 1) for item in parsed["-e"]) == spec.env  # type: ignore[union-attr]
        assert set(parsed["-v"]) == {
            f"{v.source}:{v.target}" + ("" if v.mode == "rw" else f":{v.mode}") for v in spec.volumes
        }  # type: ignore[arg-type]
        rendered_ports = {p.rsplit("/", 1)[0] for p in parsed["-p"]}  # type: ignore[union-attr]
        agent_ports = _published(
            [(m.host_ip, m.host_port, m.container_port, m.protocol) for m in spec.ports], comp.network
        )
        assert rendered_ports == agent_ports
        single = parsed["single"]
        assert isinstance(single, dict)
        assert single.get("--user") == spec.user
        assert single.get("--restart") == spec.restart
        assert single.get("--network") == spec.network
