"""The argv builders and the runner: exact command lines for Nix 2.8, errors as McfleetErrors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mcfleet.errors import ToolMissing
from mcfleet.nix import argv as nixargv
from mcfleet.nix.attrs import attr, system_for
from mcfleet.nix.closures import build_agent, needs_nixpkgs
from mcfleet.nix.runner import NixError, eval_expr, run_nix


def test_nix_config_enables_flakes_offline_and_without_build_users() -> None:
    text = nixargv.nix_config()
    assert "experimental-features = nix-command flakes\n" in text
    assert "sandbox = false\n" in text
    assert "build-users-group = \n" in text
    assert "substituters = \n" in text
    assert "eval-cache = false\n" in text
    assert "substituters = https://cache.nixos.org\n" in nixargv.nix_config({"substituters": "https://cache.nixos.org"})
    assert nixargv.nix_env(base={"PATH": "/bin"}) == {"PATH": "/bin", "NIX_CONFIG": text}


def test_build_uses_json_for_out_paths_not_print_out_paths() -> None:
    argv = nixargv.build_argv(".", [attr("agent", system="aarch64-linux")], offline=True)
    assert argv == ["nix", "build", "--json", ".#packages.aarch64-linux.mcfleet-agent", "--no-link", "--offline"]
    assert "--print-out-paths" not in argv  # Nix 2.8 lacks it
    assert nixargv.build_argv("/f", ["a", "b"], out_link="result")[-2:] == ["--out-link", "result"]


def test_eval_copy_and_ssh_argv() -> None:
    assert nixargv.eval_argv(".", "lib.findings") == ["nix", "eval", ".#lib.findings", "--json"]
    assert nixargv.eval_argv(".", "x", raw=True, apply="f: f")[3:] == ["--raw", "--apply", "f: f"]
    paths = ["/nix/store/a-x"]
    assert nixargv.copy_argv("ssh://root@rift", paths) == ["nix", "copy", "--to", "ssh://root@rift", *paths]
    assert nixargv.ssh_store_uri("root", "fd00::1") == "ssh-ng://root@[fd00::1]"
    opts = nixargv.ssh_opts(2222, "/k", "/kh")
    assert "StrictHostKeyChecking=yes" in opts and "-p 2222" in opts and "UserKnownHostsFile=/kh" in opts


def test_registry_paths() -> None:
    assert attr("toplevel", host="rift") == "nixosConfigurations.rift.config.system.build.toplevel"
    assert attr("fleet_check", system="aarch64-linux") == "checks.aarch64-linux.fleet"
    assert system_for("arm64") == "aarch64-linux"


def test_missing_nix_binary_is_tool_missing() -> None:
    with pytest.raises(ToolMissing, match="not installed"):
        asyncio.run(run_nix(["nix-binary-that-does-not-exist", "eval"]))


@pytest.mark.nix
def test_nix_failure_is_a_nix_error_with_nix_text(nix_bin: str) -> None:
    with pytest.raises(NixError) as err:
        asyncio.run(eval_expr('throw "the fleet is broken"'))
    assert "the fleet is broken" in err.value.message
    assert "warning:" not in err.value.message
    assert json.dumps(asyncio.run(eval_expr("{ a = 1; }"))) == '{"a": 1}'


@pytest.mark.nix
def test_agent_build_needs_nixpkgs_and_says_so(flake_repo: Path) -> None:
    # Offline here: the closure cannot be built and the error names nixpkgs (blocked,
    # not faked).  On a machine with nixpkgs in its store the build succeeds instead.
    try:
        path = asyncio.run(build_agent(str(flake_repo), "amd64", offline=True))
    except NixError as err:
        assert needs_nixpkgs(err), err.message
    else:
        assert Path(path, "bin", "mcp-agent").exists()
