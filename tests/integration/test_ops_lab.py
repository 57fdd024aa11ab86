"""`mcfleet ssh`, `exec`, `status` and `logs` against real lab nodes (netns + their own sshd)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apply_lab import mcfleet_argv

pytestmark = pytest.mark.lab

NODES = ["opsn1", "opsn2"]
WEB = {"name": "opsweb", "components": [{"name": "opsweb", "image": "localhost/mcfleet-bb:test"}]}


@pytest.fixture(scope="module")
def ops_fleet(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    async def up() -> None:
        await asyncio.gather(*(lab.add_fast_node(n, with_podman=False) for n in NODES))

    asyncio.run(up())
    yield lab.write_fleet(tmp_path_factory.mktemp("opslab") / "fleet", nodes=NODES)


def mcfleet(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCFLEET_FLEET"}
    return subprocess.run(
        [*mcfleet_argv(), "-C", str(root), *args],
        capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_ssh_logs_in_with_the_pinned_key_and_plain_openssh_works_too(ops_fleet: Path, lab: Any) -> None:
    done = mcfleet(ops_fleet, "ssh", "opsn1", "hostname")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "opsn1"
    done = mcfleet(ops_fleet, "ssh", "opsn1", "--", "echo", "-n", "x")  # `--` and a dash-led word reach the node
    assert (done.returncode, done.stdout) == (0, "x"), done.stderr
    # what `lab up` wrote: plain OpenSSH, batch mode, strict host-key checking, no mcfleet in between
    config = ops_fleet / ".mcfleet" / "ssh_config"
    plain = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", "opsn2", "hostname"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "opsn2"
    address = json.loads((ops_fleet / "hosts" / "opsn2" / "host.json").read_text())["addresses"][0]
    by_address = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={ops_fleet / '.mcfleet' / 'known_hosts'}",
         "-o", "StrictHostKeyChecking=yes", "-i", str(lab.client_key), f"root@{address}", "true"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert by_address.returncode == 0, by_address.stderr


def test_ssh_refuses_a_host_whose_key_changed(ops_fleet: Path, tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "fleet"
    shutil.copytree(ops_fleet, other, ignore=shutil.ignore_patterns(".mcfleet", ".lab"))
    host = other / "hosts" / "opsn1" / "host.json"
    data = json.loads(host.read_text())
    data["ssh"]["host_key"] = json.loads((other / "hosts" / "opsn2" / "host.json").read_text())["ssh"]["host_key"]
    host.write_text(json.dumps(data))
    done = mcfleet(other, "ssh", "opsn1", "true")
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr
    # mcfleet's own connections say which key was pinned and which one the node showed
    import asyncssh

    pinned = asyncssh.import_public_key(data["ssh"]["host_key"]).get_fingerprint()
    real = json.loads((ops_fleet / "hosts" / "opsn1" / "host.json").read_text())["ssh"]["host_key"]
    presented = asyncssh.import_public_key(real).get_fingerprint()
    done = mcfleet(other, "exec", "--on", "opsn1", "--", "true")
    assert done.returncode == 1
    assert f"pinned {pinned}, the node presented {presented}" in done.stderr, done.stderr


def test_exec_runs_everywhere_in_parallel_with_prefixes_and_exit_codes(ops_fleet: Path) -> None:
    done = mcfleet(ops_fleet, "exec", "--yes", "--", 'hostname; [ "$(hostname)" = opsn1 ] || exit 3')
    assert done.returncode == 1, done.stderr  # one host exited 3
    assert sorted(done.stdout.splitlines()) == ["opsn1 | opsn1", "opsn2 | opsn2"]
    assert "opsn1 = exit 0" in done.stderr and "opsn2 = exit 3" in done.stderr
    done = mcfleet(ops_fleet, "exec", "--on", "opsn2", "--json", "--", "echo", "a b")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] and data["hosts"] == [
        {"host": "opsn2", "exit": 0, "signal": None, "ok": True, "stdout": "a b\n", "stderr": "", "error": None,
         "seconds": data["hosts"][0]["seconds"]},
    ]  # fmt: skip
    # a command ended by a signal: sshd says which (its exit status alone is -1)
    killed = mcfleet(ops_fleet, "exec", "--on", "opsn1", "--", "kill -TERM $$")
    assert killed.returncode == 1 and "opsn1 = killed by SIGTERM" in killed.stderr, killed.stderr
    killed = mcfleet(ops_fleet, "exec", "--on", "opsn1", "--json", "--", "kill -KILL $$")
    assert json.loads(killed.stdout)["hosts"][0]["signal"] == "KILL"
    refused = mcfleet(ops_fleet, "exec", "--", "true")
    assert refused.returncode == 1 and "exec would run `true` on 2 hosts (opsn1, opsn2)" in refused.stderr


def test_status_shows_reachability_agent_and_drift(ops_fleet: Path, lab: Any) -> None:
    done = mcfleet(ops_fleet, "status", "--json")
    assert done.returncode == 1, done.stderr  # fresh nodes: no agent yet, changes pending
    rows = {r["host"]: r for r in json.loads(done.stdout)["hosts"]}
    assert set(rows) == set(NODES)
    for row in rows.values():
        assert row["reachable"] is True
        assert row["drift"] is True and row["changes"] >= 2  # at least the mcp user and the agent
        # fast lab nodes run no systemd: no agent, and none to install (its unit needs systemd)
        assert row["agent_health"] == "no agent (the node does not run systemd)", row
    asyncio.run(lab.stop_sshd("opsn2"))
    try:
        text = mcfleet(ops_fleet, "status")
    finally:
        asyncio.run(lab.start_sshd("opsn2"))
    lines = text.stdout.splitlines()
    assert lines[0].split()[:6] == ["HOST", "REACHABLE", "AGENT", "HEALTH", "SERVICES", "DRIFT"]
    opsn2 = next(line for line in lines if line.startswith("opsn2"))
    assert " no " in opsn2 and "unreachable" in opsn2


def test_logs_reads_the_agent_journal_and_a_service_error_names_the_cause(ops_fleet: Path) -> None:
    done = mcfleet(ops_fleet, "logs", "opsn1", "agent", "-n", "5")
    assert done.returncode == 1, done.stderr  # a fast lab node runs no systemd: there is no agent journal
    assert "opsn1 does not run systemd (PID 1)" in done.stderr and done.stdout == ""
    svc = ops_fleet / "hosts" / "opsn1" / "services"
    svc.mkdir(exist_ok=True)
    (svc / "opsweb.json").write_text(json.dumps(WEB))
    try:
        failed = mcfleet(ops_fleet, "logs", "opsn1", "opsweb")
    finally:
        (svc / "opsweb.json").unlink()
    assert failed.returncode == 1
    assert "opsn1: logs: could not read the logs of opsweb: " in failed.stderr
    assert "user mcp" in failed.stderr or "no container of opsweb" in failed.stderr  # not provisioned yet
    assert "hint: deploy the service first" in failed.stderr


def test_plan_under_a_terminal_colours_the_symbols_and_shows_old_to_new(ops_fleet: Path) -> None:
    """`mcfleet plan` run the way a person runs it: a pty, colours, `field: old → new`, summaries."""
    from tests.pty_run import run_in_pty

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "MCFLEET_FLEET")} | {"TERM": "xterm"}
    code, screen = run_in_pty([*mcfleet_argv(), "-C", str(ops_fleet), "plan", "--on", "opsn1"], env=env)
    assert code == 1, screen  # a fresh netns node: the agent needs systemd, which is a refusal
    esc = "\x1b["
    plain = screen.replace("\r\n", "\n")
    assert f"{esc}33m~{esc}0m resolvers" in screen, plain  # update: yellow (the node's resolv.conf differs)
    assert f"{esc}32m+{esc}0m user mcp" in screen  # create: green
    assert f"{esc}1;31m!{esc}0m agent" in screen  # refusal: bold red
    assert f"{esc}1mopsn1{esc}0m" in screen  # host name bold
    lines = plain.splitlines()
    resolvers = lines.index(next(line for line in lines if " resolvers " in line))
    assert " → nameserver " in lines[resolvers + 1], plain  # the old value, an arrow, the new value
    assert any(line.startswith("  opsn1: ") and " to create, " in line and " refused" in line for line in lines)
    assert any("Plan: " in line and " refused." in line for line in lines)


def test_agent_status_on_a_node_without_an_agent_says_there_is_none(ops_fleet: Path) -> None:
    done = mcfleet(ops_fleet, "agent", "status", "--on", "opsn1", "--json")
    assert done.returncode == 1, done.stderr  # its agent does not answer
    [row] = json.loads(done.stdout)["hosts"]
    text = json.dumps(row)
    said = "no agent (the node does not run systemd)"
    assert said in text and "Socket closed" not in text and "version skew" not in text, row
    table = mcfleet(ops_fleet, "agent", "status", "--on", "opsn1")
    assert table.returncode == 1 and said in table.stdout, table.stdout + table.stderr


def test_status_watch_redraws_until_ctrl_c(ops_fleet: Path) -> None:
    """`status --watch`: a new table every --interval seconds; Ctrl-C stops it (exit 130, a message)."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "MCFLEET_FLEET"}
    argv = [*mcfleet_argv(), "-C", str(ops_fleet), "status", "--on", "opsn1", "--watch", "--interval", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    titles: list[str] = []
    deadline = time.monotonic() + 180
    try:
        for line in proc.stdout:  # a pipe: no screen clearing, one titled table after another
            if line.startswith("mcfleet status — "):
                titles.append(line)
            if len(titles) == 2 or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        _rest, err = proc.communicate(timeout=60)
    assert len(titles) == 2, titles
    assert "(every 1 s, Ctrl-C stops)" in titles[0]
    assert proc.returncode == 130 and "interrupted: stopped at Ctrl-C (this command changes nothing)" in err, err
