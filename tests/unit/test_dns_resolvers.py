"""Resolvers that fail over: what mcfleet writes per mechanism, and the rules that refuse the rest."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.models import Dns
from mcfleet.fleet.resolvers import resolver_file, written_servers, zone_servers, zone_unit_text
from mcfleet.fleet.rules import check
from tests.conftest import REPO

# The minimal fleet and its writer come from the generator of tests/data (a script, not a package).
_spec = importlib.util.spec_from_file_location("bad_fleets_make", REPO / "tests" / "data" / "bad-fleets" / "_make.py")
assert _spec is not None and _spec.loader is not None
_make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_make)
minimal, write = _make.minimal, _make.write


def _codes(root: Path) -> list[tuple[str, str, str]]:
    return [(f.code, f.file, f.pointer) for f in check(load_fleet(root))]


def _fleet(tmp_path: Path, change: Any) -> Path:
    files = copy.deepcopy(minimal())
    change(files)
    write(tmp_path / "f", files)
    return tmp_path / "f"


def test_glibc_gets_three_servers_with_the_fallback_third_and_short_timeouts() -> None:
    dns = Dns(nameservers=["100.95.252.120", "192.168.88.181"], fallback=["1.1.1.1", "8.8.8.8"])
    f = resolver_file(dns)
    assert f.path == "/etc/resolv.conf"
    lines = f.text.splitlines()
    servers = [x.split()[1] for x in lines if x.startswith("nameserver")]
    assert servers == ["100.95.252.120", "192.168.88.181", "1.1.1.1"]
    assert "options timeout:1 attempts:2" in lines
    assert "# not written, glibc would never ask them: 8.8.8.8" in lines


def test_resolved_gets_the_fallbacks_globally_and_the_zone_per_link() -> None:
    dns = Dns(resolver="systemd-resolved", nameservers=["10.0.0.1", "10.0.0.2"], fallback=["1.1.1.1", "8.8.8.8"])
    f = resolver_file(dns)
    assert f.path == "/etc/systemd/resolved.conf.d/mcfleet.conf"
    assert "DNS=1.1.1.1 8.8.8.8" in f.text.splitlines()
    assert "FallbackDNS" not in f.text.replace("# FallbackDNS=", "")
    assert written_servers(dns) == ["1.1.1.1", "8.8.8.8"]
    assert zone_servers(dns) == ["10.0.0.1", "10.0.0.2"]
    unit = zone_unit_text(dns, "svc.example.test")
    assert unit is not None
    execs = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert len(execs) == 1
    assert 'zone=svc.example.test; servers="10.0.0.1 10.0.0.2"' in execs[0]
    assert 'resolvectl domain $$d "~$$zone"' in execs[0] and "default-route $$d no" in execs[0]
    # systemd would expand a single `$`, and a backslash or `%` would be unescaped or a specifier
    body = execs[0].replace("$$", "")
    assert "$" not in body and "\\" not in body and "%" not in body
    # glibc has no per-domain routing: no unit
    assert zone_unit_text(Dns(nameservers=["10.0.0.1"], fallback=["1.1.1.1"]), "svc.example.test") is None


def test_resolved_without_a_public_fallback_keeps_every_server_in_dns() -> None:
    dns = Dns(resolver="systemd-resolved", nameservers=["10.0.0.1"], fallback=["10.0.0.1"])
    assert written_servers(dns) == ["10.0.0.1"]
    assert zone_unit_text(dns, "svc.example.test") is None


def test_real_fleet_every_host_reaches_a_public_fallback() -> None:
    loaded = load_fleet(REPO)
    assert check(loaded) == []
    for name, entry in loaded.hosts.items():
        servers = written_servers(entry.host.dns)  # glibc's resolv.conf, or resolved's global DNS=
        assert "1.1.1.1" in servers, name
    # rift runs systemd-resolved (it holds port 53 on localhost): the public ones in DNS=, the zone per link
    rift = resolver_file(loaded.hosts["rift"].host.dns)
    assert "DNS=1.1.1.1 8.8.8.8" in rift.text
    assert zone_servers(loaded.hosts["rift"].host.dns) == ["192.168.88.181", "100.95.252.120"]
    # svc is a VPS: rift's LAN address is not one of its resolvers
    assert "192.168.88.181" not in loaded.hosts["svc"].host.dns.nameservers


@pytest.mark.parametrize(
    ("dns", "expect"),
    [
        # 4 servers through glibc with the fallback 4th: never asked
        (
            {"nameservers": ["10.0.0.1", "10.0.0.53", "10.0.1.53"], "fallback": ["1.1.1.1"]},
            [("dns-fallback-unreached", "hosts/beta/host.json", "/dns/fallback/0")],
        ),
        # the same servers through resolved: it switches to the next DNS= server, so it fails over
        (
            {
                "resolver": "systemd-resolved",
                "nameservers": ["10.0.0.1", "10.0.0.53", "10.0.1.53"],
                "fallback": ["1.1.1.1"],
            },
            [],
        ),
        # two fleet servers + two public ones through glibc: the 3rd is public, fine (the 4th is dropped)
        ({"nameservers": ["10.0.0.1", "10.0.0.53"], "fallback": ["1.1.1.1", "8.8.8.8"]}, []),
        # an internal fallback first pushes the public one to 4th place: both problems are named
        (
            {"nameservers": ["10.0.0.1", "10.0.0.53"], "fallback": ["10.0.0.2", "1.1.1.1"]},
            [
                ("dns-fallback-internal", "hosts/beta/host.json", "/dns/fallback/0"),
                ("dns-fallback-unreached", "hosts/beta/host.json", "/dns/fallback/1"),
            ],
        ),
        # public resolvers only in FallbackDNS=
        (
            {"resolver": "systemd-resolved", "nameservers": ["10.0.0.1"], "fallback": [], "fallback_dns": ["9.9.9.9"]},
            [("dns-fallback-unused", "hosts/beta/host.json", "/dns/fallback_dns")],
        ),
    ],
)
def test_resolver_rules(tmp_path: Path, dns: dict[str, Any], expect: list[tuple[str, str, str]]) -> None:
    root = _fleet(tmp_path, lambda f: f["hosts/beta/host.json"].__setitem__("dns", dns))
    assert sorted(_codes(root)) == sorted(expect)


def test_resolvers_reachable_per_tags(tmp_path: Path) -> None:
    def change(f: dict[str, Any]) -> None:
        beta = f["hosts/beta/host.json"]
        beta["tags"] = ["tailnet", "public"]  # a VPS on the Tailnet: no LAN
        beta["dns"] = {"nameservers": ["100.95.252.120", "192.168.88.181"], "fallback": ["1.1.1.1"]}

    root = _fleet(tmp_path, change)
    assert _codes(root) == [("dns-unreachable", "hosts/beta/host.json", "/dns/nameservers/1")]


def test_an_address_listed_twice_by_one_host(tmp_path: Path) -> None:
    root = _fleet(tmp_path, lambda f: f["hosts/beta/host.json"].__setitem__("addresses", ["10.0.0.3", "10.0.0.3"]))
    assert _codes(root) == [("address-duplicate", "hosts/beta/host.json", "/addresses/1")]


def test_a_uid_in_the_normal_user_range(tmp_path: Path) -> None:
    def change(f: dict[str, Any]) -> None:
        f["hosts/edge1/host.json"]["users"]["backup"] = {"uid": 1001, "gid": 60500}

    root = _fleet(tmp_path, change)
    assert _codes(root) == [("id-dynamic-range", "hosts/edge1/host.json", "/users/backup/uid")]
    [finding] = check(load_fleet(root))
    assert "debian's dynamic user range 1000-60000" in finding.message


def test_schema_knows_the_resolver_fields() -> None:
    schema = json.loads((REPO / "schemas" / "host.schema.json").read_text())
    dns = schema["$defs"]["Dns"]["properties"]
    assert set(dns) >= {"resolver", "nameservers", "fallback", "fallback_dns"}
