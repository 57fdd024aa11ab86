"""render: the exact podman run commands, checked against the runbook's own commands."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from mcfleet.fleet.derive import assign_ports
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.models import Fleet, Service
from tests.conftest import REPO, run_cli

# docs/disaster-recovery.md, "Stage 1: MCNS (DNS)", copied verbatim.
RUNBOOK_MCNS = r"""
podman run -d --name mcns --restart unless-stopped \
  -p 192.168.88.181:53:53/tcp \
  -p 192.168.88.181:53:53/udp \
  -p 100.95.252.120:53:53/tcp \
  -p 100.95.252.120:53:53/udp \
  -p 127.0.0.1:38443:8443 \
  -v /srv/mcns:/srv/mcns \
  mcr.svc.mcp.metacircular.net:8443/mcns:v1.2.0 \
  server --config /srv/mcns/mcns.toml
"""

RUNBOOK_MCR_WEB = r"""
podman run -d --name mcr-web --restart unless-stopped \
  --user 0:0 \
  -v /srv/mcr:/srv/mcr \
  -p 127.0.0.1:28080:8080 \
  mcr.svc.mcp.metacircular.net:8443/mcr-web:v1.3.2 \
  server --config /srv/mcr/mcr.toml
"""


def _parts(argv: list[str]) -> tuple[set[tuple[str, str]], list[str]]:
    """(option, value) pairs as a set, and the positional tail (image + args) in order."""
    assert argv[:3] == ["podman", "run", "-d"]
    pairs, i = set(), 3
    while argv[i].startswith("-"):
        pairs.add((argv[i], argv[i + 1]))
        i += 2
    return pairs, argv[i:]


def _render(*args: str) -> list[dict[str, object]]:
    code, out, err = run_cli("render", *args, "-C", str(REPO), "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_render_mcns_equals_the_runbook() -> None:
    [item] = _render("mcns")
    assert _parts(item["argv"]) == _parts(shlex.split(RUNBOOK_MCNS.replace("\\\n", " ")))  # type: ignore[arg-type]
    assert item["container"] == "mcns"


def test_render_mcr_web_is_the_runbook_plus_its_port_env() -> None:
    items = {i["component"]: i for i in _render("mcr", "--host", "rift")}
    pairs, tail = _parts(items["web"]["argv"])  # type: ignore[arg-type]
    want_pairs, want_tail = _parts(shlex.split(RUNBOOK_MCR_WEB.replace("\\\n", " ")))
    assert pairs == want_pairs | {("-e", "PORT=8080")}
    assert tail == want_tail
    api_pairs, _ = _parts(items["api"]["argv"])  # type: ignore[arg-type]
    assert {("--name", "mcr-api"), ("-p", "127.0.0.1:28443:8443"), ("-e", "PORT_GRPC=9443")} <= api_pairs


def test_host_network_has_no_port_mappings() -> None:
    [item] = _render("mc-proxy")
    argv = item["argv"]
    assert argv[7:9] == ["--network", "host"]  # type: ignore[index]
    assert "-p" not in argv  # type: ignore[operator]


def test_text_output_is_a_runnable_shell_command() -> None:
    code, out, _err = run_cli("render", "kls", "-C", str(REPO))
    assert code == 0
    command = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[-3:] == ["mcr.svc.mcp.metacircular.net:8443/kls:v0.2.0", "-f", "/srv/kls/kls.conf"]
    assert "100.95.252.120:58080:8080" in argv


def test_render_a_whole_host_in_boot_order() -> None:
    items = _render("--host", "rift")
    order = [i["service"] for i in items]
    assert order[0] == "mcns"
    assert order.index("mcp-master") > max(order.index(s) for s in ("mc-proxy", "mcr", "metacrypt"))
    assert order.index("mcq") > order.index("mcp-master")


def test_render_takes_host_and_service_as_words_like_logs_and_snapshot() -> None:
    """`render rift mcr` is `render mcr --host rift`; `render rift` is `render --host rift`."""
    assert _render("rift", "mcr") == _render("mcr", "--host", "rift")
    assert _render("rift") == _render("--host", "rift")
    code, _out, err = run_cli("render", "orion", "mcns", "-C", str(REPO))
    assert code == 2 and "no service named 'mcns' on orion" in err and "`mcfleet render rift mcns`" in err
    code, _out, err = run_cli("render", "rift", "mcr", "extra", "-C", str(REPO))
    assert code == 2 and "too many names: rift mcr extra" in err


def test_unknown_service_suggests_a_name() -> None:
    code, _out, err = run_cli("render", "mqc", "-C", str(REPO))
    assert code == 2
    assert "no service named 'mqc'" in err and "mcq" in err


def test_an_unknown_service_on_a_host_names_that_hosts_services_folder_and_its_services_only() -> None:
    """Was `invalid input: hosts: no service named 'zzz' on orion`, with a hint listing every host's services."""
    code, _out, err = run_cli("render", "orion", "zzz", "-C", str(REPO))
    assert code == 2 and "invalid input: hosts/orion/services: no service named 'zzz' on orion" in err, err
    assert "services: none" in err and "mcq" not in err, err  # orion runs none; rift's are not offered


