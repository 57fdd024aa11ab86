"""Steps the deploy lab test runs on its node once a service runs: the push's progress events,
`mcfleet logs` of a running container (text, --json, -f) and of the agent.

The demo image prints `<app> <version> listening on port <port>` when it starts and busybox
httpd (-vv) logs every request's URL on stderr, so a request with a unique path is a line that
can only come from the container, read back through `mcfleet logs`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from mcfleet.report.rate import megabytes
from tests.integration.apply_lab import CliRun, Nodes, cli, mcfleet_argv


def check_push_progress(run: CliRun, host: str, bundle: Path) -> None:
    """The first apply's push reported its bytes (0 first, the whole bundle last) and the unpack step."""
    size = bundle.stat().st_size
    pushes = [e for e in run.events if e["host"] == host and e["phase"] == "push" and e["status"] == "progress"]
    sized = [e for e in pushes if "bytes_total" in e["data"]]
    assert sized, pushes
    assert sized[0]["data"] == {"bytes_done": 0, "bytes_total": size}
    assert sized[-1]["data"] == {"bytes_done": size, "bytes_total": size}
    assert sized[-1]["message"] == megabytes(size, size)
    assert any("unpacking the new bundle" in e["message"] for e in pushes), pushes


def _follow(argv: list[str]) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    env = {k: v for k, v in os.environ.items() if k != "MCFLEET_FLEET"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _wait_for(lines: queue.Queue[str], needle: str, within_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} did not appear within {within_s:g} s; saw: {seen[-10:]}")


def check_logs(fleet: Nodes, host: str, root: str, service: str, port: int) -> None:
    """`mcfleet logs HOST SERVICE` shows the container's output; --json; -f follows a new line; agent."""
    text = cli("-C", root, "logs", host, service)
    assert text.code == 0, text.stdout + text.stderr
    assert f"{service} 1 listening on port 8080" in text.stdout, text.stdout
    # each line once, as the container printed it: journald keeps conmon's newline in each entry, and
    # `journalctl -o cat` printed one more (a blank line after every line)
    assert "\n\n" not in text.stdout and text.stdout.endswith("\n"), text.stdout[:400]

    probe = f"/logs-probe-{secrets.token_hex(4)}"
    fleet.sh(host, f"curl -s http://127.0.0.1:{port}{probe} >/dev/null", check=False)
    as_json = cli("-C", root, "logs", host, service, "--json", "-n", "200")
    assert as_json.code == 0, as_json.stderr
    records: list[dict[str, Any]] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert records and all(set(r) == {"host", "source", "line"} for r in records)
    assert all(r["line"] for r in records), records[:6]  # no blank record between the lines
    assert {(r["host"], r["source"]) for r in records} == {(host, service)}
    assert any(r["line"].endswith(f"url:{probe}") for r in records), records[-5:]

    proc, lines = _follow([*mcfleet_argv(), "-C", root, "logs", host, service, "-f", "-n", "1"])
    try:
        _wait_for(lines, "", 60)  # the last line is there: the follow is running
        second = f"/logs-follow-{secrets.token_hex(4)}"
        fleet.sh(host, f"curl -s http://127.0.0.1:{port}{second} >/dev/null", check=False)
        _wait_for(lines, f"url:{second}", 60)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130, err
    assert "interrupted: stopped at Ctrl-C (this command changes nothing)" in err  # `logs -f` only reads

    agent = cli("-C", root, "logs", host, "agent", "-n", "50")
    assert agent.code == 0, agent.stderr
    assert "Started" in agent.stdout and "No entries" not in agent.stdout, agent.stdout
    # the agent's own lines: journald's timestamp only (its "<6>" priority prefix is taken off by journald)
    own = [line for line in agent.stdout.splitlines() if " mcfleet.agent: " in line]
    assert own and all(re.search(r"mcp-agent\[\d+\]: (DEBUG|INFO|WARNING|ERROR) mcfleet", x) for x in own), own
