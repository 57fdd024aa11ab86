"""T2 (needs MCFLEET_NIXPKGS_LIB = nixpkgs' lib/): nix/modules evaluated by the real module
system (lib.evalModules) against stand-ins declaring the NixOS options they set, with the
types copied from NixOS (tests/nix/t2/nixos-stand-ins.nix).

rift and orion get the pinned mcp UID/GID and subuid/subgid, the fallback resolvers
after MCNS, the mcp-agent unit with ExecStart=/srv/mcp/mcp-agent and the /srv dirs; a
UID of 995 (in host.json, or forced in a configuration) fails the assertion in one
sentence; so does a host with no fallback resolver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.nix.argv import instantiate_eval_argv
from mcfleet.nix.host_values import host_values
from mcfleet.nix.lib_eval import nix_path

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
EVAL = REPO / "tests" / "nix" / "t2" / "eval.nix"
PIN_SENTENCE = (
    "mcfleet: user mcp has uid 995 gid 850 but the fleet pins it at uid 850 gid 850, "
    "and no pin exception is declared for this host."
)


@pytest.fixture(scope="module")
def nixpkgs_lib(nix_bin: str) -> Path:
    value = os.environ.get("MCFLEET_NIXPKGS_LIB")
    if not value:
        pytest.skip(
            "T2 needs nixpkgs' lib/: set MCFLEET_NIXPKGS_LIB (e.g. nix-community/nixpkgs.lib at ee9522ca, "
            "the last commit that evaluates with Nix 2.8)"
        )
    path = Path(value)
    if not (path / "modules.nix").is_file():
        pytest.fail(f"MCFLEET_NIXPKGS_LIB={value} is not nixpkgs' lib/ (no modules.nix there)")
    return path


def _eval(lib: Path, host: str, *, root: Path = REPO, extra: str = "") -> dict[str, Any]:
    expr = (
        f"import {nix_path(EVAL)} {{ nixpkgsLib = {nix_path(lib)}; repo = {nix_path(REPO)}; "
        f'fleetRoot = {nix_path(root)}; host = "{host}"; extraModules = [ {extra} ]; }}'
    )
    result = subprocess.run(instantiate_eval_argv(expr), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("host", ["rift", "orion"])
def test_nixos_hosts_get_pinned_user_resolvers_and_agent_unit(nixpkgs_lib: Path, host: str) -> None:
    cfg = _eval(nixpkgs_lib, host)
    assert cfg["failedAssertions"] == []
    assert cfg["hostName"] == host
    mcp = cfg["users"]["mcp"]
    declared = load_fleet(REPO).hosts[host].host.users["mcp"]
    assert (mcp["uid"], cfg["groups"]["mcp"]["gid"], mcp["group"]) == (declared.uid, declared.gid, "mcp")
    assert mcp["linger"] is True  # rootless podman needs mcp's user manager without a login
    assert mcp["isSystemUser"] is True and mcp["home"] == "/srv/mcp"
    assert mcp["subUidRanges"] == [{"startUid": 2000000000, "count": 65536}]
    assert mcp["subGidRanges"] == [{"startGid": 2000000000, "count": 65536}]
    assert cfg["podman"] is True
    # MCNS first, then the public fallbacks (incident lesson 2).
    assert cfg["nameservers"][-2:] == ["1.1.1.1", "8.8.8.8"]
    unit = cfg["services"]["mcp-agent"]
    assert unit["serviceConfig"]["ExecStart"] == "/srv/mcp/mcp-agent"
    assert (unit["serviceConfig"]["User"], unit["serviceConfig"]["Group"]) == ("mcp", "mcp")
    assert unit["wantedBy"] == ["multi-user.target"]
    # The module system's values equal the Python twin's (what Debian nodes get).
    values = host_values(load_fleet(REPO), host)
    assert cfg["nameservers"] == values["nameservers"]
    assert cfg["tmpfiles"] == values["tmpfiles"]
    assert cfg["firewall"] == {
        "allowedTCPPorts": values["firewall"]["tcp"],
        "allowedUDPPorts": values["firewall"]["udp"],
    }


def test_edge_host_opens_http_and_https(nixpkgs_lib: Path) -> None:
    cfg = _eval(nixpkgs_lib, "svc")
    assert cfg["failedAssertions"] == []
    assert {80, 443} <= set(cfg["firewall"]["allowedTCPPorts"])
    # svc's mcp predates the pin (992/991) and declares the exception: no assertion.
    assert (cfg["users"]["mcp"]["uid"], cfg["groups"]["mcp"]["gid"]) == (992, 991)


def test_uid_forced_to_995_fails_the_assertion(nixpkgs_lib: Path) -> None:
    cfg = _eval(nixpkgs_lib, "rift", extra="({ lib, ... }: { users.users.mcp.uid = lib.mkForce 995; })")
    assert cfg["failedAssertions"] == [PIN_SENTENCE]


def test_uid_995_in_host_json_fails_the_assertion(nixpkgs_lib: Path, tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(REPO / "hosts", root / "hosts")
    shutil.copy2(REPO / "fleet.json", root / "fleet.json")
    path = root / "hosts" / "rift" / "host.json"
    data = json.loads(path.read_text())
    data["users"]["mcp"]["uid"] = 995
    path.write_text(json.dumps(data))
    assert _eval(nixpkgs_lib, "rift", root=root)["failedAssertions"] == [PIN_SENTENCE]


def test_no_fallback_resolver_fails_the_assertion(nixpkgs_lib: Path) -> None:
    cfg = _eval(nixpkgs_lib, "orion", extra="({ lib, ... }: { mcfleet.dns.fallback = lib.mkForce [ ]; })")
    assert cfg["failedAssertions"] == [
        "mcfleet: this host has no fallback resolver outside the fleet, so it loses all DNS when MCNS is down."
    ]


def test_agent_binary_in_the_store_fails_the_assertion(nixpkgs_lib: Path) -> None:
    # Seed item #10: NixOS owns the unit, not the binary.
    extra = '({ lib, ... }: { mcfleet.agent.execStart = lib.mkForce "/nix/store/x-mcfleet/bin/mcfleet-agent"; })'
    failed = _eval(nixpkgs_lib, "rift", extra=extra)["failedAssertions"]
    assert len(failed) == 1 and "outside it (seed item #10" in failed[0]


def test_a_wrong_option_type_is_an_error(nixpkgs_lib: Path) -> None:
    # The stand-ins really type-check: a string UID is rejected by the module system.
    expr_extra = '({ lib, ... }: { users.users.mcp.uid = lib.mkForce "850"; })'
    with pytest.raises(AssertionError, match="is not of type"):
        _eval(nixpkgs_lib, "rift", extra=expr_extra)


def test_resolvers_fail_over_for_each_mechanism(nixpkgs_lib: Path) -> None:
    # rift runs systemd-resolved: the public fallbacks in the global DNS=, the fleet's zone to MCNS
    # per link (mcfleet-dns-zone.service, the same ExecStart as the Debian unit)
    rift = _eval(nixpkgs_lib, "rift")
    assert rift["failedAssertions"] == []
    assert rift["resolved"] is True
    assert rift["nameservers"] == ["1.1.1.1", "8.8.8.8"]
    unit = rift["services"]["mcfleet-dns-zone"]
    zone = host_values(load_fleet(REPO), "rift")["resolvers"]["zone"]
    assert zone["servers"] == ["192.168.88.181", "100.95.252.120"]
    assert unit["serviceConfig"]["ExecStart"] == zone["exec"]
    assert unit["serviceConfig"]["Type"] == "oneshot" and "multi-user.target" in unit["wantedBy"]
    # orion: glibc reads resolv.conf: at most 3 servers, the fallback among them, short timeouts
    orion = _eval(nixpkgs_lib, "orion")
    assert orion["resolved"] is False
    assert orion["nameservers"] == ["192.168.88.181", "1.1.1.1", "8.8.8.8"]
    assert orion["resolvconfOptions"] == ["timeout:1", "attempts:2"]
    assert "mcfleet-dns-zone" not in orion["services"]  # glibc has no per-domain routing


def test_resolved_enabled_against_host_json_fails_the_assertion(nixpkgs_lib: Path) -> None:
    cfg = _eval(nixpkgs_lib, "orion", extra="({ lib, ... }: { services.resolved.enable = lib.mkForce true; })")
    assert len(cfg["failedAssertions"]) == 1 and "dns.resolver = resolv.conf" in cfg["failedAssertions"][0]


def test_nix_trust_from_the_host_file_adds_to_the_nixos_defaults(nixpkgs_lib: Path, tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(REPO / "hosts", root / "hosts")
    shutil.copy2(REPO / "fleet.json", root / "fleet.json")
    key = "mcfleet-1:5MVRgFZ8Cz8bRNKOl1Dpxn0PqL7TJb5SNDNjRSpr8sU="
    for host, nix in (("rift", {"trust": "signed", "public_keys": [key]}), ("orion", {"trust": "trusted-user"})):
        path = root / "hosts" / host / "host.json"
        data = json.loads(path.read_text())
        data["nix"] = nix
        path.write_text(json.dumps(data))
    rift = _eval(nixpkgs_lib, "rift", root=root)["nixSettings"]
    assert rift["extra-trusted-public-keys"] == [key]
    assert "extra-trusted-users" not in rift
    assert rift["trusted-users"] == ["root"]  # NixOS' defaults are kept, not replaced
    assert len(rift["trusted-public-keys"]) == 1
    orion = _eval(nixpkgs_lib, "orion", root=root)["nixSettings"]
    assert orion["extra-trusted-users"] == ["kyle"]
    assert "extra-trusted-public-keys" not in orion
    # Without `nix` in host.json (the real fleet: pushes go through sudo/doas as root) nothing is added.
    plain = _eval(nixpkgs_lib, "rift")["nixSettings"]
    assert "extra-trusted-users" not in plain and "extra-trusted-public-keys" not in plain


def test_the_agent_package_is_in_the_system_and_linked_from_srv_mcp(nixpkgs_lib: Path) -> None:
    fake = (
        '({ lib, ... }: { mcfleet.agent.package = { type = "derivation"; name = "mcfleet-agent-0.1.0"; '
        'outPath = "/nix/store/00000000000000000000000000000000-mcfleet-agent-0.1.0"; }; })'
    )
    cfg = _eval(nixpkgs_lib, "rift", extra=fake)
    assert cfg["failedAssertions"] == []
    assert "mcfleet-agent-0.1.0" in cfg["systemPackages"]  # in the closure: a GC root while it is the system
    link = "L+ /srv/mcp/mcp-agent - - - - /nix/store/00000000000000000000000000000000-mcfleet-agent-0.1.0/bin/mcp-agent"
    assert link in cfg["tmpfiles"]
    unit = cfg["services"]["mcp-agent"]
    assert unit["serviceConfig"]["ExecStart"] == "/srv/mcp/mcp-agent"  # never a store path
    assert len(unit["restartTriggers"]) == 1  # a new agent package restarts the unit on switch
    # Without a package (nix/lib alone, no nixpkgs) nothing is linked.
    assert not [r for r in _eval(nixpkgs_lib, "rift")["tmpfiles"] if r.startswith("L+")]


# A stand-in for the nixpkgs flake: nixpkgs' lib, with nixosSystem = lib.evalModules over the
# NixOS option stand-ins, and packages that are fake derivations (the agent package is only
# linked, never built, when the module system evaluates).
STUB_NIXPKGS_FLAKE = """{
  outputs = { self }:
    let
      lib = import ./lib;
      fake = name: {
        type = "derivation";
        inherit name;
        outPath = "/nix/store/00000000000000000000000000000000-${name}";
      };
      pkgs = {
        inherit lib;
        callPackage = _: _: fake "mcfleet-agent-0.1.0";
        writeShellScriptBin = name: _: fake name;
      };
      # the options eval-defaults.nix sets for a host without configuration.nix
      systemOptions = { lib, ... }: {
        options.fileSystems = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
        options.boot.loader.grub.device = lib.mkOption { type = lib.types.str; };
        options.system.stateVersion = lib.mkOption { type = lib.types.str; };
      };
    in
    {
      lib = lib // {
        nixosSystem = { system, modules }: lib.evalModules {
          modules = [ ./nixos-stand-ins.nix systemOptions ] ++ modules;
        };
      };
      legacyPackages.x86_64-linux = pkgs;
      legacyPackages.aarch64-linux = pkgs;
    };
}
"""


def test_a_users_flake_gets_nixos_systems_from_the_users_fleet_folder(
    nixpkgs_lib: Path, flake_repo: Path, tmp_path: Path
) -> None:
    from tests.fixtures_nix import run_nix
    from tests.nix.test_template import init_user_flake, override

    stub = tmp_path / "nixpkgs"
    stub.mkdir()
    (stub / "flake.nix").write_text(STUB_NIXPKGS_FLAKE)
    shutil.copytree(nixpkgs_lib, stub / "lib")
    shutil.copy2(REPO / "tests" / "nix" / "t2" / "nixos-stand-ins.nix", stub)
    user = init_user_flake(flake_repo, tmp_path / "myfleet")
    # values only the user's folder has: a second NixOS host with its own resolvers and ids
    second = user / "hosts" / "node2"
    second.mkdir()
    host = json.loads((user / "hosts" / "node1" / "host.json").read_text())
    host.update(name="node2", roles=["worker"], addresses=["192.0.2.11"], arch="arm64")
    host["users"]["deploy"] = {"uid": 30001, "gid": 30001}
    host["dns"] = {"nameservers": ["192.0.2.10"], "fallback": ["9.9.9.9"]}
    (second / "host.json").write_text(json.dumps(host, indent=2) + "\n")

    apply = (
        "cs: builtins.mapAttrs (_: c: { host = c.config.networking.hostName; "
        "ns = c.config.networking.nameservers; uids = builtins.mapAttrs (_: u: u.uid) c.config.users.users; "
        "assertions = map (a: a.message) (builtins.filter (a: !a.assertion) c.config.assertions); "
        'agent = c.config.systemd.services."mcp-agent".serviceConfig.ExecStart; }) cs'
    )
    argv = [
        "nix",
        "eval",
        "--json",
        ".#nixosConfigurations",
        "--apply",
        apply,
        "--offline",
        *override(flake_repo),
        "--override-input",
        "mcfleet/nixpkgs",
        f"path:{stub}",
    ]
    result = run_nix(user, *argv)
    assert result.returncode == 0, result.stderr
    systems = json.loads(result.stdout)
    assert sorted(systems) == ["node1", "node2"]
    assert systems["node2"]["host"] == "node2"
    assert systems["node2"]["ns"][:1] == ["192.0.2.10"] and "9.9.9.9" in systems["node2"]["ns"]
    assert systems["node2"]["uids"] == {"deploy": 30001, "mcp": 850}
    assert systems["node1"]["uids"] == {"mcp": 850}
    assert systems["node1"]["agent"] == "/srv/mcp/mcp-agent"
    assert systems["node1"]["assertions"] == [] and systems["node2"]["assertions"] == []


def test_the_openssl_command_the_plan_asks_on_the_node_is_installed_unless_turned_off(nixpkgs_lib: Path) -> None:
    """The plan checks on the node, with openssl, that each certificate's key is its own and which
    certificate the proxy serves; NixOS installs no openssl command by default."""
    assert "openssl-3.0.15" in _eval(nixpkgs_lib, "rift")["systemPackages"]
    off = "({ lib, ... }: { mcfleet.observe.openssl = false; })"
    assert "openssl-3.0.15" not in _eval(nixpkgs_lib, "rift", extra=off)["systemPackages"]


def test_the_python3_root_runs_on_the_node_is_installed_below_a_hosts_own(nixpkgs_lib: Path) -> None:
    """Apply runs root's file helper and, through a sudo/doas login, the socket relay under the node's
    python3; NixOS puts none on PATH. It is installed at low priority (a python3 the host installs
    itself wins the clash), and not at all when turned off."""
    cfg = _eval(nixpkgs_lib, "rift")
    assert sorted(cfg["systemPackages"]) == ["openssl-3.0.15", "python3-3.11.9"]
    assert cfg["packagePriorities"] == {"openssl-3.0.15": 5, "python3-3.11.9": 10}
    off = "({ lib, ... }: { mcfleet.python.enable = false; })"
    assert _eval(nixpkgs_lib, "rift", extra=off)["systemPackages"] == ["openssl-3.0.15"]
