"""Start-up time of the `mcfleet` command: `--help`, `validate` and `plan --help`, min of N runs.

Each run is a fresh process (what a person or a script pays per call), timed wall-clock
from spawn to exit.  The minimum is the figure that carries over between machines (the
others add the noise of whatever else runs); the median and the child's CPU time are
printed beside it, with the goal.  "floor: asyncssh" is what any asyncssh client imports
before it connects (the bench's bare-SSH floor, and `plan`): plan's own share is the
difference.  On a shared, loaded machine every figure grows; the second table is steadier:
the import time Python itself reports (`-X importtime`, the sum of every module's self time,
min of N runs), split by package, so a regression shows which import it came from.

    .venv/bin/python bench/startup.py            # 10 runs each
    .venv/bin/python bench/startup.py --runs 20 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MCFLEET = Path(sys.executable).parent / "mcfleet"


# What `mcfleet plan` imports before it connects (cli/main.py's _plan_fast: cli/plan_fast.py, then
# cli/plan_run.py and the imports inside run_plan()); timed as one `python -c`, so no node is needed.
# PLAN_BOOT first does what mcfleet does before importing them: the cyclic GC paused (main.run) and
# pydantic's plugin scan skipped (it would import importlib.metadata, zipfile and csv).
PLAN_BOOT = (
    "import gc, os\n"
    "gc.disable()\n"
    "os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
    "import mcfleet.cli.main as m\n"
    "m._skip_pydantic_plugin_scan()\n"
)
PLAN_IMPORTS = (
    "mcfleet.cli.plan_fast, mcfleet.cli.plan_run, mcfleet.fleet.load, mcfleet.fleet.rules, "
    "mcfleet.kinds.system, mcfleet.plan.planner, mcfleet.plan.render, mcfleet.plan.saved, "
    "mcfleet.report.progress, mcfleet.transport.ssh, mcfleet.util.aio"
)


def cases(root: Path) -> list[tuple[str, list[str], float]]:
    """(label, arguments, goal in seconds); `validate` checks the checkout's own fleet (4 hosts)."""
    return [
        ("mcfleet --help", ["--help"], 0.100),
        ("mcfleet validate", ["-C", str(root), "validate"], 0.120),
        ("validate --no-cache", ["-C", str(root), "validate", "--no-cache"], 0.120),
        ("mcfleet plan --help", ["plan", "--help"], 0.150),
    ]


# What an installed mcfleet runs with: its modules' bytecode cached (pip compiles at install; an
# editable checkout writes __pycache__ on its first run).  PYTHONDONTWRITEBYTECODE in the
# environment would make every run compile mcfleet's sources again (~60 ms).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def works(argv: list[str]) -> bool:
    """One run first (it writes the bytecode and the remembered validate result); False when the
    command fails (e.g. an option an older mcfleet given with --src does not have)."""
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=ENV)
    return done.returncode == 0


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


GROUPS = ("mcfleet", "typer", "pydantic", "pydantic_core", "rich", "asyncssh", "jsonschema", "grpc", "asyncio")


def import_times(argv: list[str]) -> dict[str, float]:
    """Seconds of import self time per top-level package (`-X importtime`), plus "total"."""
    cmd = [sys.executable, "-X", "importtime", *(argv[1:] if argv[0] == sys.executable else argv)]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, env=ENV)
    out: dict[str, float] = {"total": 0.0}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.removeprefix("import time:").split("|", 2)
        top = name.strip().split(".")[0]
        group = top if top in GROUPS else "other"
        out[group] = out.get(group, 0.0) + int(self_us) / 1e6
        out["total"] += int(self_us) / 1e6
    return out


def import_table(todo: list[tuple[str, list[str], float | None]], runs: int) -> list[tuple[str, dict[str, float]]]:
    """(command, seconds per package, largest first) from the run with the least total."""
    rows: list[tuple[str, dict[str, float]]] = []
    for label, argv, _goal in todo:
        samples = [import_times(argv) for _ in range(runs)]
        best = min(samples, key=lambda s: s["total"])
        rows.append((label, {k: round(v, 4) for k, v in sorted(best.items(), key=lambda kv: -kv[1])}))
    return rows


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
    path = f"import sys; sys.path.insert(0, {args.src!r})\n" if args.src else ""
    todo: list[tuple[str, list[str], float | None]] = [("python -c pass", [sys.executable, "-c", "pass"], None)]
    # What the bare-SSH floor (bench/plan/floor.py) imports before it connects, with plan's cyclic GC
    # pause: any asyncssh client pays it, plan too.  `import mcfleet` first arms the quick library lookup.
    floor = f"{path}import gc\ngc.disable()\nimport mcfleet\nimport asyncio, asyncssh\n"
    todo.append(("floor: asyncssh", [sys.executable, "-c", floor], None))
    todo += [(label, [*exe, *argv], goal) for label, argv, goal in cases(root)]
    todo.append(("plan's imports", [sys.executable, "-c", f"{path}{PLAN_BOOT}import {PLAN_IMPORTS}"], 0.150))
    todo = [case for case in todo if works(case[1])]
    rows: list[dict[str, Any]] = []
    for label, argv, goal in todo:
        runs = [time_once(argv) for _ in range(args.runs)]
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        rows.append({"command": label, "min_s": min(walls), "median_s": statistics.median(walls),
                     "cpu_min_s": min(cpus), "goal_s": goal})  # fmt: skip
    script = str(MCFLEET) if MCFLEET.exists() else None
    imports = import_table(
        [(label, [sys.executable, script, *argv[1:]] if script and argv[0] == script else argv, goal)
         for label, argv, goal in todo[1:]],
        args.runs,
    )  # fmt: skip
    if args.json:
        out = {"runs": args.runs, "rows": rows, "import_self_times": [{"command": c, **t} for c, t in imports]}
        print(json.dumps(out, indent=2))
        return 0
    # The goals are wall times on a quiet machine; on a loaded one the wall time mostly measures the
    # wait for a core, so the verdict is given for both: wall min, and CPU min (the process's own work).
    print(f"{'command':<22} {'min':>7} {'median':>7} {'CPU min':>8} {'goal':>6}  wall / CPU vs goal "
          f"(min of {args.runs} runs)")  # fmt: skip
    for r in rows:
        goal = r["goal_s"]
        verdict = "" if goal is None else " / ".join(
            "ok" if r[key] < goal else "over" for key in ("min_s", "cpu_min_s")
        )  # fmt: skip
        shown = "-" if goal is None else f"{goal * 1000:.0f}ms"
        print(f"{r['command']:<22} {r['min_s'] * 1000:5.0f}ms {r['median_s'] * 1000:5.0f}ms "
              f"{r['cpu_min_s'] * 1000:6.0f}ms {shown:>6}  {verdict}")  # fmt: skip
    print(f"\nimport self time (-X importtime, the run with the least total of {args.runs}), by package:")
    for command, times in imports:
        parts = ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in times.items() if k != "total" and v >= 0.001)
        print(f"{command:<22} {times['total'] * 1000:5.0f}ms  ({parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
