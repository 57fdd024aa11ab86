"""The operator's file-only commands: init, show, journal, completion, and ssh's files and command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcfleet.apply import journal
from tests.conftest import REPO, run_cli

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(MINIMAL, dest)
    return dest


def test_init_writes_a_fleet_that_validates(tmp_path: Path) -> None:
    new = tmp_path / "new"
    code, out, err = run_cli("init", str(new), "--host", "rift", "--address", "10.0.0.5")
    assert code == 0, err
    assert "ok: a fleet with one host (rift)" in out
    assert run_cli("-C", str(new), "validate")[0] == 0
    host = json.loads((new / "hosts" / "rift" / "host.json").read_text())
    assert host["$schema"] == "../../schemas/host.schema.json" and (new / "schemas" / "host.schema.json").is_file()
    assert ".mcfleet/" in (new / ".gitignore").read_text()
    code, _out, err = run_cli("init", str(new))  # never overwrites
    assert code == 2 and "exists and is not empty" in err


def test_init_into_an_empty_folder_keeps_its_mode_rules(tmp_path: Path) -> None:
    new = tmp_path / "empty"
    new.mkdir()
    code, _out, err = run_cli("init", str(new))
    assert code == 0, err
    umask = os.umask(0o022)
    os.umask(umask)
    assert (new / "fleet.json").is_file() and new.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no staging folder left beside it


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--os", "bogus"], "schema: hosts/node1/host.json#/os: Input should be 'nixos' or 'debian'"),
        (["--host-key", "garbage"], "schema: hosts/node1/host.json#/ssh/host_key: must be '<type> <base64>'"),
    ],
)
def test_init_that_does_not_validate_leaves_nothing_behind(tmp_path: Path, options: list[str], said: str) -> None:
    """Was: the invalid fleet stayed on disk, and `init` again refused the now non-empty folder."""
    new = tmp_path / "a" / "b" / "fleet"
    code, out, err = run_cli("init", str(new), *options)
    assert code == 2 and out == ""
    assert f"invalid input: {new}: the new fleet does not validate: {said}" in err and "nothing was written" in err
    assert "master-count" not in err  # the broken host file is the cause; "no master" only follows from it
    assert list(tmp_path.iterdir()) == []  # neither the fleet, nor its staging folder, nor the folders above it
    assert run_cli("init", str(new))[0] == 0  # so the corrected command just works


def test_init_refuses_a_host_name_that_is_a_path_and_a_file_in_the_way(tmp_path: Path) -> None:
    code, _out, err = run_cli("init", str(tmp_path / "f"), "--host", "../../etc")
    assert code == 2 and "--host: '../../etc' is not a host name" in err
    assert list(tmp_path.iterdir()) == []  # was: tmp_path/etc/host.json, outside the fleet
    (tmp_path / "file").write_text("x")
    for target in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, _out, err = run_cli("init", str(target))
        assert code == 2 and f"{tmp_path / 'file'} is a file, not a folder" in err, err  # was an internal error
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_init_refuses_a_folder_inside_another_fleet(tmp_path: Path) -> None:
    """`init <fleet>/hosts/new` made a fleet that the outer one then read as a broken host (missing-file)."""
    outer = tmp_path / "outer"
    assert run_cli("init", str(outer))[0] == 0
    inner = outer / "hosts" / "newfleet"
    code, _out, err = run_cli("init", str(inner))
    assert code == 2 and f"{inner} is inside the fleet {outer}" in err, err
    assert not inner.exists()
    assert run_cli("-C", str(outer), "validate")[0] == 0


def test_show_renders_a_saved_plan(fleet: Path, tmp_path: Path) -> None:
    from mcfleet.plan.model import Action, Plan
    from mcfleet.plan.saved import save_plan

    plan = Plan(
        created_at="2026-12-01T00:00:00+00:00",
        root=str(fleet),
        hosts=["alpha"],
        actions=[Action(host="alpha", phase="deploy", kind="create", subject="service web", reason="declared")],
    )
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds what root read on the nodes: this user's only
    code, out, _err = run_cli("show", str(path))
    assert code == 0
    assert "+ service web" in out and "1 to create" in out
    code, out, _err = run_cli("show", str(path), "--json")
    assert code == 0 and json.loads(out)["actions"][0]["subject"] == "service web"
    (tmp_path / "bad.json").write_text("{")
    code, _out, err = run_cli("show", str(tmp_path / "bad.json"))
    assert code == 2 and "not a plan file" in err


def test_journal_lists_the_applies_newest_last(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "journal")
    assert code == 0 and "no applies recorded yet" in err
    ok = {"ok": True, "seconds": 3.25, "hosts": {"alpha": {"status": "changed", "phases": {}}}}
    journal.append(fleet, {"command": "apply", "argv": ["apply", "--on", "alpha"], "result": ok})
    refused = {"kind": "refused", "message": "the plan contains a refusal"}
    journal.append(fleet, {"command": "apply", "argv": ["apply", "--all"], "error": refused})
    code, out, _err = run_cli("-C", str(fleet), "journal")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["WHEN", "WHO", "COMMAND", "HOSTS", "SECONDS", "OUTCOME"]
    assert "mcfleet apply --on alpha" in lines[1] and "3.2" in lines[1] and "ok: 1 changed" in lines[1]
    assert "refused: the plan contains a refusal" in lines[2]
    code, out, _err = run_cli("-C", str(fleet), "journal", "--last", "1", "--json")
    data = json.loads(out)
    assert code == 0 and data["total"] == 2 and [r["argv"] for r in data["records"]] == [["apply", "--all"]]


def test_journal_on_and_failed_keep_a_host_s_records_and_the_runs_that_did_not_succeed(fleet: Path) -> None:
    """ "What was last done on rift?" needed jq; --on uses the selectors of every other command."""

    def apply(hosts: dict[str, str], ok: bool) -> dict[str, object]:
        phases = {h: {"status": s, "phases": {}} for h, s in hosts.items()}
        return {"command": "apply", "argv": ["apply"], "result": {"ok": ok, "seconds": 1.0, "hosts": phases}}

    journal.append(fleet, apply({"alpha": "changed"}, True))
    journal.append(fleet, apply({"alpha": "unchanged", "edge1": "failed"}, False))
    journal.append(fleet, {"command": "snapshot", "argv": ["snapshot", "beta", "web"],
                           "result": {"host": "beta", "operation": "snapshot", "service": "web"}})  # fmt: skip
    journal.append(fleet, {"command": "apply", "argv": ["apply"], "hosts": ["beta"],
                           "error": {"kind": "refused", "message": "a refusal"}})  # fmt: skip

    def kept(*args: str) -> list[list[str]]:
        code, out, err = run_cli("-C", str(fleet), "journal", *args, "--json")
        assert code == 0, err
        return [r.get("argv") for r in json.loads(out)["records"]]

    assert len(kept("--on", "alpha")) == 2
    assert len(kept("--on", "@edge")) == 1
    assert kept("--on", "beta") == [["snapshot", "beta", "web"], ["apply"]]
    assert len(kept("--failed")) == 2  # the failed apply and the refused one; the snapshot succeeded
    assert kept("--on", "beta", "--failed") == [["apply"]]
    assert len(kept("--on", "alpha", "--last", "1")) == 1
    code, _out, err = run_cli("-C", str(fleet), "journal", "--on", "alpha", "--on", "beta", "--failed")
    assert code == 0
    code, _out, err = run_cli("-C", str(fleet), "journal", "--on", "nosuch")
    assert code == 2 and "no host named 'nosuch'" in err


def test_an_apply_refused_before_any_host_ran_is_journalled_with_its_plans_hosts(fleet: Path) -> None:
    """An edited saved plan is refused after it was read: the journal's HOSTS column said '-'."""
    from mcfleet.apply.session import ApplySession, SessionOptions
    from mcfleet.errors import Refused
    from mcfleet.fleet.load import load_fleet
    from mcfleet.plan.model import Plan

    session = ApplySession(load_fleet(fleet), SessionOptions())
    session.plan = Plan(created_at="2026-12-05T00:00:00+00:00", hosts=["alpha", "beta"])
    session.record(None, Refused("the plan's actions are not the ones its fleet files and the nodes give now"))
    code, out, _err = run_cli("-C", str(fleet), "journal")
    assert code == 0
    row = out.splitlines()[1].split()  # (the command column holds pytest's own argv here)
    assert "alpha,beta" in row and "refused:" in row


