"""`mcfleet plan` end to end without a node: unreachable hosts are listed, exit 1, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.unit.test_plan_cases import write_case_fleet
from tests.unit.unreachable import closed_port


def _fleet(tmp_path: Path) -> Path:
    port = closed_port()
    case = {
        "hosts": {
            "alpha": {"host": {"roles": ["master"], "addresses": ["127.0.0.1"], "ssh": {"port": port}}},
            "beta": {"host": {"addresses": ["127.0.0.2", "127.0.0.3"], "ssh": {"port": port}}},
        }
    }
    write_case_fleet(tmp_path, case)
    return tmp_path


def test_unreachable_hosts_are_listed_and_exit_1(tmp_path: Path) -> None:
    root = _fleet(tmp_path)
    code, out, err = run_cli("plan", str(root), "--connect-timeout", "2")
    assert code == 1
    assert "alpha: unreachable: no address answered: 127.0.0.1: connection refused" in out
    # both addresses were tried, in order
    assert "127.0.0.2: connection refused; 127.0.0.3: connection refused" in out
    assert "2 hosts unreachable (alpha, beta)" in out
    assert "[alpha] FAILED: unreachable" in err
    assert "Traceback" not in out + err


def test_json_output_and_saved_plan_carry_the_same_data(tmp_path: Path) -> None:
    root = _fleet(tmp_path / "f")
    code, out, _err = run_cli("plan", str(root), "--on", "beta", "--json", "-o", str(tmp_path / "p.json"))
    assert code == 1
    data = json.loads(out)
    assert data["hosts"] == ["beta"]
    assert list(data["unreachable"]) == ["beta"]
    assert json.loads((tmp_path / "p.json").read_text()) == data


def test_invalid_fleet_is_refused_before_connecting(tmp_path: Path) -> None:
    root = _fleet(tmp_path)
    (root / "hosts" / "beta" / "host.json").write_text("{")
    code, _out, err = run_cli("plan", str(root))
    assert code == 2
    assert "invalid fleet" in err


def test_unknown_selection_is_an_input_error(tmp_path: Path) -> None:
    code, _out, err = run_cli("plan", str(_fleet(tmp_path)), "--on", "nosuchhost")
    assert code == 2
    assert "nosuchhost" in err


def test_missing_known_hosts_or_identity_file_is_named_not_blamed_on_the_address(tmp_path: Path) -> None:
    case = {
        "hosts": {
            "alpha": {"host": {"roles": ["master"], "ssh": {"host_key": None, "known_hosts": str(tmp_path / "kh")}}},
            "beta": {"host": {"ssh": {"identity_file": str(tmp_path / "no-key")}}},
        }
    }
    write_case_fleet(tmp_path / "f", case)
    code, out, err = run_cli("plan", str(tmp_path / "f"))
    assert code == 1
    assert f"alpha: unreachable: cannot read the known_hosts file {tmp_path / 'kh'}: No such file or directory" in out
    assert f"beta: unreachable: cannot read the identity file {tmp_path / 'no-key'}" in out
    assert "pin ssh.host_key in host.json" in out
    assert "Traceback" not in out + err


def test_an_identity_file_other_users_can_read_is_refused_as_ssh_refuses_it(tmp_path: Path) -> None:
    """A private key of this user with group or other access (as `ssh` says UNPROTECTED PRIVATE KEY FILE):
    the host is not tried with it, and the message names the file, its mode and the fix."""
    import asyncssh

    key = tmp_path / "id_ed25519"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    key.chmod(0o644)
    write_case_fleet(
        tmp_path / "f", {"hosts": {"beta": {"host": {"roles": ["master"], "ssh": {"identity_file": str(key)}}}}}
    )
    code, out, err = run_cli("plan", str(tmp_path / "f"), "--connect-timeout", "1")
    assert code == 1, err
    assert f"beta: unreachable: the SSH identity file {key} is open to other users (mode 0644)" in out
    assert f"chmod 600 {key}" in out
    assert "Traceback" not in out + err


def test_the_nix_eval_before_observing_a_nixos_host_is_shown() -> None:
    """plan evaluates each NixOS host's system (seconds) before connecting: the progress says so first."""
    from tests.conftest import REPO

    code, _out, err = run_cli("-C", str(REPO), "plan", "--on", "rift", "--connect-timeout", "1")
    assert code == 1  # rift is not reachable from here
    lines = err.splitlines()
    assert lines[0] == "[rift] nix eval: its system's store path, offline (for `~ system old → new`)", err
    assert lines.index("[rift] connecting") > 0


def test_an_out_path_that_cannot_be_a_file_is_refused_before_any_host_is_tried(tmp_path: Path) -> None:
    """A folder, or a path under a file: exit 2 naming it, nothing observed (was an internal IsADirectoryError
    after observing every host)."""
    root = _fleet(tmp_path / "f")
    (tmp_path / "a-file").write_text("x")
    cases = [
        (tmp_path, "is a folder: -o names the plan file"),
        (tmp_path / "a-file" / "p.json", f"{tmp_path / 'a-file'} is a file, so no folder can hold the plan"),
    ]
    for out, said in cases:
        code, stdout, err = run_cli("plan", str(root), "-o", str(out))
        assert code == 2, err
        assert f"invalid input: {out}: {said}" in err
        assert stdout == "" and "[alpha]" not in err and "unreachable" not in err  # no host was tried
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "f"]  # no temporary file left behind


def test_a_plan_that_cannot_be_written_says_why(tmp_path: Path) -> None:
    """/proc takes no new files: the write fails after the hosts were observed, with the path and the reason."""
    code, _out, err = run_cli("plan", str(_fleet(tmp_path)), "--on", "beta", "-o", "/proc/mcfleet-plan.json")
    assert code == 2
    assert "invalid input: /proc/mcfleet-plan.json: cannot write the plan: No such file or directory" in err
    assert "internal error" not in err and "Traceback" not in err
