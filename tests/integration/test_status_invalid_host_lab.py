"""`mcfleet status` against real lab nodes while one host's file does not load: the nodes that load are
observed over SSH as ever, the broken host is a row naming its file (was: exit 2, "invalid fleet", no table)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.apply_lab import mcfleet_argv

pytestmark = pytest.mark.lab

NODES = ["stbn1", "stbn2"]
BROKEN = "stbroken"


@pytest.fixture(scope="module")
def status_fleet(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    async def up() -> None:
        await asyncio.gather(*(lab.add_fast_node(n, with_podman=False) for n in NODES))

    asyncio.run(up())
    yield lab.write_fleet(tmp_path_factory.mktemp("statusbroken") / "fleet", nodes=NODES)


def mcfleet(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCFLEET_FLEET"}
    return subprocess.run(
        [*mcfleet_argv(), "-C", str(root), *args],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_status_observes_the_hosts_that_load_and_names_the_broken_file(status_fleet: Path) -> None:
    folder = status_fleet / "hosts" / BROKEN
    folder.mkdir()
    (folder / "host.json").write_text('{"name": "stbroken",\n  "os": "debian",,\n}\n')
    # what an earlier plan noted of the host's node: the plan, which sees no folder that loads, finds it "gone"
    seen = status_fleet / ".mcfleet" / "hosts-seen.json"
    seen.parent.mkdir(exist_ok=True)
    seen.write_text(json.dumps({"format": 1, "hosts": {BROKEN: {"services": ["web"]}}}))
    try:
        text = mcfleet(status_fleet, "status")
        as_json = mcfleet(status_fleet, "status", "--json")
    finally:
        shutil.rmtree(folder)
        seen.unlink(missing_ok=True)
    assert text.returncode == 1, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:6] == ["HOST", "REACHABLE", "AGENT", "HEALTH", "SERVICES", "DRIFT"]
    for node in NODES:
        row = next(line for line in lines if line.startswith(f"{node} "))
        assert row.split()[1] == "yes", text.stdout  # reached over SSH, its facts and plan read
    broken = next(line for line in lines if line.startswith(f"{BROKEN} "))
    assert f"not observed: hosts/{BROKEN}/host.json: invalid JSON at line 2, column 18" in broken, text.stdout
    assert broken.endswith("run `mcfleet validate`")
    assert "gone from hosts/" not in text.stdout  # its folder is there: broken, not gone
    assert f"{BROKEN} (hosts/{BROKEN}/host.json)" in text.stderr and "invalid fleet" not in text.stderr

    assert as_json.returncode == 1, as_json.stderr
    data = json.loads(as_json.stdout)
    rows = {r["host"]: r for r in data["hosts"]}
    assert sorted(rows) == sorted([*NODES, BROKEN])
    for node in NODES:
        assert rows[node]["reachable"] is True and rows[node]["cause"] is None, rows[node]
    row = rows[BROKEN]
    assert row["cause"] == "invalid" and row["file"] == f"hosts/{BROKEN}/host.json"
    assert row["error"].startswith(f"hosts/{BROKEN}/host.json: invalid JSON at line 2, column 18: ")
    assert row["reachable"] is False and row["ok"] is False
    assert data["ok"] is False and data["gone"] == {}