def test_ssh_writes_the_pinned_known_hosts_and_a_config(fleet: Path) -> None:
    code, out, err = run_cli("-C", str(fleet), "ssh", "--print", "--json", "alpha")
    assert code == 0, err
    data = json.loads(out)
    config = Path(data["ssh_config"])
    assert data["argv"][:3] == ["ssh", "-F", str(config)] and "alpha" in data["argv"]
    known = (fleet / ".mcfleet" / "known_hosts").read_text()
    alpha = json.loads((fleet / "hosts" / "alpha" / "host.json").read_text())
    assert f"10.0.0.1 {alpha['ssh']['host_key']} alpha" in known
    text = config.read_text()
    assert "Host alpha\n  HostName 10.0.0.1" in text and "StrictHostKeyChecking yes" in text
    assert f"UserKnownHostsFile {(fleet / '.mcfleet' / 'known_hosts').resolve()}" in text
    code, _out, err = run_cli("-C", str(fleet), "ssh", "@edge")
    assert code == 2 and "takes exactly one host name" in err


@pytest.mark.parametrize(
    "words", [["ls", "-la"], ["--", "ls", "-la"]], ids=["mcfleet ssh alpha ls -la", "mcfleet ssh alpha -- ls -la"]
)
def test_ssh_gives_openssh_the_remote_command_after_one_double_dash(fleet: Path, words: list[str]) -> None:
    """Was: `ssh alpha -- ls` ran `-- ls` on the node (bash: --: invalid option)."""
    code, out, err = run_cli("-C", str(fleet), "ssh", "--print", "--json", "alpha", *words)
    assert code == 0, err
    argv = json.loads(out)["argv"]
    assert argv[argv.index("alpha") :] == ["alpha", "--", "ls", "-la"]


