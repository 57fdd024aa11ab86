"""T1: the flake's pure outputs evaluate OFFLINE with the committed flake.lock, the pure
fleet check builds (and fails with the finding for a broken fleet), every attribute in
mcfleet.nix.attrs.ATTRS exists, and the deploy app's program runs `mcfleet deploy`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.nix.argv import build_argv, eval_argv
from mcfleet.nix.attrs import ATTRS, SYSTEMS
from tests.conftest import run_cli
from tests.fixtures_nix import run_nix

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
SYSTEM_LIST = sorted(SYSTEMS.values())
NIXOS_HOSTS = sorted(n for n, e in load_fleet(REPO).hosts.items() if e.host.os == "nixos")


def _eval(repo: Path, attr: str, apply: str | None = None) -> Any:
    result = run_nix(repo, *eval_argv(".", attr, apply=apply, offline=True))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_lock_pins_a_real_nixpkgs_release(flake_repo: Path) -> None:
    lock = json.loads((REPO / "flake.lock").read_text())
    node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]
    assert node["original"] == {"owner": "NixOS", "ref": "nixos-24.11", "repo": "nixpkgs", "type": "github"}
    assert node["locked"]["rev"] == "50ab793786d9de88ee30ec4e4c24fb4236fc2674"
    assert node["locked"]["narHash"] == "sha256-/bVBlRpECLVzjV19t5KMdMFWSwKLtb5RyXdjz3LJT+g="
    # Nix 2.8 accepts the lock as committed: it neither rewrites nor re-locks it offline.
    result = run_nix(flake_repo, "nix", "flake", "metadata", "--json", "--offline")
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)
    assert meta["locks"]["nodes"]["nixpkgs"]["locked"]["rev"] == node["locked"]["rev"]
    assert json.loads((flake_repo / "flake.lock").read_text()) == lock


def test_pure_outputs_evaluate_offline(flake_repo: Path) -> None:
    assert _eval(flake_repo, "lib.findings") == []
    assert _eval(flake_repo, "lib.valid") is True
    assert _eval(flake_repo, "nixosConfigurations", "builtins.attrNames") == NIXOS_HOSTS
    assert set(_eval(flake_repo, "packages", "builtins.attrNames")) == set(SYSTEM_LIST)
    for system in SYSTEM_LIST:
        assert {"mcfleet", "mcfleet-agent"} <= set(_eval(flake_repo, f"packages.{system}", "builtins.attrNames"))
        assert _eval(flake_repo, f"apps.{system}.deploy.type") == "app"
        checks = set(_eval(flake_repo, f"checks.{system}", "builtins.attrNames"))
        assert {"fleet", "validate"} <= checks
    x86 = set(_eval(flake_repo, "checks.x86_64-linux", "builtins.attrNames"))
    assert {f"toplevel-{h}" for h in NIXOS_HOSTS} <= x86
    modules = set(_eval(flake_repo, "nixosModules", "builtins.attrNames"))
    assert {"default", "users", "podman", "srv-dirs", "agent", "dns", "firewall", "edge", "nix-trust"} <= modules
    rift = _eval(flake_repo, "lib.hosts.rift")
    assert rift["users"]["mcp"]["uid"] == 850
    assert rift["agentUnit"]["execStart"] == "/srv/mcp/mcp-agent"


def _attr_exists(repo: Path, path: str, pure: bool) -> bool:
    if pure:
        return run_nix(repo, *eval_argv(".", path, apply="x: true", offline=True)).returncode == 0
    # Needs nixpkgs beneath some level: walk down while names are listable offline.
    parts = path.split(".")
    for depth in range(1, len(parts)):
        parent, child = ".".join(parts[:depth]), parts[depth]
        result = run_nix(repo, *eval_argv(".", parent, apply="builtins.attrNames", offline=True))
        if result.returncode != 0:
            return depth > 1  # parent is a nixpkgs value: its own presence was checked one level up
        if child not in json.loads(result.stdout):
            return False
    return True


@pytest.mark.parametrize("key", sorted(ATTRS))
def test_registry_attribute_exists_in_the_flake(flake_repo: Path, key: str) -> None:
    spec = ATTRS[key]
    hosts = load_fleet(REPO).hosts
    paths = {
        spec.path(system=system, host=host)
        for system in SYSTEM_LIST
        for host in NIXOS_HOSTS
        # a host's toplevel is a check of its own system only
        if key != "toplevel_check" or SYSTEMS[str(hosts[host].host.arch)] == system
    }
    for path in sorted(paths):
        assert _attr_exists(flake_repo, path, spec.pure), path


def test_fleet_check_builds_for_the_real_fleet(flake_repo: Path) -> None:
    result = run_nix(flake_repo, *build_argv(".", ["checks.x86_64-linux.fleet"], offline=True))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)[0]["outputs"]["out"]
    names = sorted(load_fleet(flake_repo).hosts)
    assert Path(out).read_text().startswith(f"ok: {len(names)} hosts valid ({', '.join(names)})")


def test_uid_change_fails_the_fleet_check_and_validate(flake_copy: Callable[[], Path]) -> None:
    repo = flake_copy()
    _edit_json(repo / "hosts/rift/host.json", lambda d: d["users"]["mcp"].update(uid=995))
    sentence = "mcp has uid 995 on rift but the fleet pins 850"
    result = run_nix(repo, *build_argv(".", ["checks.x86_64-linux.fleet"], offline=True))
    assert result.returncode != 0
    assert f"pin-mismatch: hosts/rift/host.json#/users/mcp/uid: {sentence}" in result.stderr
    assert "the fleet is invalid (1 finding)" in result.stderr
    # `mcfleet validate` says the same sentence for the same files.
    assert [f.message for f in check(load_fleet(repo))] == [sentence]
    code, out, err = run_cli("validate", str(repo))
    assert code == 2
    # findings on stdout (they are the command's data), the count on stderr
    assert f"pin-mismatch: hosts/rift/host.json#/users/mcp/uid: {sentence}" in out
    assert "1 problem(s)" in err


def test_removed_fallback_resolvers_fail_the_fleet_check(flake_copy: Callable[[], Path]) -> None:
    repo = flake_copy()
    _edit_json(repo / "hosts/orion/host.json", lambda d: d["dns"].update(fallback=[]))
    result = run_nix(repo, *build_argv(".", ["checks.x86_64-linux.fleet"], offline=True))
    assert result.returncode != 0
    assert (
        "dns-no-fallback: hosts/orion/host.json#/dns/fallback: host orion has no fallback resolver outside the fleet"
        in result.stderr
    )


def test_deploy_app_runs_mcfleet_deploy(flake_repo: Path, tmp_path: Path) -> None:
    # The app's program is `writeShellScriptBin` of lib.deployScriptText (nixpkgs builds
    # the wrapper; T3).  The text itself is pure: run it with /bin/echo as `mcfleet`.
    text = _eval(flake_repo, "lib.deployScriptText", 'f: f "/bin/echo"')
    script = tmp_path / "mcfleet-deploy"
    script.write_text("#!/bin/sh\n" + text)
    script.chmod(0o755)
    ran = subprocess.run([str(script), "rift", "--dry-run"], capture_output=True, text=True, check=False)
    assert (ran.returncode, ran.stdout) == (0, "deploy rift --dry-run\n")
    usage = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "nix run .#deploy -- rift" in usage.stderr
    # With the real CLI: `nix run .#deploy -- --help` is `mcfleet deploy --help`.
    real = _eval(flake_repo, "lib.deployScriptText", f'f: f "{REPO}/.venv/bin/mcfleet"')
    script.write_text("#!/bin/sh\n" + real)
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0, helped.stderr  # `mcfleet deploy` must exist: its absence is a failure
    assert "Usage: mcfleet deploy [OPTIONS]" in helped.stdout, helped.stdout
