"""`snapshot` and `restore` of a service the operator stopped on purpose leave it stopped; of a running one,
start it again, also after a Ctrl-C once its stop was sent (apply/snapshot.py `_stopped`).

Seen by QA on a lab: `mcfleet agent stop full1 db; mcfleet snapshot full1 db` left db running, and
`timeout --preserve-status -s INT 0.8 mcfleet snapshot full1 db` left it stopped, with no warning.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import (  # noqa: F401
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

# the CLI as run from a terminal: SIGINT at its default (a test runner may ignore it, and children inherit that)
SIGINT_AT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)
AS_MCP = "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850"


def _state(fleet: Nodes, name: str, container: str) -> str:
    out = fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.Status}}}}' {container}", check=False)
    return out.stdout.strip()


def _desired(fleet: Nodes, name: str, service: str) -> str:
    """What the agent keeps `service` at, read from its registry on the node."""
    read = (
        "import sqlite3; db = sqlite3.connect('file:/srv/mcp/mcfleet-agent.db?mode=ro', uri=True); "
        f"print(db.execute('SELECT desired FROM services WHERE name = ?', ({service!r},)).fetchone()[0])"
    )
    return fleet.sh(name, f'python3 -c "{read}"', check=False).stdout.strip()


def test_a_service_stopped_before_a_snapshot_or_restore_stays_stopped(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "snapst")
    name = fleet.names[0]
    root = str(fleet.lab.write_fleet(fleet.fleet_dir, nodes=[name], services=True))
    applied = cli("apply", "-C", root, "--yes", "--bundle", str(agent_bundle), "--json", timeout=900)
    assert applied.code == 0, applied.why
    assert _state(fleet, name, "db") == "running"

    held = cli("agent", "stop", name, "db", "-C", root)
    assert held.code == 0, held.stdout + held.stderr
    assert _state(fleet, name, "db") != "running"
    fleet.sh(name, "echo kept > /srv/db/marker")
    run = cli("snapshot", name, "db", "-C", root, "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert _state(fleet, name, "db") != "running"  # was: running (the snapshot started it)
    assert _desired(fleet, name, "db") == "stopped"  # still held stopped by the agent
    taken = json.loads(run.stdout)
    assert taken["path"].startswith("/var/lib/mcfleet/snapshots/db-") and taken["left_stopped"] is True, taken
    said = cli("snapshot", name, "db", "-C", root)
    assert said.code == 0 and "db was stopped before and stays stopped" in said.stdout, said.stdout + said.stderr
    fleet.sh(name, "echo changed > /srv/db/marker")
    back = cli("restore", name, "db", "latest", "-C", root, "--json")
    assert back.code == 0, back.stdout + back.stderr
    assert json.loads(back.stdout)["left_stopped"] is True
    assert fleet.sh(name, "cat /srv/db/marker").stdout == "kept\n"
    assert _state(fleet, name, "db") != "running"  # was: running (the restore started it)

    # started by hand again, a snapshot stops it and starts it again
    assert cli("agent", "start", name, "db", "-C", root).code == 0
    assert _state(fleet, name, "db") == "running"
    again = cli("snapshot", name, "db", "-C", root, "--json")
    assert again.code == 0 and json.loads(again.stdout)["left_stopped"] is False, again.stdout + again.stderr
    assert _state(fleet, name, "db") == "running"


def test_ctrl_c_while_a_snapshot_stops_the_service_starts_it_again(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo
) -> None:
    fleet = make_nodes(1, "snapint")
    name = fleet.names[0]
    root = str(fleet.lab.write_fleet(fleet.fleet_dir, nodes=[name], services=True))
    applied = cli("apply", "-C", root, "--yes", "--bundle", str(agent_bundle), "--json", timeout=900)
    assert applied.code == 0, applied.why
    assert _state(fleet, name, "db") == "running" and _desired(fleet, name, "db") == "running"
    # Ctrl-C as soon as the agent is stopping db (its registry records that first): db is started again, and
    # said so (the stop may be done by then: the unit test's contract fake holds the stop for that case)
    argv = [*mcfleet_argv(), "snapshot", name, "db", "-C", root]
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_AT_DEFAULT, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _desired(fleet, name, "db") == "running" and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode == 0:  # the snapshot was done before the signal came: nothing interrupted
        pytest.fail(f"the snapshot ended before its Ctrl-C: {out}{err}")
    assert proc.returncode == 130, out + err
    print(err)  # where the Ctrl-C came: during the stop, or the archive
    assert _desired(fleet, name, "db") == "running", err  # was: "stopped", as by `mcfleet agent stop`
    assert _state(fleet, name, "db") == "running", err
    assert "db was started again" in err, err
