"""Conventions every command shares: finding the fleet, -C/MCFLEET_FLEET, global options anywhere,
`--on` merged and one-host commands, confirmation, exit codes, the .mcfleet/ state folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcfleet.cli.registry import COMMANDS
from mcfleet.errors import DETAILED_EXIT_TABLE, EXIT_TABLE
from tests.conftest import REPO, run_cli
from tests.pex_shaped import pex_shaped
from tests.pty_run import run_in_pty

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(MINIMAL, dest)
    return dest


def hosts_json(*args: str) -> list[str]:
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    return [h["name"] for h in json.loads(out)["hosts"]]


def test_the_fleet_is_found_by_searching_upward(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fleet / "hosts" / "alpha")
    code, out, err = run_cli("validate")
    assert (code, err) == (0, "")
    assert out.startswith("ok: 3 hosts")


def test_no_fleet_anywhere_says_how_to_name_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCFLEET_FLEET", raising=False)
    code, _out, err = run_cli("hosts")
    assert code == 2
    assert f"no fleet.json in {tmp_path} or any folder above it" in err
    assert "-C DIR" in err and "MCFLEET_FLEET" in err


def test_minus_c_and_the_environment_name_the_fleet(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert hosts_json("-C", str(fleet), "hosts") == ["alpha", "beta", "edge1"]
    assert hosts_json("--fleet", str(fleet), "hosts") == ["alpha", "beta", "edge1"]
    assert hosts_json("hosts", "-C", str(fleet)) == ["alpha", "beta", "edge1"]  # after the command too
    monkeypatch.setenv("MCFLEET_FLEET", str(fleet))
    assert hosts_json("hosts") == ["alpha", "beta", "edge1"]


def test_the_old_positional_folder_still_works(fleet: Path) -> None:
    assert hosts_json("hosts", str(fleet)) == ["alpha", "beta", "edge1"]


def test_debug_is_accepted_after_the_command(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "hosts", "--on", "nosuch", "--debug")
    assert code == 2
    assert "no host named 'nosuch'" in err
    assert "Traceback" in err  # --debug took effect


def test_repeated_on_is_merged(fleet: Path) -> None:
    assert hosts_json("-C", str(fleet), "hosts", "--on", "alpha", "--on", "edge1") == ["alpha", "edge1"]


def test_every_command_that_touches_hosts_takes_on() -> None:
    for argv in (["hosts"], ["plan"], ["apply"], ["agent", "status"], ["agent", "upgrade"]):
        code, out, _err = run_cli(*argv, "--help")
        assert code == 0 and "--on" in out, argv


@pytest.mark.parametrize("command", ["deploy", "provision"])
@pytest.mark.parametrize("selector", ["'*'", "@edge", "alpha,beta"])
def test_one_host_commands_take_exactly_one_host_name(fleet: Path, command: str, selector: str) -> None:
    code, out, err = run_cli("-C", str(fleet), command, selector.strip("'"))
    assert code == 2
    assert f"`mcfleet {command}` takes exactly one host name" in err
    assert "--on" not in err.split("hint:")[0]  # no --on was given, so the message does not speak of one
    assert "mcfleet apply --on SEL" in err
    assert out == ""


def test_a_misspelt_host_for_deploy_names_the_command_not_on(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "deploy", "alpah")
    assert code == 2
    assert "mcfleet deploy alpah: no host named 'alpah'" in err
    assert "did you mean 'alpha'?" in err
    assert "--on" not in err


def test_agent_upgrade_of_several_hosts_without_a_terminal_is_refused(fleet: Path) -> None:
    code, out, err = run_cli("-C", str(fleet), "agent", "upgrade")
    assert code == 1  # a refusal
    assert "agent upgrade may change 3 hosts (alpha, beta, edge1) and there is no terminal" in err
    assert "--yes" in err
    assert out == ""
    assert not (fleet / ".mcfleet" / "apply.lock").exists()


def test_exec_on_several_hosts_without_a_terminal_names_the_command_it_would_run(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "exec", "--", "systemctl", "restart", "mcp-agent")
    assert code == 1
    assert "exec would run `systemctl restart mcp-agent` on 3 hosts (alpha, beta, edge1)" in err


def test_answering_no_at_the_prompt_exits_1_with_a_message(fleet: Path) -> None:
    code, screen = run_in_pty([sys.executable, "-m", "mcfleet", "-C", str(fleet), "agent", "upgrade"], answer="n")
    assert "agent upgrade on 3 hosts (alpha, beta, edge1)? [y/N]" in screen
    assert "agent upgrade: nothing done (answered no)" in screen
    assert code == 1
    code, screen = run_in_pty([sys.executable, "-m", "mcfleet", "-C", str(fleet), "apply"], answer="n")
    assert "apply on 3 hosts" in screen and "apply: nothing done (answered no)" in screen
    assert code == 1


def test_detailed_exitcode_makes_every_other_outcome_1(fleet: Path) -> None:
    host = fleet / "hosts" / "alpha" / "host.json"
    host.write_text(host.read_text().replace('"roles"', '"rolse"', 1))
    assert run_cli("-C", str(fleet), "plan")[0] == 2  # invalid input
    assert run_cli("-C", str(fleet), "plan", "--detailed-exitcode")[0] == 1
    assert run_cli("plan", "--detailed-exitcode", "--no-such-option")[0] == 1  # usage error too
    assert run_cli("plan", "--no-such-option")[0] == 2


def test_the_state_folder_ignores_itself(fleet: Path) -> None:
    from mcfleet.apply.lock import fleet_lock

    with fleet_lock(fleet, "test"):
        pass
    assert (fleet / ".mcfleet" / ".gitignore").read_text().splitlines()[-1] == "*"
    subprocess.run(["git", "init", "-q", str(fleet)], check=True)
    git = ["git", "-C", str(fleet), "status", "--porcelain"]
    status = subprocess.run(git, capture_output=True, text=True, check=False)
    assert ".mcfleet" not in status.stdout


def test_python_dash_m_mcfleet_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "mcfleet", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("mcfleet ")
    argv = [sys.executable, "-m", "mcfleet", "hosts", "--on"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "requires an argument" in done.stderr


def test_license_is_the_mit_license_pyproject_names() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (REPO / "pyproject.toml").read_text()


def test_the_readme_exit_code_table_is_the_codes_table() -> None:
    readme = (REPO / "README.md").read_text()
    for code, meaning in (*EXIT_TABLE, *DETAILED_EXIT_TABLE):
        row = f"| {code} | {meaning} |"
        assert row in readme, row


def test_lab_up_refuses_to_nest_in_a_fleet_folder(fleet: Path) -> None:
    code, _out, err = run_cli("lab", "up", "--dir", str(fleet / "lab"))
    assert code == 1
    assert f"is inside the fleet folder {fleet.resolve()}: a lab must not nest in a fleet" in err
    assert not (fleet / "lab").exists()
    code, _out, err = run_cli("lab", "up", "--dir", str(fleet))
    assert code == 1 and "is a fleet folder (it has fleet.json) that no lab made" in err


def test_no_tracebacks_and_documented_codes_for_each_command(fleet: Path) -> None:
    """One bad call per command: the code is the table's, the message says what, never a traceback."""
    cases = [
        (["validate"], 0),
        (["hosts", "--on", "nosuch"], 2),
        (["render", "nosuch"], 2),
        (["plan", "--on", "nosuch"], 2),
        (["apply", "--on", "nosuch"], 2),
        (["apply"], 1),  # the whole fleet, no terminal: refused
        (["deploy", "nosuch"], 2),
        (["provision", "nosuch"], 2),
        (["agent", "status", "--on", "nosuch"], 2),
        (["agent", "upgrade"], 1),
        (["nix", "host", "nosuch"], 2),
        (["routes", "--on", "nosuch"], 2),
        (["schema", "dump", "--check", "--out", str(fleet)], 1),
        (["init", str(fleet)], 2),  # never overwrites
        (["show", str(fleet / "nosuch.json")], 2),
        (["status", "--on", "nosuch"], 2),
        (["ssh", "nosuch"], 2),
        (["exec", "--on", "nosuch", "--", "true"], 2),
        (["logs", "nosuch"], 2),
        (["logs", "alpha", "nosuch"], 2),
        (["journal", "--json"], 0),  # no applies yet: an empty list
        (["forget", "nosuch"], 2),
        (["agent", "recover", "nosuch"], 2),
        (["agent", "restart", "nosuch", "web"], 2),
        (["snapshot", "nosuch", "web"], 2),
        (["snapshots", "nosuch"], 2),
        (["restore", "nosuch", "web", "/var/lib/mcfleet/snapshots/x.tar.zst"], 2),
        (["secret", "show", "nosuch"], 2),
        (["lab", "status", "--dir", str(fleet / "nolab")], 1),  # no lab up there
        (["lab", "reboot", "full1", "--dir", str(fleet / "nolab")], 1),  # no lab up there (root) or not root
        (["completion", "nosh"], 2),
    ]
    for argv, expected in cases:
        code, _out, err = run_cli("-C", str(fleet), *argv)
        assert code == expected, (argv, err)
        assert "Traceback" not in err and not re.search(r"internal error", err), (argv, err)
    assert os.path.isdir(fleet)
    missing = set(COMMANDS) - {argv[0] for argv, _code in cases}
    assert not missing, f"add a bad call with its documented exit code for: {sorted(missing)}"


