"""Fleet files that are not what they seem: devices, FIFOs, huge files, links to nowhere, folders
that cannot be listed.  Each is a finding (exit 2), never a hang, a traceback, a silent drop or a
host planned with no services.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcfleet.fleet.load import MAX_FILE_BYTES, MAX_FINDINGS_PER_FILE, load_fleet
from mcfleet.fleet.rules import check
from tests.conftest import REPO, run_cli

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
WEB = "hosts/alpha/services/web.json"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    return root


def findings(root: Path) -> list[tuple[str, str]]:
    return sorted((f.code, f.file) for f in check(load_fleet(root)))


def replace_with_link(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_as_a_host_file_is_refused_at_once(fleet: Path, target: str) -> None:
    replace_with_link(fleet / "hosts/beta/host.json", target)
    started = time.monotonic()
    assert findings(fleet) == [("unreadable", "hosts/beta/host.json")]
    assert time.monotonic() - started < 30  # generous: the point is that it ends at all


def test_a_fifo_does_not_hang(fleet: Path) -> None:
    (fleet / WEB).unlink()
    os.mkfifo(fleet / WEB)
    assert findings(fleet) == [("unreadable", WEB)]


def test_a_huge_file_is_refused_by_size(fleet: Path) -> None:
    with (fleet / "hosts/beta/host.json").open("r+b") as f:
        f.truncate(300 * 1024 * 1024)  # sparse: 300 MB of zero bytes
    assert findings(fleet) == [("file-too-large", "hosts/beta/host.json")]


def test_a_3mb_file_of_wrong_typed_items_is_refused_fast_and_small(fleet: Path) -> None:
    path = fleet / "hosts/beta/host.json"
    data = json.loads(path.read_text())
    data["addresses"] = [1] * 1_000_000
    path.write_text(json.dumps(data, separators=(",", ":")))
    assert path.stat().st_size > 2_000_000
    assert findings(fleet) == [("file-too-large", "hosts/beta/host.json")]


def test_findings_per_file_are_capped(fleet: Path) -> None:
    path = fleet / "hosts/beta/host.json"
    data = json.loads(path.read_text())
    data["addresses"] = [1] * ((MAX_FILE_BYTES - 2000) // 2)  # just under the size limit
    path.write_text(json.dumps(data, separators=(",", ":")))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = check(load_fleet(fleet))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    assert [f.code for f in found] == ["schema"] * (MAX_FINDINGS_PER_FILE + 1)
    assert found[-1].message.startswith("and ") and found[-1].message.endswith("more schema errors in this file")
    assert grown_mib < 300, grown_mib


def test_a_duplicate_key_is_a_finding_with_its_pointer(fleet: Path) -> None:
    path = fleet / "hosts/beta/host.json"
    path.write_text(path.read_text().replace('"ssh": {', '"ssh": {\n    "user": "deploy",', 1))
    found = check(load_fleet(fleet))
    assert [(f.code, f.file, f.pointer) for f in found] == [("duplicate-key", "hosts/beta/host.json", "/ssh")]
    assert "'user' appears more than once" in found[0].message


def test_a_dangling_services_link_is_a_finding_not_zero_services(fleet: Path) -> None:
    services = fleet / "hosts/alpha/services"
    shutil.rmtree(services)
    services.symlink_to(fleet / "nowhere")
    assert findings(fleet) == [("unreadable", "hosts/alpha/services")]


def test_a_services_link_loop_is_a_finding(fleet: Path) -> None:
    services = fleet / "hosts/alpha/services"
    shutil.rmtree(services)
    services.symlink_to(services)
    assert findings(fleet) == [("unreadable", "hosts/alpha/services")]


def test_a_service_file_that_is_a_folder_or_a_dangling_link_is_a_finding(fleet: Path) -> None:
    (fleet / "hosts/alpha/services/extra.json").mkdir()
    (fleet / "hosts/alpha/services/gone.json").symlink_to(fleet / "nowhere.json")
    assert findings(fleet) == [
        ("unreadable", "hosts/alpha/services/extra.json"),
        ("unreadable", "hosts/alpha/services/gone.json"),
    ]


@pytest.mark.parametrize("how", ["file", "dangling", "loop"])
def test_a_host_entry_that_is_not_a_folder_is_a_finding(fleet: Path, how: str) -> None:
    gamma = fleet / "hosts/gamma"
    if how == "file":
        gamma.write_text("{}")
    elif how == "dangling":
        gamma.symlink_to(fleet / "nowhere")
    else:
        gamma.symlink_to(gamma)
    assert findings(fleet) == [("unreadable", "hosts/gamma")]


def test_validate_exits_2_and_plan_refuses_instead_of_planning_deletions(fleet: Path) -> None:
    services = fleet / "hosts/alpha/services"
    shutil.rmtree(services)
    services.symlink_to(fleet / "nowhere")
    code, out, err = run_cli("validate", str(fleet))
    assert code == 2 and "unreadable: hosts/alpha/services: cannot follow the link" in out + err, out + err
    code, out, err = run_cli("plan", str(fleet), "--json")
    assert code == 2 and "Traceback" not in out + err, err
    assert "unreadable" in err and '"actions"' not in out


@pytest.fixture
def shared_fleet() -> Iterator[Path]:
    """A fleet copy another user can reach (this test suite runs as root, whom chmod 000 does not stop)."""
    top = Path(tempfile.mkdtemp(prefix="mcfleet-perm-", dir="/tmp"))
    top.chmod(0o755)
    root = top / "fleet"
    shutil.copytree(MINIMAL, root)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield root
    subprocess.run(["chmod", "-R", "u+rwX", str(top)], check=True)
    shutil.rmtree(top)


def validate_as_nobody(root: Path) -> tuple[int, list[tuple[str, str]], str]:
    code = (
        "import json, sys, pathlib; from mcfleet.fleet.load import load_fleet; from mcfleet.fleet.rules import check; "
        "print(json.dumps(sorted((f.code, f.file) for f in check(load_fleet(pathlib.Path(sys.argv[1]))))))"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )
    found = [tuple(x) for x in json.loads(done.stdout)] if done.returncode == 0 else []
    return done.returncode, found, done.stderr  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("hosts", [("master-count", "hosts"), ("unreadable", "hosts")]),  # no host read: no master either
        ("hosts/alpha/services", [("unreadable", "hosts/alpha/services")]),
    ],
)
def test_a_folder_without_permission_is_a_finding(
    shared_fleet: Path, folder: str, expected: list[tuple[str, str]]
) -> None:
    (shared_fleet / folder).chmod(0o000)
    code, found, err = validate_as_nobody(shared_fleet)
    assert code == 0, err
    assert found == expected
