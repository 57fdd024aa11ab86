"""A route hostname inside the zone leads to the proxy that routes it; one name, one proxy."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from tests.conftest import REPO

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"  # alpha 10.0.0.1 (web), beta 10.0.0.3, edge1 10.0.0.2
WEB = "hosts/alpha/services/web.json"


def _fleet(tmp_path: Path, *edits: tuple[str, Callable[[Any], None]]) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    for rel, change in edits:
        data = json.loads((root / rel).read_text())
        change(data)
        (root / rel).write_text(json.dumps(data))
    return root


def _records(root: Path) -> dict[str, dict[str, str]]:
    loaded = load_fleet(root)
    assert [f.code for f in check(loaded)] == []
    return {h: {n: r.value for n, r in d.records.items()} for h, d in desired_state(loaded).items() if d.records}


def _web_route(**route: Any) -> Callable[[Any], None]:
    return lambda d: d["components"][0]["routes"].__setitem__(
        0, {"port": 8080, "mode": "l7", "bind": ["10.0.0.1"], **route}
    )


def test_a_public_route_in_the_zone_points_its_name_at_the_edge_and_the_service_name_stays_on_its_node(
    tmp_path: Path,
) -> None:
    root = _fleet(tmp_path, (WEB, _web_route(hostname="www.svc.example.test", public=True)))
    # the edge's proxy alone routes www: its name leads there; web.<zone> names the node itself
    assert _records(root)["alpha"] == {
        "web.svc.example.test": "10.0.0.1",
        "www.svc.example.test": "10.0.0.2",
        "dns.svc.example.test": "10.0.0.1",
    }


def test_an_internal_route_in_the_zone_points_at_its_own_node(tmp_path: Path) -> None:
    root = _fleet(tmp_path, (WEB, _web_route(hostname="www.svc.example.test")))
    assert _records(root)["alpha"]["www.svc.example.test"] == "10.0.0.1"


def test_a_public_service_whose_route_takes_the_default_name_sends_that_name_to_the_edge(tmp_path: Path) -> None:
    root = _fleet(tmp_path, (WEB, _web_route(public=True)))
    assert _records(root)["alpha"]["web.svc.example.test"] == "10.0.0.2"


def test_host_routes_in_the_zone_point_at_the_proxy_that_carries_them(tmp_path: Path) -> None:
    routes = [
        {"hostname": "git.svc.example.test", "mode": "l7", "backend": "10.0.0.3:3000", "public": True},
        {"hostname": "ci.svc.example.test", "mode": "l7", "backend": "127.0.0.1:8000"},
    ]
    root = _fleet(tmp_path, ("hosts/beta/host.json", lambda d: d.update(routes=routes)))
    # owned by beta (its host file declares them); git is on the edge's proxy, ci on beta's own
    assert _records(root)["beta"] == {"git.svc.example.test": "10.0.0.2", "ci.svc.example.test": "10.0.0.3"}


def _split_codes(root: Path) -> list[tuple[str, str, str]]:
    return [(f.code, f.file, f.pointer) for f in check(load_fleet(root))]


def test_one_name_on_two_proxies_is_refused_and_on_one_proxy_is_not(tmp_path: Path) -> None:
    internal = {"name": "api", "port": 8081, "mode": "l7", "listener": 8443, "hostname": "www.svc.example.test"}
    public = {"name": "site", "port": 8082, "mode": "l7", "public": True, "bind": ["10.0.0.1"]}
    both = (
        WEB,
        lambda d: d["components"][0]["routes"].extend([internal, {**public, "hostname": internal["hostname"]}]),
    )
    assert _split_codes(_fleet(tmp_path / "a", both)) == [("route-name-split", WEB, "/components/0/routes/2/public")]
    # two names, or the same name public on both listeners: one proxy per name
    apart = (WEB, lambda d: d["components"][0]["routes"].extend([internal, public]))
    assert _split_codes(_fleet(tmp_path / "b", apart)) == []
    same = (
        WEB,
        lambda d: d["components"][0]["routes"].extend(
            [{**internal, "public": True, "bind": ["10.0.0.1"]}, {**public, "hostname": internal["hostname"]}]
        ),
    )
    assert _split_codes(_fleet(tmp_path / "c", same)) == []


def test_without_an_edge_or_outside_the_zone_a_mixed_name_is_not_split(tmp_path: Path) -> None:
    outside = {"name": "api", "port": 8081, "mode": "l7", "listener": 8443, "hostname": "www.example.test"}
    root = _fleet(tmp_path, (WEB, lambda d: d["components"][0]["routes"].append(outside)))
    assert _split_codes(root) == []  # www.example.test: mcfleet makes no record for it


def test_routes_lists_each_route_with_its_proxy_certificate_and_the_record_its_name_gets(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    extra = {"name": "admin", "port": 9090, "mode": "l4", "listener": 8443, "hostname": "admin.svc.example.test"}
    root = _fleet(
        tmp_path,
        (WEB, _web_route(hostname="www.svc.example.test", public=True)),
        (WEB, lambda d: d["components"][0]["routes"].append(extra)),
    )
    code, out, err = run_cli("-C", str(root), "routes", "--json")
    assert code == 0, err
    data = json.loads(out)
    got = {r["route"]: (r["proxy"], r["public"], r["cert"], r["a_record"]) for r in data["routes"]}
    assert got == {
        "443/www.svc.example.test": ("edge1", True, "/srv/mc-proxy/certs/web.pem", "10.0.0.2"),  # the edge's
        "8443/admin.svc.example.test": ("alpha", False, None, "10.0.0.1"),  # l4: no certificate of the proxy's
        "443/git.example.test": ("edge1", True, "/srv/mc-proxy/certs/git.example.test.pem", None),  # outside the zone
    }
    assert {(n["name"], n["a_record"]) for n in data["names"]} == {
        ("web.svc.example.test", "10.0.0.1"), ("dns.svc.example.test", "10.0.0.1"),
    }  # fmt: skip
    code, out, _err = run_cli("-C", str(root), "routes", "--on", "beta")
    assert (code, out) == (0, "no routes or DNS names declared for these hosts\n")
    code, out, _err = run_cli("-C", str(root), "routes", "--on", "@edge")
    assert "443/www.svc.example.test" in out and "10.0.0.2" in out and "dns.svc.example.test" not in out