OUT_OF_RANGE = [
    (["plan", "--connect-timeout", "-1"], "--connect-timeout"),  # asyncssh: ValueError (was an internal error)
    (["plan", "--connect-timeout", "0"], "--connect-timeout"),  # asyncssh: no timeout at all
    (["plan", "--connect-timeout=0.0", "--json"], "--connect-timeout"),  # a form the fast parser would take
    (["status", "--connect-timeout", "nan"], "--connect-timeout"),
    (["exec", "--on", "alpha", "--connect-timeout", "inf", "--", "true"], "--connect-timeout"),
    (["exec", "--on", "alpha", "--timeout", "-5", "--", "true"], "--timeout"),  # was "did not finish within -5 s"
    (["apply", "--on", "alpha", "--parallel", "0"], "--parallel"),  # was a wait for a free slot, forever
    (["apply", "--on", "alpha", "--health-timeout", "0"], "--health-timeout"),
    (["apply", "--on", "alpha", "--confirm-timeout", "-1"], "--confirm-timeout"),
    (["agent", "upgrade", "--on", "alpha", "--parallel", "-2"], "--parallel"),
    (["agent", "recover", "alpha", "--connect-timeout", "-3"], "--connect-timeout"),
    (["snapshots", "alpha", "--connect-timeout", "0"], "--connect-timeout"),
]


