"""`mcfleet logs HOST` on a node whose PID 1 is not systemd (a lab fast node): the agent runs as a
systemd unit, so there is no agent journal to show, and saying "-- No entries --" with exit 0 would
pass for an agent that simply logged nothing.  A service's log (podman) is still read there."""

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

NODE = "nosysd1"
WEB = {"name": "nsweb", "components": [{"name": "nsweb", "image": "localhost/mcfleet-bb:test"}]}


@pytest.fixture(scope="module")
def fleet(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    asyncio.run(lab.add_fast_node(NODE, with_podman=False))
    yield lab.write_fleet(tmp_path_factory.mktemp("nosysd") / "fleet", nodes=[NODE])


def mcfleet(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCFLEET_FLEET"}
    return subprocess.run(
        [*mcfleet_argv(), "-C", str(root), *args],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_agent_logs_on_a_node_without_systemd_fail_and_say_why(fleet: Path, lab: Any) -> None:
    code, _out, _err = asyncio.run(lab.exec_in(NODE, ["test", "-d", "/run/systemd/system"]))
    assert code != 0, "the lab's fast node was expected to run without systemd"

    for args in (["logs", NODE], ["logs", NODE, "agent", "-n", "5", "--json"], ["logs", NODE, "-f"]):
        done = mcfleet(fleet, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "No entries" not in done.stdout, done.stdout
        assert done.stdout == "", done.stdout
        assert (
            f"{NODE}: logs: {NODE} does not run systemd (PID 1): the agent's log is the journal of "
            "mcp-agent.service, which only exists under systemd"
        ) in done.stderr, done.stderr
        assert "\n  hint: " in done.stderr and f"mcfleet logs {NODE} SERVICE" in done.stderr, done.stderr


def test_service_logs_on_that_node_are_not_refused_for_lack_of_systemd(fleet: Path) -> None:
    svc = fleet / "hosts" / NODE / "services"
    svc.mkdir(exist_ok=True)
    (svc / "nsweb.json").write_text(json.dumps(WEB))
    try:
        done = mcfleet(fleet, "logs", NODE, "nsweb")
    finally:
        (svc / "nsweb.json").unlink()
    # podman needs no systemd: the line reached podman on the node (nothing deployed there yet)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{NODE}: logs: could not read the logs of nsweb: " in done.stderr, done.stderr
    assert "does not run systemd" not in done.stderr, done.stderr
