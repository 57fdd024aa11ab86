"""The real fleet's files against the seed: exod, the derived firewall, /srv dirs, orion's group."""

from __future__ import annotations

from mcfleet.fleet.load import load_fleet
from mcfleet.nix.host_values import host_values
from tests.conftest import REPO


def test_exod_runs_on_rift_in_stage_4_on_8080_and_9090() -> None:
    loaded = load_fleet(REPO)
    [exod] = [s for s in loaded.hosts["rift"].services if s.name == "exod"]
    assert exod.stage == "services"
    assert sorted(p.host_port for c in exod.components for p in c.publish) == [8080, 9090]


def test_rift_firewall_is_its_port_map() -> None:
    # status doc, rift port map: 53 (MCNS), 443/8443/9443 (mc-proxy listeners), 8080/9090 (exod);
    # 9091 is loopback only; the agent's old 9444 is gone (mcfleet's agent listens on a unix socket)
    values = host_values(load_fleet(REPO), "rift")
    assert values["firewall"] == {"tcp": [53, 443, 8080, 8443, 9090, 9443], "udp": [53]}


def test_svc_opens_https_for_the_public_routes() -> None:
    assert host_values(load_fleet(REPO), "svc")["firewall"]["tcp"] == [443]


def test_srv_dirs_are_the_volumes_sgardd_mounts() -> None:
    tmpfiles = host_values(load_fleet(REPO), "rift")["tmpfiles"]
    assert "d /srv/sgard 0750 mcp mcp -" in tmpfiles
    assert not [line for line in tmpfiles if "/srv/sgardd" in line]


def test_orion_keeps_the_group_the_incident_left_and_says_why() -> None:
    mcp = load_fleet(REPO).hosts["orion"].host.users["mcp"]
    assert (mcp.uid, mcp.gid) == (850, 988)
    assert mcp.pin_exception and "gid=988(mcp)" in mcp.pin_exception and "groupmod" in mcp.pin_exception
