"""Secret poison over the lab fleet: the TSIG secret, the ACME account key and every other
secret file the fleet names (tests/secret_poison.py) must appear in no output of plan and apply
(text, --json, --debug, a saved plan), not in the journal, the lab's peer and node logs, the
nodes' files, nor any process's command line (sampled while the commands run).

Providers: a new provider's secret files are found from fleet.json by field name; add a command
that exercises it to COMMANDS (or call `check_run` from your own test).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_lab import LabFleet
from tests.integration.apply_lab import mcfleet_argv
from tests.secret_poison import find_leaks, local_ps, secret_needles, secret_paths, tree_leaks

pytestmark = pytest.mark.lab

SERVICE = {
    "name": "poisonweb",
    "components": [
        {"name": "poisonweb", "image": "localhost/mcfleet-bb:test", "routes": [{"port": 8080, "mode": "l7"}]}
    ],
}
COMMANDS: list[list[str]] = [
    ["plan"],
    ["plan", "--json"],
    ["--debug", "plan"],
    ["plan", "-o", "{tmp}/plan.json"],
    ["apply", "--on", "{node}", "--yes", "--json"],
    ["--debug", "apply", "--on", "{node}", "--yes"],
]


def run_sampling_ps(argv: list[str], cwd: Path) -> tuple[str, str]:
    """Run the CLI; return (its stdout+stderr, every `ps` snapshot taken while it ran)."""
    snapshots: list[str] = []
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            snapshots.append(local_ps())
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        stop.set()
        sampler.join()
    if "--debug" not in argv:  # --debug shows the traceback of an error on purpose
        assert "Traceback" not in out + err, err
    return out + err, "\n".join(snapshots)


def check_run(lab_fleet: LabFleet, root: Path, needles: dict[str, str], argv: list[str]) -> list[str]:
    said, ps = run_sampling_ps([*mcfleet_argv(), "-C", str(root), *argv], root)
    return find_leaks(needles, {f"`{' '.join(argv)}` output": said, f"ps during `{' '.join(argv)}`": ps})


def test_no_secret_in_any_output_log_file_or_command_line(lab_fleet: LabFleet, tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(lab_fleet.fleet_dir, root, ignore=shutil.ignore_patterns(".lab", ".mcfleet"))
    node = lab_fleet.names[0]
    services = root / "hosts" / node / "services"
    services.mkdir(parents=True, exist_ok=True)
    (services / "poisonweb.json").write_text(json.dumps(SERVICE))
    needles = secret_needles(root)
    assert {"key_file", "account_key_file"} <= {k.rsplit("/", 1)[-1] for k in needles}, needles  # the lab's TSIG, ACME

    leaks: list[str] = []
    for argv in COMMANDS:
        leaks += check_run(lab_fleet, root, needles, [a.format(tmp=tmp_path, node=node) for a in argv])
    # The peers' own configuration must hold the secret they check (Knot's key): not a leak.
    peer_config = {lab_fleet.lab.run_dir / "knot" / "tsig.conf"}
    leaks += tree_leaks(needles, root / ".mcfleet")  # the journal and state
    leaks += find_leaks(needles, {"the saved plan": (tmp_path / "plan.json").read_text()})
    leaks += tree_leaks(needles, lab_fleet.lab.run_dir, skip=secret_paths(root) | peer_config)
    for name in lab_fleet.names:
        seen: Any = lab_fleet.exec_in(
            name, ["sh", "-c", "ps -eo args; cat /srv/mcp/* /var/lib/mcfleet/* 2>/dev/null; true"], check=False
        )
        leaks += find_leaks(needles, {f"{name}: ps and files": seen.stdout})
    assert leaks == [], leaks
