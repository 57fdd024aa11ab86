"""T3 (needs MCFLEET_NIXPKGS = a full nixpkgs checkout, e.g. nixos-24.11): nixosSystem for
rift and orion, and the toplevel drvPath for both architectures; the packages and the
deploy app evaluate too.  Never runs on the CI machine (nixpkgs cannot be fetched there);
it must run on a user's machine:

    MCFLEET_NIXPKGS=/path/to/nixpkgs .venv/bin/pytest -m nix tests/nix/test_nixos_t3.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mcfleet.nix.argv import eval_argv
from tests.fixtures_nix import run_nix

pytestmark = [pytest.mark.nix, pytest.mark.slow]


@pytest.fixture(scope="module")
def nixpkgs(nix_bin: str) -> Path:
    value = os.environ.get("MCFLEET_NIXPKGS")
    if not value:
        pytest.skip("T3 needs a full nixpkgs checkout: set MCFLEET_NIXPKGS (nixpkgs cannot be fetched here)")
    path = Path(value)
    if not (path / "nixos" / "lib" / "eval-config.nix").is_file():
        pytest.fail(f"MCFLEET_NIXPKGS={value} is not a nixpkgs checkout (no nixos/lib/eval-config.nix)")
    return path


def _eval(repo: Path, nixpkgs: Path, attr: str, apply: str | None = None) -> object:
    argv = [
        *eval_argv(".", attr, apply=apply, offline=True),
        "--override-input",
        "nixpkgs",
        f"path:{nixpkgs}",
        "--no-write-lock-file",
    ]
    result = run_nix(repo, *argv)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("host", ["rift", "orion"])
@pytest.mark.parametrize("system", ["x86_64-linux", "aarch64-linux"])
def test_toplevel_drv_path(flake_repo: Path, nixpkgs: Path, host: str, system: str) -> None:
    drv = _eval(
        flake_repo,
        nixpkgs,
        "lib.mkNixosSystem",
        f'f: (f {{ name = "{host}"; system = "{system}"; }}).config.system.build.toplevel.drvPath',
    )
    assert isinstance(drv, str) and drv.startswith("/nix/store/") and drv.endswith(".drv")


@pytest.mark.parametrize("host", ["rift", "orion"])
def test_nixos_configuration_has_the_mcfleet_values(flake_repo: Path, nixpkgs: Path, host: str) -> None:
    apply = (
        "c: { uid = c.config.users.users.mcp.uid; ns = c.config.networking.nameservers; "
        "exec = c.config.systemd.services.mcp-agent.serviceConfig.ExecStart; "
        'unit = c.config.systemd.units."mcp-agent.service".text; }'
    )
    got = _eval(flake_repo, nixpkgs, f"nixosConfigurations.{host}", apply)
    assert isinstance(got, dict)
    assert got["uid"] == 850
    assert got["ns"][-2:] == ["1.1.1.1", "8.8.8.8"]
    assert got["exec"] == "/srv/mcp/mcp-agent"
    assert "ExecStart=/srv/mcp/mcp-agent" in got["unit"]


@pytest.mark.parametrize("system", ["x86_64-linux", "aarch64-linux"])
def test_packages_and_deploy_app_evaluate(flake_repo: Path, nixpkgs: Path, system: str) -> None:
    for name in ("mcfleet", "mcfleet-agent"):
        drv = _eval(flake_repo, nixpkgs, f"packages.{system}.{name}.drvPath")
        assert isinstance(drv, str) and drv.endswith(".drv")
    program = _eval(flake_repo, nixpkgs, f"apps.{system}.deploy.program")
    assert isinstance(program, str) and program.endswith("/bin/mcfleet-deploy")
    assert isinstance(_eval(flake_repo, nixpkgs, f"checks.{system}.validate.drvPath"), str)


@pytest.mark.parametrize("system", ["x86_64-linux", "aarch64-linux"])
def test_dev_shell_evaluates(flake_repo: Path, nixpkgs: Path, system: str) -> None:
    drv = _eval(flake_repo, nixpkgs, f"devShells.{system}.default.drvPath")
    assert isinstance(drv, str) and drv.endswith(".drv")