def test_logs_of_a_service_the_host_does_not_run_lists_what_it_runs(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "logs", "alpha", "nosuch")
    assert code == 2
    assert "alpha runs no service named 'nosuch'" in err and "`agent`" in err


@pytest.mark.parametrize("operation", ["restart", "stop", "start"])
def test_an_agent_operation_on_a_service_the_host_does_not_run_is_refused_before_connecting(
    fleet: Path, operation: str
) -> None:
    """Was: a connection, then the agent's NOT_FOUND with the hint "is mcp-agent running on the node?"."""
    code, out, err = run_cli("-C", str(fleet), "agent", operation, "alpha", "wbe")
    assert (code, out) == (2, "")
    assert f"mcfleet agent {operation} alpha wbe: alpha runs no service named 'wbe'" in err
    assert "did you mean 'web'?" in err and "[alpha]" not in err  # no connection was tried
    assert not (fleet / ".mcfleet" / "journal.jsonl").exists()


def test_exec_needs_a_command(fleet: Path) -> None:
    code, _out, err = run_cli("-C", str(fleet), "exec", "--on", "alpha")
    assert code == 2 and "Missing argument" in err


def test_completion_offers_hosts_roles_and_services(fleet: Path) -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_MCFLEET_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        env.pop("MCFLEET_FLEET", None)
        done = subprocess.run(
            [sys.executable, "-m", "mcfleet"], cwd=fleet / "hosts", env=env, capture_output=True, text=True, check=False
        )
        return done.stdout.split()

    assert complete("mcfleet ssh ", 2) == ["alpha", "beta", "edge1"]
    assert complete("mcfleet hosts --on alpha,@e", 3) == ["alpha,@edge"]
    services = sorted(p.stem for p in (fleet / "hosts" / "edge1" / "services").glob("*.json"))
    assert complete("mcfleet logs edge1 ", 3) == sorted(["agent", *services])
    # every command that takes a host, a service or a secret by name completes it
    alpha = sorted(p.stem for p in (fleet / "hosts" / "alpha" / "services").glob("*.json"))
    assert alpha and alpha != services
    for words in ("mcfleet snapshot alpha ", "mcfleet restore alpha ", "mcfleet agent restart alpha ",
                  "mcfleet render alpha "):  # fmt: skip
        assert complete(words, len(words.split())) == alpha, words
    assert complete("mcfleet snapshots alpha ", 3) == alpha
    for words in ("mcfleet deploy ", "mcfleet provision ", "mcfleet agent recover ", "mcfleet snapshot "):
        assert complete(words, len(words.split())) == ["alpha", "beta", "edge1"], words
    everything = sorted({"alpha", "beta", "edge1", *services, *alpha})
    assert complete("mcfleet render ", 2) == everything
    assert complete("mcfleet render alpha web ", 4) == []
    (fleet / "secrets").mkdir(exist_ok=True)
    (fleet / "secrets" / "web-token.age").write_bytes(b"")
    assert complete("mcfleet secret show w", 3) == ["web-token"]
    from mcfleet.observe.manifest import Manifest, ManifestService
    from mcfleet.plan.gone import update_seen

    serving = Manifest(services={"web": ManifestService(hash="h")})
    update_seen(fleet, {"alpha": serving, "orion": serving, "oberon": serving})  # alpha still has its folder
    assert complete("mcfleet forget ", 2) == ["oberon", "orion"]
    assert complete("mcfleet forget or", 2) == ["orion"]
    code, out, _err = run_cli("completion", "bash")
    assert code == 0 and "_MCFLEET_COMPLETE=complete_bash" in out