@pytest.mark.parametrize(("argv", "option"), OUT_OF_RANGE, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_number_no_run_can_work_with_is_a_usage_error_naming_the_option(
    fleet: Path, argv: list[str], option: str
) -> None:
    """Refused when parsed (exit 2, the option named), before any host is tried (no host in the output)."""
    code, out, err = run_cli("-C", str(fleet), *argv)
    assert code == 2, (argv, out, err)
    assert f"Invalid value for '{option}'" in err and "greater than" in err, err
    assert out == "" and "alpha" not in err and "edge1" not in err, err
    assert "Traceback" not in err and "internal error" not in err


def test_apply_of_a_plan_file_that_is_not_there_says_so(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "apply", str(fleet / "plan.json"))
    assert code == 2
    assert f"{fleet / 'plan.json'}: no such plan file" in err and "mcfleet plan -o FILE" in err
    assert "fleet.json" not in err  # not the loader's "no fleet.json in …/plan.json"
    assert not (fleet / "plan.json").exists()


@pytest.mark.parametrize("command", ["plan", "apply", "hosts"])
def test_a_host_where_the_old_fleet_folder_argument_went_gets_the_on_form(
    fleet: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mcfleet plan alpha` (as `nix run .#deploy -- alpha` reads) is no folder: the error gives --on, not
    the loader's "no fleet.json in …/alpha"; also from hosts/, where alpha *is* a folder (the host's)."""
    code, _out, err = run_cli("-C", str(fleet), command, "alpha")
    assert code == 2
    assert "'alpha' is not a folder; hosts are selected with --on" in err
    assert f"mcfleet {command} --on alpha" in err and "fleet.json" not in err
    code, _out, err = run_cli("-C", str(fleet), command, "@master,!beta")
    assert code == 2 and f"mcfleet {command} --on '@master,!beta'" in err
    monkeypatch.chdir(fleet / "hosts")
    code, _out, err = run_cli(command, "alpha")
    assert code == 2
    assert "'alpha' is a host's folder, not a fleet's" in err and f"mcfleet {command} --on alpha" in err


def test_hosts_given_as_words_to_a_command_that_takes_none_get_the_on_form(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "status", "alpha", "beta")
    assert code == 2
    assert "unexpected extra argument(s) (alpha beta)" in err
    assert "hint: hosts are selected with --on: `mcfleet status --on alpha,beta`" in err
    code, _out, err = run_cli("-C", str(fleet), "schema", "dump", "extra")  # no --on there: no such hint
    assert code == 2 and "unexpected extra argument" in err and "--on" not in err


def test_an_empty_selector_is_refused_and_never_read_as_the_whole_fleet(fleet: Path) -> None:
    """`mcfleet apply --on "$HOSTS" --yes` with $HOSTS unset must not apply to every host."""
    for command in (["apply", "--yes"], ["plan"], ["status"]):
        code, _out, err = run_cli("-C", str(fleet), *command, "--on", "")
        assert code == 2, (command, err)
        assert "invalid selection: --on '': the selector is empty" in err
        assert "leave --on out for every host" in err


def test_a_word_that_is_neither_a_folder_nor_a_host_is_named_as_such(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "plan", "alpah")
    assert code == 2
    assert f"'alpah' is neither a folder nor a host of the fleet in {fleet}" in err
    assert "mcfleet hosts" in err and "fleet.json" not in err


def test_the_old_fleet_folder_argument_still_works(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fleet.parent)
    code, out, err = run_cli("hosts", "fleet", "--json")
    assert code == 0, err
    assert {h["name"] for h in json.loads(out)["hosts"]} == {"alpha", "beta", "edge1"}


def test_validate_reports_a_misspelt_key_once_with_did_you_mean(fleet: Path) -> None:
    """One typo in the master's host.json: one finding (not "missing roles" + "unknown rolse" + "no master")."""
    host = fleet / "hosts" / "alpha" / "host.json"
    host.write_text(host.read_text().replace('"roles"', '"rolse"', 1))
    code, out, err = run_cli("-C", str(fleet), "validate")
    assert code == 2
    assert out.splitlines() == [
        "schema: hosts/alpha/host.json#/rolse: unknown field 'rolse': did you mean 'roles'? (roles is required)",
        "  hint: rename 'rolse' to 'roles'",
    ]
    assert "1 problem(s)" in err and "1 finding(s) of the fleet rules held back" in err
    code, out, _err = run_cli("-C", str(fleet), "validate", "--json")
    data = json.loads(out)
    assert [f["code"] for f in data["findings"]] == ["schema"]
    assert [f["code"] for f in data["held_back"]] == ["master-count"]


def test_hosts_shows_a_broken_host_instead_of_leaving_it_out(fleet: Path) -> None:
    host = fleet / "hosts" / "alpha" / "host.json"
    host.write_text(host.read_text().replace('"roles"', '"rolse"', 1))
    code, out, err = run_cli("-C", str(fleet), "hosts")
    assert code == 0
    alpha = next(line for line in out.splitlines() if line.startswith("alpha"))
    assert "invalid: hosts/alpha/host.json#/rolse: unknown field" in alpha
    assert "1 host file(s) do not load" in err and "mcfleet validate" in err
    code, out, _err = run_cli("-C", str(fleet), "hosts", "--json")
    data = json.loads(out)
    assert [h["name"] for h in data["hosts"]] == ["beta", "edge1"]
    assert data["invalid"][0]["name"] == "alpha" and "rolse" in data["invalid"][0]["problems"][0]


def test_a_service_on_another_host_is_not_suggested_as_its_own_name() -> None:
    code, _out, err = run_cli("-C", str(REPO), "render", "mcns", "--host", "orion")
    assert code == 2
    assert "no service named 'mcns' on orion" in err
    assert "did you mean 'mcns'" not in err
    assert "mcns is placed on rift: `mcfleet render rift mcns`" in err


def test_an_unreachable_host_fails_in_the_host_phase_not_manifest(fleet: Path) -> None:
    """Nothing listens on 127.0.0.1:1: apply says it could not observe the host, before any change."""
    import asyncssh

    host = fleet / "hosts" / "edge1" / "host.json"
    data = json.loads(host.read_text())
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()[:2]
    data |= {"addresses": ["127.0.0.1"], "ssh": {**data["ssh"], "port": 1, "host_key": " ".join(key)}}
    host.write_text(json.dumps(data))
    bundle = str(pex_shaped(fleet / "agent.pex"))
    code, out, _err = run_cli("-C", str(fleet), "apply", "--on", "edge1", "--bundle", bundle, "--connect-timeout", "2")
    assert code == 1
    assert "  host      failed      could not observe the host, nothing changed: no address answered" in out
    assert "manifest" not in out


def test_a_host_key_that_is_not_a_key_is_a_clear_error(fleet: Path) -> None:
    host = fleet / "hosts" / "edge1" / "host.json"
    data = json.loads(host.read_text())
    data["ssh"]["host_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q="  # the right shape, not a key
    host.write_text(json.dumps(data))
    bundle = str(pex_shaped(fleet / "agent.pex"))
    code, out, err = run_cli("-C", str(fleet), "apply", "--on", "edge1", "--bundle", bundle)
    assert code == 1 and "internal error" not in err
    assert "ssh.host_key is not a public key OpenSSH can read" in out


def _interrupted(fleet: Path, *args: str, tail: tuple[str, ...] = (), host_name: str = "edge1", on: bool = True) -> str:
    """Run mcfleet against `host_name` pointed at a port that accepts TCP but never says the SSH hello (the
    client waits), press Ctrl-C after 4 s, and return stderr once it exited 130."""
    import signal
    import socket
    import time

    import asyncssh

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # never accepts: the client waits for the SSH banner
    try:
        host = fleet / "hosts" / host_name / "host.json"
        data = json.loads(host.read_text())
        key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()[:2]
        port = listener.getsockname()[1]
        data |= {"addresses": ["127.0.0.1"], "ssh": {**data["ssh"], "port": port, "host_key": " ".join(key)}}
        host.write_text(json.dumps(data))
        select = ["--on", host_name] if on else []
        argv = [sys.executable, "-m", "mcfleet", "-C", str(fleet), *args, *select, "--connect-timeout", "120"]
        proc = subprocess.Popen([*argv, *tail], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        listener.close()
    assert proc.returncode == 130, err
    assert "stopped at Ctrl-C" in err
    assert "Traceback" not in err
    return err


def test_ctrl_c_exits_130_with_a_message(fleet: Path) -> None:
    """A node that accepts TCP but never says hello keeps `exec` waiting; Ctrl-C ends it cleanly."""
    err = _interrupted(fleet, "exec", tail=("--", "true"))
    assert "interrupted: stopped at Ctrl-C (what finished is kept; run the command again to go on)" in err


def test_ctrl_c_of_a_command_that_only_reads_says_nothing_was_changed(fleet: Path) -> None:
    """`status` (and `logs -f`, `status --watch`, which end at Ctrl-C as a rule) changes nothing: there is
    nothing kept and nothing to go on with."""
    err = _interrupted(fleet, "status")
    assert "stopped at Ctrl-C (this command changes nothing)" in err and "what finished is kept" not in err


def test_an_apply_stopped_at_ctrl_c_is_in_the_journal(fleet: Path) -> None:
    """The journal is where an operator looks for what each run did: one stopped at Ctrl-C is there, as
    interrupted, with the hosts it reached and how far (was: no record at all)."""
    _interrupted(fleet, "apply", "--yes", "--bundle", str(pex_shaped(fleet / "agent.pex")))
    code, out, err = run_cli("-C", str(fleet), "journal", "--json")
    assert code == 0, err
    [record] = json.loads(out)["records"]
    assert record["error"]["kind"] == "interrupted" and record["error"]["exit_code"] == 130, record
    assert record["error"]["message"].startswith("stopped at Ctrl-C after ")
    assert record["argv"][-4:] == ["--on", "edge1", "--connect-timeout", "120"]
    assert (record["result"]["ok"], record["result"]["exit_code"]) == (False, 130)  # never "ok"
    code, out, _ = run_cli("-C", str(fleet), "journal")
    assert "interrupted: stopped at Ctrl-C" in out


@pytest.mark.parametrize("command", [["snapshot", "alpha", "web"], ["agent", "recover", "alpha"]])
def test_a_snapshot_or_agent_operation_stopped_at_ctrl_c_is_in_the_journal(fleet: Path, command: list[str]) -> None:
    _interrupted(fleet, *command, host_name="alpha", on=False)
    code, out, err = run_cli("-C", str(fleet), "journal", "--json")
    assert code == 0, err
    [record] = json.loads(out)["records"]
    assert record["error"]["kind"] == "interrupted" and record["argv"][2 : 2 + len(command)] == command, record


@pytest.mark.parametrize("command", ["deploy", "provision"])
def test_one_host_commands_accept_yes_as_apply_does(fleet: Path, command: str) -> None:
    """A script passes `--yes` to every changing command; deploy and provision never ask (one host), and
    rejected it as an unknown option (exit 2, "No such option: --yes") before naming the host."""
    code, _out, err = run_cli("-C", str(fleet), command, "alpah", "--yes")
    assert code == 2 and f"mcfleet {command} alpah: no host named 'alpah'" in err, err
    assert "No such option" not in err
