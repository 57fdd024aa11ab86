"""Start-up time of the `mcfleet` command: `--help`, `validate` and `plan --help`, min of N runs.

Each run is a fresh process (what a person or a script pays per call), timed wall-clock
from spawn to exit.  The minimum is the figure that carries over between machines (the
others add the noise of whatever else runs); the median is printed beside it.

    .venv/bin/python bench/startup.py            # 10 runs each
    .venv/bin/python bench/startup.py --runs 20 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MCFLEET = Path(sys.executable).parent / "mcfleet"


def cases(root: Path) -> list[tuple[str, list[str], float]]:
    """(label, arguments, goal in seconds); `validate` checks the checkout's own fleet (4 hosts)."""
    return [
        ("mcfleet --help", ["--help"], 0.100),
        ("mcfleet validate", ["validate", str(root)], 0.120),
        ("mcfleet plan --help", ["plan", "--help"], 0.150),
    ]


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--src", help="time the mcfleet sources in this python/ folder instead (e.g. an old checkout)")
    args = parser.parse_args()
    exe = [str(MCFLEET)] if MCFLEET.exists() else [sys.executable, "-m", "mcfleet"]
    if args.src:
        boot = f"import sys; sys.path.insert(0, {args.src!r}); from mcfleet.cli.main import main; sys.exit(main())"
        exe = [sys.executable, "-c", boot]
    root = Path(args.src).resolve().parent if args.src else ROOT
    todo: list[tuple[str, list[str], float | None]] = [("python -c pass", [sys.executable, "-c", "pass"], None)]
    todo += [(label, [*exe, *argv], goal) for label, argv, goal in cases(root)]
    rows = []
    for label, argv, goal in todo:
        runs = [time_once(argv) for _ in range(args.runs)]
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        rows.append({"command": label, "min_s": min(walls), "median_s": statistics.median(walls),
                     "cpu_min_s": min(cpus), "goal_s": goal})  # fmt: skip
    if args.json:
        print(json.dumps({"runs": args.runs, "rows": rows}, indent=2))
        return 0
    print(f"{'command':<22} {'min':>7} {'median':>7} {'CPU min':>8} {'goal':>6}  (wall, min of {args.runs} runs)")
    for r in rows:
        goal = r["goal_s"]
        verdict = "" if goal is None else ("ok" if r["min_s"] < goal else "over")
        shown = "-" if goal is None else f"{goal * 1000:.0f}ms"
        print(f"{r['command']:<22} {r['min_s'] * 1000:5.0f}ms {r['median_s'] * 1000:5.0f}ms "
              f"{r['cpu_min_s'] * 1000:6.0f}ms {shown:>6}  {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
