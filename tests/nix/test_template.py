"""T1: mcfleet used from another flake, as a NixOS user starts: `nix flake init -t <mcfleet>`.

The template is a fleet folder of the user's own (fleet.json, one NixOS host, flake.nix with
`inputs.mcfleet`).  Here mcfleet is this checkout (`--override-input mcfleet <checkout>`),
everything runs offline: the files validate, the pure fleet check of the flake evaluates the
USER's folder (and fails with the finding when it is broken), the host list and derived values
come from it, and the flake's devShells/apps are mcfleet's.  Evaluating the NixOS systems needs
nixpkgs: T2 does it with nixpkgs' lib (tests/nix/test_modules_t2.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcfleet.nix.argv import build_argv, eval_argv
from mcfleet.nix.lib_eval import nix_path
from tests.conftest import run_cli
from tests.fixtures_nix import run_nix

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "nix" / "templates" / "fleet"
FLEET_FILES = ("fleet.json", "hosts/node1/host.json", ".gitignore")


def init_user_flake(mcfleet: Path, dest: Path) -> Path:
    """`nix flake init -t <mcfleet>` in a new folder, as a user runs it."""
    dest.mkdir(parents=True)
    result = run_nix(dest, "nix", "flake", "init", "-t", str(mcfleet), "--offline")
    assert result.returncode == 0, result.stderr
    return dest


def override(mcfleet: Path) -> list[str]:
    return ["--override-input", "mcfleet", str(mcfleet), "--no-write-lock-file"]


def user_eval(user: Path, mcfleet: Path, attr: str, apply: str | None = None) -> Any:
    result = run_nix(user, *eval_argv(".", attr, apply=apply, offline=True), *override(mcfleet))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_flake_init_writes_a_fleet_that_validates(flake_repo: Path, tmp_path: Path) -> None:
    user = init_user_flake(flake_repo, tmp_path / "myfleet")
    assert sorted(str(p.relative_to(user)) for p in user.rglob("*") if p.is_file()) == sorted(
        ["flake.nix", *FLEET_FILES]
    )
    flake = (user / "flake.nix").read_text()
    assert "inputs.mcfleet.url" in flake and "mcfleet.lib.mkNixosConfigurations { fleet = ./.; }" in flake
    code, out, err = run_cli("validate", "-C", str(user))
    assert code == 0, out + err


def test_template_fleet_is_what_mcfleet_init_writes(tmp_path: Path) -> None:
    # One starting fleet, whichever way a user starts (`mcfleet init --os nixos` adds schemas/).
    code, out, err = run_cli("init", str(tmp_path / "init"), "--os", "nixos")
    assert code == 0, out + err
    for name in FLEET_FILES:
        assert (TEMPLATE / name).read_text() == (tmp_path / "init" / name).read_text(), (
            f"nix/templates/fleet/{name} differs from `mcfleet init --os nixos`: copy the new file over"
        )


def test_the_users_flake_checks_the_users_folder_offline(flake_repo: Path, tmp_path: Path) -> None:
    user = init_user_flake(flake_repo, tmp_path / "myfleet")
    # the host list and derived values come from the user's folder, not mcfleet's own fleet
    assert user_eval(user, flake_repo, "nixosConfigurations", "builtins.attrNames") == ["node1"]
    node1 = user_eval(user, flake_repo, "lib.hosts.node1")
    assert node1["users"]["mcp"]["uid"] == 850
    assert node1["nameservers"] == ["1.1.1.1", "9.9.9.9"]
    assert user_eval(user, flake_repo, "devShells", "builtins.attrNames") == ["aarch64-linux", "x86_64-linux"]
    assert user_eval(user, flake_repo, "apps.x86_64-linux.deploy.type") == "app"

    build = [*build_argv(".", ["checks.x86_64-linux.fleet"], offline=True), *override(flake_repo)]
    result = run_nix(user, *build)
    assert result.returncode == 0, result.stderr
    out = Path(json.loads(result.stdout)[0]["outputs"]["out"]).read_text()
    assert out.startswith("ok: 1 host valid (node1)"), out

    host = user / "hosts" / "node1" / "host.json"
    data = json.loads(host.read_text())
    data["users"]["mcp"]["uid"] = 995
    host.write_text(json.dumps(data, indent=2) + "\n")
    result = run_nix(user, *build)
    assert result.returncode != 0
    assert "pin-mismatch: hosts/node1/host.json#/users/mcp/uid: mcp has uid 995 on node1" in result.stderr


def _lib_call(mcfleet: Path, attr: str, apply: str) -> subprocess.CompletedProcess[str]:
    # --impure: the fleet folder is a path outside the flake, as in a user's flake calling mcfleet.lib
    return run_nix(mcfleet, *eval_argv(".", attr, apply=apply, offline=True), "--impure")


def test_mk_nixos_system_takes_the_users_folder_and_names_a_wrong_host(flake_repo: Path, tmp_path: Path) -> None:
    user = init_user_flake(flake_repo, tmp_path / "myfleet")
    folder = nix_path(user)
    module = _lib_call(flake_repo, "lib.hostModule", f'f: (f {folder} "node1")')
    assert module.returncode == 0, module.stderr
    values = json.loads(module.stdout)
    assert values["networking"]["hostName"] == "node1"
    assert values["mcfleet"]["users"]["mcp"]["uid"] == 850
    assert values["mcfleet"]["dns"]["nameservers"] == ["1.1.1.1"]

    wrong = _lib_call(flake_repo, "lib.mkNixosSystem", f'f: (f {{ fleet = {folder}; name = "nope"; }}).config')
    assert wrong.returncode != 0
    assert f"mcfleet.lib.mkNixosSystem: {user}/hosts has no host named 'nope' (hosts: node1)" in wrong.stderr
    host = user / "hosts" / "node1" / "host.json"
    host.write_text(host.read_text().replace('"nixos"', '"debian"'))
    debian = _lib_call(flake_repo, "lib.mkNixosSystem", f'f: (f {{ fleet = {folder}; name = "node1"; }}).config')
    assert debian.returncode != 0
    assert "host 'node1' of " in debian.stderr and 'has "os": "debian" in its host.json' in debian.stderr