def test_unknown_host_suggests_a_name() -> None:
    code, _out, err = run_cli("render", "mcns", "--host", "rfit", "-C", str(REPO))
    assert code == 2
    assert "did you mean 'rift'" in err


def _service(routes: list[dict[str, object]], name: str = "app") -> Service:
    return Service.model_validate({"name": name, "components": [{"name": name, "image": "x/y:v1", "routes": routes}]})


def test_assigned_ports_are_deterministic_and_in_range() -> None:
    fleet = Fleet.model_validate({"zone": "z.test", "ports": {"min": 20000, "max": 20009}})
    services = [_service([{"name": "a", "port": 80, "mode": "l7"}, {"name": "b", "port": 81, "mode": "l4"}])]
    services.append(_service([{"port": 90, "mode": "l7", "host_port": 20005}], name="pinned"))
    first = assign_ports("h", services, fleet)
    assert first == assign_ports("h", list(reversed(services)), fleet)
    assert first[("pinned", "pinned", 0)] == 20005
    assigned = [first[("app", "app", 0)], first[("app", "app", 1)]]
    assert len(set(assigned)) == 2 and all(20000 <= p <= 20009 and p != 20005 for p in assigned)


def test_assigned_port_is_rendered_with_its_env(tmp_path: Path) -> None:
    loaded = load_fleet(REPO / "tests/data/fleets/minimal")
    assert loaded.fleet is not None
    from mcfleet.fleet.render import render_service

    entry = loaded.hosts["alpha"]
    web = next(s for s in entry.services if s.name == "web")
    [item] = render_service(entry, web, loaded.fleet)
    port = assign_ports("alpha", entry.services, loaded.fleet)[("web", "web", 0)]
    assert 10000 <= port <= 60000
    assert f"127.0.0.1:{port}:8080" in item.argv
    assert "PORT=8080" in item.argv


def test_ipv6_bind_and_explicit_env_and_host_network_port() -> None:
    from mcfleet.fleet.render import component_argv

    svc = Service.model_validate(
        {
            "name": "app",
            "components": [
                {
                    "name": "api",
                    "image": "x/app:v1",
                    "env": ["PORT=9999", "MODE=prod"],
                    "routes": [{"port": 8080, "mode": "l7", "host_port": 30000, "bind": ["::1", "127.0.0.1"]}],
                },
                {
                    "name": "hostnet",
                    "image": "x/app:v1",
                    "network": "host",
                    "routes": [{"name": "grpc", "port": 9443, "mode": "l4", "host_port": 30001}],
                },
            ],
        }
    )
    ports = {("app", "api", 0): 30000, ("app", "hostnet", 0): 30001}
    api = component_argv(svc, svc.components[0], ports)
    assert "[::1]:30000:8080" in api and "127.0.0.1:30000:8080" in api
    # the route's $PORT comes first, so the service file's explicit PORT wins (podman keeps the last -e)
    assert api.index("PORT=8080") < api.index("PORT=9999")
    hostnet = component_argv(svc, svc.components[1], ports)
    assert "-p" not in hostnet and "PORT_GRPC=30001" in hostnet
    assert hostnet[:5] == ["podman", "run", "-d", "--name", "app-hostnet"]
