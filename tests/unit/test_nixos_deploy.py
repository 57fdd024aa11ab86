"""The NixOS deploy path's pure parts: nix argv (built here, run on the node), the push trust
gate (refused before copying), the node-state parser, the rollback script, the plan's system line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcfleet.apply.nixos import jump_of, parse_state, rollback_script, state_script
from mcfleet.errors import InputError
from mcfleet.fleet.desired import DesiredAgent, DesiredHost
from mcfleet.fleet.load import HostEntry
from mcfleet.fleet.models import Host
from mcfleet.kinds.system import system_diff
from mcfleet.nix import argv as nixargv
from mcfleet.nix.closures import known_hosts_text, push_plan, trust_of
from mcfleet.observe.facts import AgentFacts, Facts

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
TOP = "/nix/store/fbii1bxri1vncssfkd81vnilv70ycn3v-nixos-system-rift"


def entry(ssh: dict[str, Any], nix: dict[str, Any] | None = None) -> HostEntry:
    data: dict[str, Any] = {
        "name": "rift",
        "os": "nixos",
        "arch": "amd64",
        "roles": ["master"],
        "ssh": {"host_key": KEY, **ssh},
        "addresses": ["10.0.0.1", "10.0.0.2"],
        "dns": {"nameservers": ["10.0.0.53"], "fallback": ["1.1.1.1"]},
    }
    if nix is not None:
        data["nix"] = nix
    return HostEntry(Host.model_validate(data), (), Path("."))


def test_node_side_argv() -> None:
    assert nixargv.set_profile_argv(TOP) == ["nix-env", "-p", "/nix/var/nix/profiles/system", "--set", TOP]
    assert nixargv.switch_argv(TOP, "test") == [f"{TOP}/bin/switch-to-configuration", "test"]
    with pytest.raises(ValueError, match="goal must be one of"):
        nixargv.switch_argv(TOP, "reboot")
    assert nixargv.switch_generation_argv(3)[-2:] == ["--switch-generation", "3"]
    assert nixargv.delete_generations_argv([4, 5])[-3:] == ["--delete-generations", "4", "5"]
    assert nixargv.check_validity_argv([TOP]) == ["nix-store", "--check-validity", TOP]
    assert nixargv.sign_argv("/k", [TOP]) == ["nix", "store", "sign", "--key-file", "/k", "--recursive", TOP]
    assert nixargv.diff_closures_argv("/a", "/b") == ["nix", "store", "diff-closures", "/a", "/b"]
    assert nixargv.path_info_argv([TOP], store_uri="ssh-ng://r", recursive=True) == [
        "nix", "path-info", "--json", "--recursive", "--store", "ssh-ng://r", TOP,
    ]  # fmt: skip


def test_store_uri_and_ssh_options() -> None:
    assert nixargv.ssh_store_uri("root", "10.0.0.1") == "ssh-ng://root@10.0.0.1"
    assert nixargv.ssh_store_uri("root", "fd00::1", scheme="ssh") == "ssh://root@[fd00::1]"
    assert nixargv.ssh_store_uri("kyle", "h", become="doas") == "ssh-ng://kyle@h?remote-program=doas%20-n%20nix-daemon"
    assert nixargv.ssh_store_uri("kyle", "h", scheme="ssh", become="sudo").endswith("sudo%20-n%20nix-store")
    opts = nixargv.ssh_opts(2222, "/k", "/kh", jump="root@10.0.0.9:22")
    assert opts.split() == [
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", "2222", "-i", "/k", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/kh", "-o", "GlobalKnownHostsFile=/dev/null", "-J", "root@10.0.0.9:22",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="space"):
        nixargv.ssh_opts(identity_file="/my keys/k")
    assert nixargv.known_hosts_line("10.0.0.1", 22, KEY) == f"10.0.0.1 {KEY}\n"
    assert nixargv.known_hosts_line("10.0.0.1", 2222, KEY) == f"[10.0.0.1]:2222 {KEY}\n"


def test_push_as_root_or_through_sudo_takes_unsigned_paths() -> None:
    root = push_plan(entry({}), "10.0.0.2", "/kh")
    assert (root.store_uri, root.no_check_sigs, root.sign_with) == ("ssh-ng://root@10.0.0.2", True, None)
    assert "UserKnownHostsFile=/kh" in root.ssh_opts
    doas = push_plan(entry({"user": "kyle", "sudo": True, "become": "doas"}), "10.0.0.1", None)
    assert doas.store_uri == "ssh-ng://kyle@10.0.0.1?remote-program=doas%20-n%20nix-daemon"
    assert known_hosts_text(entry({}), "10.0.0.2") == f"10.0.0.2 {KEY}\n"


def test_unsigned_push_as_a_normal_user_is_refused_before_copying(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        trust_of(entry({"user": "kyle"}))
    assert "refuses unsigned paths" in err.value.message and "nix/trust" in (err.value.location or "")
    assert trust_of(entry({"user": "kyle"}, {"trust": "trusted-user"})) == "trusted-user"
    with pytest.raises(InputError, match="signing key file"):
        trust_of(entry({"user": "kyle"}, {"trust": "signed", "public_keys": ["k-1:AAAA"]}))
    key = tmp_path / "secret"
    key.write_text("k-1:secret")
    key.chmod(0o640)
    with pytest.raises(InputError) as err:  # anyone who reads it signs closures the node installs as root
        trust_of(
            entry({"user": "kyle"}, {"trust": "signed", "signing_key_file": str(key), "public_keys": ["k-1:AAAA"]})
        )
    assert "Nix signing key file" in err.value.message and "mode 0640" in err.value.message
    assert err.value.hint == f"chmod 600 {key} (and replace the Nix signing key if others may have read it)"
    assert (err.value.location or "").endswith("#/nix/signing_key_file")
    key.chmod(0o600)
    with pytest.raises(InputError, match="no public key"):
        trust_of(entry({"user": "kyle"}, {"trust": "signed", "signing_key_file": str(key)}))
    signed = push_plan(
        entry({"user": "kyle"}, {"trust": "signed", "signing_key_file": str(key), "public_keys": ["k-1:AAAA"]}),
        "10.0.0.1",
        None,
    )
    assert (signed.no_check_sigs, signed.sign_with) == (False, str(key))
    with pytest.raises(InputError, match="neither is root"):
        trust_of(entry({"user": "kyle"}, {"trust": "root"}))


def test_node_state_is_parsed_from_one_round_trip() -> None:
    host = entry({}).host
    assert "nix-store --check-validity" in state_script(host, TOP)
    assert "[ -e /run/current-system ] && echo current=" in state_script(host, TOP)
    state = parse_state(
        f"current={TOP}\ngeneration=system-7-link\ntarget={TOP}\nhas=1\nactive=active\nnix_env=/run/current-system/sw/bin/nix-env\n"
    )
    assert (state.current, state.generation, state.has_path, state.agent_active) == (TOP, 7, True, "active")
    fresh = parse_state("current=\ngeneration=\ntarget=\nhas=0\nactive=inactive\nnix_env=/usr/bin/nix-env\n")
    assert (fresh.current, fresh.generation, fresh.has_path) == (None, None, False)


def test_rollback_script_lives_in_a_root_owned_dir_and_uses_absolute_nix_env() -> None:
    text = rollback_script("/run/current-system/sw/bin/nix-env")
    assert "NIX_ENV=/run/current-system/sw/bin/nix-env" in text
    assert "LOG=/var/lib/mcfleet/nixos-deadman.log" in text
    assert '[ -e "$TOKEN" ] || exit 0' in text
    assert "@" not in text.replace("$@", "")  # every placeholder filled


def _desired(system: str | None) -> DesiredHost:
    agent = DesiredAgent(
        path="/srv/mcp/mcp-agent", unit="mcp-agent.service", user="mcp", socket="/srv/mcp/mcp-agent.sock",
        unit_sha256="x", sha256=None,
    )  # fmt: skip
    return DesiredHost("rift", "nixos", "amd64", agent, system=system)


def _facts(current: str | None, unit: str = "active") -> Facts:
    return Facts(host="rift", nixos_system=current, agent=AgentFacts(path="/srv/mcp/mcp-agent", unit_active=unit))


def test_plan_shows_the_system_change() -> None:
    old = "/nix/store/8f3k2a1bxxxxxxxxxxxxxxxxxxxxxxxx-nixos-system-rift"
    (act,) = system_diff(_desired(TOP), _facts(old))
    assert (act.phase, act.kind, act.subject) == ("agent", "update", "system")
    assert act.reason == "system 8f3k2a1b-nixos-system-rift → fbii1bxr-nixos-system-rift"
    assert system_diff(_desired(TOP), _facts(TOP)) == []
    (again,) = system_diff(_desired(TOP), _facts(TOP, unit="failed"))
    assert again.reason == "mcp-agent.service is failed"
    assert system_diff(_desired(None), _facts(old)) == []  # not evaluated here: nothing claimed
    (first,) = system_diff(_desired(TOP), _facts(None))
    assert first.kind == "create"


def test_nix_copy_through_a_jump_host_pins_both_keys() -> None:
    node = entry({"jump": "gw"})
    gw_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9ubHktZm9yLXRoZS1taW5pbWFsLWZsZWV0"
    gw = HostEntry(
        Host.model_validate({**node.host.model_dump(mode="json", by_alias=True, exclude_none=True), "name": "gw",
                             "ssh": {"host_key": gw_key, "port": 2200}, "addresses": ["192.0.2.1"]}),
        (), Path("."),
    )  # fmt: skip
    jump = jump_of(node, {"gw": gw, "rift": node})
    assert jump is not None and jump[1] == "192.0.2.1"
    assert known_hosts_text(node, "10.0.0.1", jump) == f"10.0.0.1 {KEY}\n[192.0.2.1]:2200 {gw_key}\n"
    assert "-J root@192.0.2.1:2200" in push_plan(node, "10.0.0.1", "/kh", jump).ssh_opts
    with pytest.raises(InputError, match="not a host of this fleet"):
        jump_of(node, {})
