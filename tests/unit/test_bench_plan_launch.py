"""The plan bench's peak RSS is the tool's own: tools are started through bench/plan/launch.py.

Linux starts a child's ru_maxrss at the resident size of the process that forked it, so a
tool started straight from the bench (a large Python process) reported the bench's size: every
tool showed 57 MB at N = 5 in RESULTS.md.  Each case runs in a fresh interpreter that first makes
itself 200 MB large, as the bench process is larger than the tools it times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PARENT = """
import json, os, subprocess, sys
sys.path.insert(0, {plan!r})
from launch import LaunchFailed, launched
big = bytearray(200 * 1024 * 1024)
for i in range(0, len(big), 4096):
    big[i] = 1
argv = json.loads(sys.argv[1])
straight_kib = 0
if os.path.exists(argv[0]):
    straight = subprocess.Popen(argv)
    _, status, usage = os.wait4(straight.pid, 0)
    straight.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    straight_kib = usage.ru_maxrss
try:
    wall, cpu, rss, code = launched(argv)
except LaunchFailed as e:
    print(json.dumps({{"failed": str(e)}}))
else:
    print(json.dumps({{"straight_kib": straight_kib, "rss_kib": rss, "code": code, "wall": wall, "cpu": cpu}}))
"""


def run_from_big_parent(argv: list[str]) -> dict[str, float]:
    code = PARENT.format(plan=str(REPO / "bench" / "plan"))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True, text=True,
                          cwd=REPO, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0, f"the measuring parent failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_small_tool_reports_its_own_size_not_the_bench_s() -> None:
    got = run_from_big_parent(["/bin/true"])
    assert got["straight_kib"] > 200 * 1024, "the kernel behaviour the launcher works around"
    assert got["rss_kib"] < 32 * 1024
    assert got["code"] == 0


def test_a_large_tool_reports_its_peak_its_cpu_and_its_exit_code() -> None:
    grow = "b = bytearray(120 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nraise SystemExit(3)"
    got = run_from_big_parent([sys.executable, "-c", grow])
    assert 120 * 1024 < got["rss_kib"] < 200 * 1024
    assert got["code"] == 3
    assert got["cpu"] > 0
    assert got["wall"] >= got["cpu"] * 0.5


def test_a_missing_program_is_an_exit_code_not_a_hang() -> None:
    got = run_from_big_parent(["/nonexistent/tool"])
    assert got["code"] == 127


def test_past_its_timeout_the_command_is_killed_with_its_children() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'bench' / 'plan')!r})\n"
        "from launch import LaunchFailed, launched\n"
        "try:\n"
        "    launched(['sh', '-c', 'sleep 30 & echo $! > /dev/stderr; wait'], timeout=0.5)\n"
        "except LaunchFailed as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=20)
    assert "did not finish within 0.5 s" in done.stdout
    sleeper = int(done.stderr.split()[0])
    assert not Path(f"/proc/{sleeper}").exists() or "Z" in Path(f"/proc/{sleeper}/stat").read_text().split()[2]


def test_captured_gives_the_output_of_a_command_that_prints_more_than_a_pipe_holds() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(REPO / 'bench' / 'plan')!r})\n"
        "from launch import captured\n"
        "wall, cpu, rss, status, out, err = captured(['sh', '-c', 'head -c 300000 /dev/zero | tr \"\\\\0\" x; "
        "echo oops >&2; exit 4'], timeout=20)\n"
        "print(status, len(out), set(out), repr(err))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.split(maxsplit=3) == ["4", "300000", "{'x'}", "'oops\\n'\n"]
