"""Fleet lock and apply journal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcfleet.apply import journal
from mcfleet.apply.lock import fleet_lock
from mcfleet.errors import Refused


def test_second_lock_is_refused_with_holder(tmp_path: Path) -> None:
    with fleet_lock(tmp_path, "mcfleet apply --all"):
        # a different process must be refused (flock is per open file description)
        code = (
            "import sys; from pathlib import Path; from mcfleet.apply.lock import fleet_lock\n"
            "from mcfleet.errors import Refused\n"
            "try:\n    with fleet_lock(Path(sys.argv[1]), 'second'): print('got it')\n"
            "except Refused as e: print(e.format())\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
        assert "another apply holds the fleet lock" in out.stdout
        assert f"pid {os.getpid()}" in out.stdout
        assert "mcfleet apply --all" in out.stdout


def test_lock_released_after_holder_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from mcfleet.apply.lock import fleet_lock\n"
        "with fleet_lock(Path(sys.argv[1]), 'victim'):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(Refused), fleet_lock(tmp_path, "while held"):
        pass
    proc.kill()
    proc.wait()
    proc.stdout.close()
    with fleet_lock(tmp_path, "after kill"):
        pass


def test_journal_appends_and_redacts(tmp_path: Path) -> None:
    journal.append(tmp_path, {"command": "apply", "provider": {"tsig_secret": "c2VjcmV0", "key_file": "/k"}})
    journal.append(
        tmp_path, {"command": "apply", "log": "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----"}
    )
    text = journal.journal_path(tmp_path).read_text()
    assert "c2VjcmV0" not in text and "abc" not in text
    records = journal.read(tmp_path)
    assert len(records) == 2
    assert records[0]["provider"] == {"tsig_secret": "***", "key_file": "/k"}
    assert records[0]["who"]


def test_journal_skips_torn_last_line(tmp_path: Path) -> None:
    journal.append(tmp_path, {"command": "apply"})
    with journal.journal_path(tmp_path).open("a") as handle:
        handle.write('{"command": "ap')
    assert [r["command"] for r in journal.read(tmp_path)] == ["apply"]


def test_a_journal_edited_by_hand_is_shown_with_what_it_holds(tmp_path: Path) -> None:
    """Bytes that are not UTF-8, JSON that is not a record, records with parts of the wrong type: the
    readable records are shown and the others counted (was: internal errors, UnicodeDecodeError and
    AttributeError)."""
    import json

    from tests.conftest import run_cli

    shutil.copytree(Path(__file__).parents[1] / "data" / "fleets" / "minimal", tmp_path / "fleet")
    root = tmp_path / "fleet"
    journal.append(root, {"command": "apply", "argv": ["apply", "--all"], "result": {"ok": True, "hosts": {}}})
    with journal.journal_path(root).open("ab") as handle:
        handle.write(b'[1, 2]\n"text"\n\xff\xfe not utf-8\n\n')
        handle.write(b'{"command": "apply", "argv": "apply", "result": [1], "when": "w1"}\n')
        handle.write(b'{"error": "boom", "when": "w2"}\n{"result": {"hosts": {"a": "ok"}}, "when": "w3"}\n')
    code, out, err = run_cli("-C", str(root), "journal")
    assert code == 0, err
    assert f"note: 3 line(s) of {journal.journal_path(root)} are not records: skipped" in err
    rows = out.splitlines()[1:]
    assert len(rows) == 4 and rows[0].endswith("mcfleet apply --all  -      -        ok: nothing to do")
    assert rows[1].startswith("w1") and rows[2].startswith("w2") and rows[3].startswith("w3")
    code, out, _err = run_cli("-C", str(root), "journal", "--json")
    assert code == 0 and json.loads(out)["unreadable"] == 3 and json.loads(out)["total"] == 4


def test_one_host_operations_show_their_host_and_what_they_did(tmp_path: Path) -> None:
    """A snapshot, a restore, a list of snapshots and an agent restart are journalled with their own
    reports (no `hosts`): shown with their host and outcome (was: host "-" and "failed: nothing to do"
    for each of them, though they had succeeded)."""
    from tests.conftest import run_cli

    shutil.copytree(Path(__file__).parents[1] / "data" / "fleets" / "minimal", tmp_path / "fleet")
    root = tmp_path / "fleet"
    snapshot = {"host": "n1", "operation": "snapshot", "service": "db", "path": "/x.tar.zst", "bytes": 136,
                "sha256": "ab", "seconds": 0.6}  # fmt: skip
    journal.append(root, {"command": "snapshot n1 db", "argv": ["snapshot", "n1", "db"], "result": snapshot})
    listed = {"host": "n1", "snapshots": [{"path": "/x.tar.zst"}], "set_aside": [], "removed": []}
    journal.append(root, {"command": "snapshots n1", "argv": ["snapshots", "n1"], "result": listed})
    failed = {"host": "n1", "operation": "restart", "service": "web", "ok": False, "error": "web not healthy",
              "seconds": 4.0}  # fmt: skip
    journal.append(root, {"command": "agent restart n1 web", "argv": ["agent", "restart", "n1", "web"],
                          "result": failed})  # fmt: skip
    code, out, err = run_cli("-C", str(root), "journal")
    assert code == 0, err
    rows = [" ".join(r.split()) for r in out.splitlines()[1:]]
    assert rows[0].endswith("mcfleet snapshot n1 db n1 0.6 ok: snapshot db (136 bytes)"), rows
    assert rows[1].endswith("mcfleet snapshots n1 n1 - ok: 1 snapshot(s)"), rows
    assert rows[2].endswith("mcfleet agent restart n1 web n1 4.0 failed: restart web: web not healthy"), rows


def test_the_node_lock_removes_copies_an_apply_that_died_left_and_only_once_it_holds_the_lock(
    tmp_path: Path,
) -> None:
    """The files kind copies a running service's files to root's store (`previous.*`) before writing new
    ones, and removes them when its apply ends; an apply killed in between left them there for good (a
    secret's earlier content among them).  The next holder of the node's lock removes them; an apply
    refused because another holds the lock leaves that one's copies alone."""
    from mcfleet.apply.lock import node_lock_script

    lock = str(tmp_path / "apply.lock")
    left = tmp_path / "previous.0123456789abcdef"
    left.write_text("old secret")
    (tmp_path / "manifest.json").write_text("{}")

    def take() -> subprocess.Popen[str]:
        return subprocess.Popen(["sh", "-c", node_lock_script("me", lock)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip

    first = take()
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline().strip() == "locked"
    assert not left.exists() and (tmp_path / "manifest.json").exists()
    left.write_text("copy the holder needs")
    second = take()
    out, _ = second.communicate(timeout=10)
    assert second.returncode == 9 and out.startswith("busy="), out
    assert left.read_text() == "copy the holder needs"
    first.stdin.close()
    assert first.wait(10) == 0
    first.stdout.close()


def test_a_one_host_operation_cut_by_ctrl_c_or_failing_is_journalled_with_its_host(tmp_path: Path) -> None:
    """`journal --on HOST --failed` finds an interrupted or failed snapshot of that host (was: recorded
    without a host, so only `journal --failed` listed it)."""
    from mcfleet.errors import PeerError
    from tests.conftest import run_cli

    shutil.copytree(Path(__file__).parents[1] / "data" / "fleets" / "minimal", tmp_path / "fleet")
    root = tmp_path / "fleet"

    def interrupted() -> Any:
        raise KeyboardInterrupt

    def failing() -> Any:
        raise PeerError("agent StopService failed", location="alpha")

    with pytest.raises(KeyboardInterrupt):
        journal.run_journalled(root, "snapshot alpha db", interrupted, ["alpha"])
    with pytest.raises(PeerError):
        journal.run_journalled(root, "restore alpha db latest", failing, ["alpha"])
    code, out, err = run_cli("-C", str(root), "journal", "--on", "alpha", "--failed")
    assert code == 0, err
    rows = [" ".join(r.split()) for r in out.splitlines()[1:]]
    assert len(rows) == 2 and all(" alpha " in r for r in rows), rows
