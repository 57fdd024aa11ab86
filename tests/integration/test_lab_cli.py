"""`mcfleet lab up|status|down` through the CLI, and `down` leaving nothing of the lab behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mcfleet.lab import proc
from tests.conftest import run_cli

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")


def _state(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / ".lab" / "state.json").read_text()))


def _leftovers(d: Path, state: dict[str, Any]) -> list[str]:
    """Everything of this lab still present on the machine (should be empty after down)."""
    left = []
    for r in state["resources"]:
        if r["kind"] == "process" and proc.alive(r["pid"], r["started"]):
            left.append(f"process {r['name']} pid {r['pid']}")
        if r["kind"] == "netns" and os.path.exists(f"/run/netns/{r['name']}"):
            left.append(f"netns {r['name']}")
        if r["kind"] == "bridge" and os.path.exists(f"/sys/class/net/{r['name']}"):
            left.append(f"bridge {r['name']}")
        if r["kind"] in ("dir", "cgroup") and os.path.exists(r["name"]):
            left.append(f"{r['kind']} {r['name']}")
    n = state["info"]["network"]["n"]
    # exactly this lab's names: lab 4's prefix `mcl4` also starts lab 49's `mcl49v0`
    ours = re.compile(rf"\bmcl{n}(br|v\d+|n\d+)\b")
    left += [f"link {link}" for link in os.listdir("/sys/class/net") if ours.fullmatch(link)]
    with open("/proc/self/mountinfo") as handle:
        left += [f"mount {line.split()[4]}" for line in handle if str(d) in line]
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        cmdline = proc.read_text(f"/proc/{pid}/cmdline") or ""
        if str(d) in cmdline and proc.alive(int(pid)) and int(pid) != os.getpid():
            left.append(f"process {pid}: {cmdline.replace(chr(0), ' ')[:80]}")
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    subnet = f"10.77.{n}."
    left += [f"iptables: {line}" for line in saved.splitlines() if subnet in line or ours.search(line)]
    return left


@pytest.mark.parametrize(
    "full", [0, pytest.param(1, marks=[pytest.mark.full, pytest.mark.slow])], ids=["fast", "with-full"]
)
def test_up_status_down_leaves_nothing(tmp_path: Path, full: int) -> None:
    d = tmp_path / "lab"
    code, out, err = run_cli("lab", "up", "--dir", str(d), "--nodes", "2", "--full", str(full), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["healthy"] is True
    assert [n["name"] for n in report["nodes"]] == ["node1", "node2"] + (["full1"] if full else [])
    assert {p["name"] for p in report["peers"]} == {"knot", "pebble", "caddy", "haproxy", "registry"}
    assert run_cli("validate", str(d))[0] == 0

    # a second `lab up` on the same directory refuses clearly
    code, _, err = run_cli("lab", "up", "--dir", str(d))
    assert code == 1 and "a lab is already up" in err

    code, out, _ = run_cli("lab", "status", "--dir", str(d), "--json")
    assert code == 0 and all(n["ssh"] for n in json.loads(out)["nodes"])

    # a container on node1: CNI bridge, iptables chains and conmon live inside the node
    state = _state(d)
    node1 = state["info"]["nodes"]["node1"]
    nsenter = ["nsenter", "-t", str(node1["ns_pid"]), "-m", "-u", "-n", "--"]
    run = ["podman", "run", "-d", "-p", "8080:8080", "localhost/mcfleet-bb:test", "httpd", "-f", "-p", "8080"]
    subprocess.run([*nsenter, *run], check=True, capture_output=True, timeout=60)
    inside = subprocess.run(
        ["ip", "netns", "exec", node1["netns"], "iptables-save"], check=True, capture_output=True, text=True
    )
    assert "CNI-" in inside.stdout
    assert _leftovers(d, state)  # sanity: the check does see a running lab

    code, out, err = run_cli("lab", "down", "--dir", str(d))
    assert code == 0, err
    assert _leftovers(d, state) == []
    # what the nodes wrote on disk (their overlays' upper layers: the container image pulled above) goes too
    assert [n for n in state["info"]["nodes"].values() if Path(n["dir"]).exists()] == []
    # idempotent, and status says so
    assert run_cli("lab", "down", "--dir", str(d))[1].startswith("no lab was up")
    code, out, _ = run_cli("lab", "status", "--dir", str(d))
    assert code == 1 and "no lab is up" in out


def test_down_cleans_up_after_a_crashed_up(tmp_path: Path) -> None:
    d = tmp_path / "crash"
    mcfleet = Path(sys.executable).parent / "mcfleet"
    child = subprocess.Popen(
        [mcfleet, "lab", "up", "--dir", str(d), "--nodes", "6", "--no-peers"],
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the crash takes its short-lived helpers too
    )
    state_file = d / ".lab" / "state.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill it once it has made some nodes' namespaces
        if state_file.exists() and sum(r["kind"] == "netns" for r in _state(d)["resources"]) >= 2:
            break
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)  # the lab's daemons run in sessions of their own and survive
    child.wait()
    state = _state(d)
    assert any(r["kind"] == "netns" for r in state["resources"])
    code, _, err = run_cli("lab", "down", "--dir", str(d))
    assert code == 0, err
    assert _leftovers(d, state) == []


def test_lab_needs_root_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run_cli("lab", "up", "--dir", str(tmp_path / "x"))
    assert code == 1
    assert "needs root" in err and "sudo mcfleet lab up" in err


def test_a_missing_program_names_the_apt_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc, "SBIN", ())
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    code, _, err = run_cli("lab", "up", "--dir", str(tmp_path / "lab"), "--no-peers", "--nodes", "1")
    assert code == 1
    assert "`ip` is not installed" in err and "apt-get install -y iproute2" in err
    assert not (tmp_path / "lab" / ".lab" / "state.json").exists()  # refused before any resource was made


def test_a_second_up_after_down_rewrites_the_fleet_dir_and_keeps_user_files(tmp_path: Path) -> None:
    d = tmp_path / "again"
    assert run_cli("lab", "up", "--dir", str(d), "--no-peers", "--nodes", "3")[0] == 0
    first_key = json.loads((d / "hosts" / "node1" / "host.json").read_text())["ssh"]["host_key"]
    (d / "hosts" / "node1" / "services").mkdir()
    (d / "notes.txt").write_text("mine")
    assert run_cli("lab", "down", "--dir", str(d))[0] == 0
    try:
        assert run_cli("lab", "up", "--dir", str(d), "--no-peers", "--nodes", "1")[0] == 0
        assert sorted(p.name for p in (d / "hosts").iterdir()) == ["node1"]  # node2/3 were the old lab's
        assert json.loads((d / "hosts" / "node1" / "host.json").read_text())["ssh"]["host_key"] != first_key
        assert (d / "hosts" / "node1" / "services").is_dir() and (d / "notes.txt").read_text() == "mine"
        assert run_cli("validate", str(d))[0] == 0
    finally:
        run_cli("lab", "down", "--dir", str(d))


def test_a_failed_up_removes_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from mcfleet.errors import LabError
    from mcfleet.lab import sshd

    def broken(*args: object, **kwargs: object) -> None:
        raise LabError("sshd would not start (simulated)")

    monkeypatch.setattr(sshd, "write_config", broken)
    code, _, err = run_cli("lab", "up", "--dir", str(tmp_path / "fails"), "--nodes", "2")
    assert code == 1
    assert "simulated" in err and "the partial lab was removed" in err
    match = re.search(r"network: bridge (mcl(\d+)br)", err)
    assert match, err
    assert not os.path.exists(f"/sys/class/net/{match.group(1)}")
    assert not [ns for ns in os.listdir("/run/netns") if ns.startswith(f"mcl{match.group(2)}n")]
    for line in err.splitlines():
        if pid := re.search(r"peer \w+: pid (\d+)", line):
            assert not proc.alive(int(pid.group(1)))