def test_goal_boot_dry_activate_or_test_is_refused_on_a_host_that_is_not_nixos(fleet: Path) -> None:
    """A dry run must not change a Debian host: the goal holds back only a NixOS host's switch, and
    apply changed every other selected host for real.  Refused before any connection."""
    from mcfleet.cli.commands_apply import check_goal_hosts
    from mcfleet.fleet.load import load_fleet

    loaded = load_fleet(fleet)  # alpha and beta run NixOS, edge1 Debian
    check_goal_hosts(loaded, ["alpha", "beta", "edge1"], "switch")
    check_goal_hosts(loaded, ["alpha", "beta"], "test")
    check_goal_hosts(loaded, ["alpha", "beta"], "dry-activate")
    # a trial (--goal test) keeps the boot default on NixOS only: a Debian host was switched for good
    code, _out, err = run_cli("-C", str(fleet), "apply", "--on", "alpha,edge1", "--goal", "test", "--yes")
    assert code == 2, err
    assert "test keeps the boot default (the system before, after a reboot) only on NixOS hosts; " in err
    assert "edge1 (debian) would be changed for good" in err
    for goal in ("dry-activate", "boot"):
        code, _out, err = run_cli("-C", str(fleet), "apply", "--on", "alpha,edge1", "--goal", goal, "--yes")
        assert code == 2, err
        assert f"{goal} leaves only NixOS hosts unchanged now; edge1 (debian) would be changed for real" in err
        assert "select the NixOS hosts alone (--on alpha)" in err
    code, _out, err = run_cli("-C", str(fleet), "deploy", "edge1", "--goal", "boot")
    assert code == 2 and "edge1 (debian) would be changed for real" in err and "drop --goal" in err


def test_the_warning_counts_the_files_with_problems_not_the_problems(tmp_path: Path) -> None:
    """One service file with three schema errors is one file left out, named (was: `3 file(s) have problems`)."""
    import json as json_module
    import shutil

    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    web = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json_module.loads(web.read_text())
    svc.update({"stage": 5, "active": "yes", "depends_on": 7})
    web.write_text(json_module.dumps(svc))
    _code, _out, err = run_cli("-C", str(root), "routes")
    assert "warning: 1 file(s) have problems and are left out (hosts/alpha/services/web.json)" in err, err
