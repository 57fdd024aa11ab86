"""The pure Nix check (nix/lib, builtins only) on generated fleets of growing size.

    .venv/bin/python bench/nixcheck/run.py [--hosts 300,1000,2000,3000] [--runs 5]
        [--rev GITREV] [--timeout 120] [--results bench/nixcheck/RESULTS.md]

For each size a valid fleet is generated (bench/validate_1000.py's generator: 1 master, 20
edges, the rest workers with two services each, ~3 JSON files per host) and nix/lib is
evaluated with `nix-instantiate --eval --strict` (what `mcfleet nix check` runs), twice:

- check: the findings and the host names, i.e. what `checks.<system>.fleet` evaluates;
- derived: the same plus every host's derived values (users, resolvers, agent unit, /srv
  dirs, firewall), i.e. what the NixOS configurations of all hosts read.

Each is run --runs times; the minimum CPU time (user + sys of nix-instantiate, from wait4)
and the peak RSS are reported, with CPU and RSS per host to show how they grow, the 1-minute
load average when each size was measured, and the issue's goal (3,000 hosts under 1 s of CPU
for the check) beside the largest size.  Nix's own evaluation
counters (function calls, values; NIX_SHOW_STATS) are printed too: unlike time they do not
depend on the machine's load, so they show linear growth even on a busy machine (work done
inside one builtin, e.g. `elem` over a long list, is not counted in them).

--rev also measures nix/lib as it was at a git revision of this repository (exported with
`git archive`), for a before/after table; an evaluation that exceeds --timeout is reported
as such.  RESULTS.md is written from these measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "plan"))

from launch import LaunchFailed, captured  # noqa: E402
from validate_1000 import generate  # noqa: E402

from mcfleet.nix.argv import instantiate_eval_argv  # noqa: E402
from mcfleet.nix.lib_eval import lib_expr  # noqa: E402

KINDS = {
    "check": "{ valid = r.valid; findings = builtins.length r.findings; hosts = builtins.attrNames r.hosts; }",
    "derived": "builtins.deepSeq r.hosts { valid = r.valid; hosts = builtins.attrNames r.hosts; }",
}


GOAL_HOSTS, GOAL_CPU_S = 3000, 1.0


@dataclass
class Run:
    cpu_s: float
    wall_s: float
    rss_mb: float
    calls: int
    values: int
    timed_out: bool = False


def evaluate(lib: Path, root: Path, body: str, timeout: float) -> Run:
    """One nix-instantiate: CPU and peak RSS from wait4, Nix's counters from NIX_SHOW_STATS."""
    with tempfile.NamedTemporaryFile(suffix=".json") as stats:
        env = {**os.environ, "NIX_SHOW_STATS": "1", "NIX_SHOW_STATS_PATH": stats.name}
        argv = instantiate_eval_argv(lib_expr(lib, root, body))
        # through the launcher: started from here, its peak RSS would begin at this process's size
        try:
            wall, cpu, rss_kib, code, stdout, stderr = captured(argv, timeout=timeout, env=env)
        except LaunchFailed:
            return Run(timeout, timeout, 0, 0, 0, timed_out=True)
        if code != 0:
            sys.exit(f"nix-instantiate failed ({code}):\n{stderr[-2000:]}")
        result = json.loads(stdout)
        if not result["valid"]:
            sys.exit(f"the generated fleet is not valid for nix/lib at {lib}: {result}")
        counters = json.loads(Path(stats.name).read_text() or "{}")
    return Run(
        cpu_s=cpu,
        wall_s=wall,
        rss_mb=rss_kib / 1024,
        calls=int(counters.get("nrFunctionCalls", 0)),
        values=int(counters.get("values", {}).get("number", 0)),
    )


def best_of(lib: Path, root: Path, body: str, runs: int, timeout: float) -> Run:
    results = []
    for _ in range(runs):
        run = evaluate(lib, root, body, timeout)
        results.append(run)
        if run.timed_out:
            break
    return min(results, key=lambda r: (r.timed_out, r.cpu_s))


def export_lib(rev: str, into: Path) -> Path:
    """nix/lib as it was at `rev`, written under `into` (git ls-tree + git show)."""
    names = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "--name-only", rev, "nix/lib/"], capture_output=True, text=True, check=True
    ).stdout.split()
    lib = into / "nix" / "lib"
    lib.mkdir(parents=True)
    for name in names:
        text = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{name}"], capture_output=True, text=True, check=True
        ).stdout
        (lib / Path(name).name).write_text(text)
    return lib


def cell(run: Run | None) -> str:
    if run is None:
        return "–"
    if run.timed_out:
        return f"> {run.wall_s:.0f} s (stopped)"
    return f"{run.cpu_s:.2f} s, {run.rss_mb:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="300,1000,2000,3000", help="fleet sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="evaluations per size and kind (the minimum is kept)")
    parser.add_argument("--rev", help="also measure nix/lib of this git revision (before/after)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before an evaluation is stopped")
    parser.add_argument("--results", type=Path, help="write a RESULTS.md here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    lib = REPO / "nix" / "lib"
    nix_version = subprocess.run(
        ["nix-instantiate", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load_before = os.getloadavg()[0]
    rows: list[tuple[int, int, dict[str, Run], dict[str, Run]]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mcfleet-nixcheck-") as tmp:
        old_lib = export_lib(args.rev, Path(tmp) / "old") if args.rev else None
        for hosts in sizes:
            root = Path(tmp) / f"fleet-{hosts}"
            generate(root, hosts)
            files = sum(1 for _ in root.rglob("*.json"))
            loads.append(os.getloadavg()[0])
            now = {kind: best_of(lib, root, body, args.runs, args.timeout) for kind, body in KINDS.items()}
            before: dict[str, Run] = {}
            if old_lib is not None:
                before = {kind: best_of(old_lib, root, body, args.runs, args.timeout) for kind, body in KINDS.items()}
            rows.append((hosts, files, now, before))
            c, d = now["check"], now["derived"]
            print(
                f"{hosts:>5} hosts ({files} files, load {loads[-1]:.1f}): check {c.cpu_s:.2f} s CPU "
                f"({c.cpu_s / hosts * 1e3:.3f} ms/host), {c.rss_mb:.0f} MB ({c.rss_mb / hosts * 1e3:.0f} KB/host), "
                f"{c.calls} calls; derived {d.cpu_s:.2f} s CPU, {d.rss_mb:.0f} MB, {d.calls} calls"
                + (f"; {args.rev}: check {cell(before['check'])}, derived {cell(before['derived'])}" if before else ""),
                flush=True,
            )
    load_after = os.getloadavg()[0]
    if args.results:
        args.results.write_text(render(rows, loads, args, nix_version, (load_before, load_after)))
        print(f"wrote {args.results}")


def goal_line(rows: list[tuple[int, int, dict[str, Run], dict[str, Run]]]) -> str:
    """The issue's goal beside the measurement at its size."""
    goal = f"Goal: {GOAL_HOSTS:,} hosts checked in under {GOAL_CPU_S:g} s of CPU"
    at_goal = [now["check"] for hosts, _, now, _ in rows if hosts == GOAL_HOSTS]
    if not at_goal:
        return f"{goal} — not measured (no {GOAL_HOSTS:,}-host fleet in --hosts)."
    cpu = at_goal[0].cpu_s
    return f"{goal} — {'met' if cpu < GOAL_CPU_S else 'not met'} ({cpu:.2f} s)."


def render(
    rows: list[tuple[int, int, dict[str, Run], dict[str, Run]]],
    loads: list[float],
    args: argparse.Namespace,
    nix_version: str,
    load: tuple[float, float],
) -> str:
    command = "bench/nixcheck/run.py --hosts " + args.hosts + f" --runs {args.runs}"
    if args.rev:
        command += f" --rev {args.rev} --timeout {args.timeout:g}"
    lines = [
        "# The pure Nix check on generated fleets",
        "",
        f"Generated by `.venv/bin/python {command} --results {args.results}`; do not edit by hand.",
        "",
        f"{nix_version}; `nix-instantiate --eval --strict` of nix/lib (builtins only). Minimum of {args.runs} runs;",
        "CPU is user + sys of nix-instantiate, RSS its peak. *check* = findings and host names (what",
        "`checks.<system>.fleet` evaluates); *derived* = the same plus every host's derived values (what",
        "the NixOS configurations of all hosts read). Function calls and values are Nix's own counters",
        "(NIX_SHOW_STATS): they do not depend on the machine's load.",
        f"Load average (1 min) on this shared machine: {load[0]:.1f} at the start, {load[1]:.1f} at the end;",
        "CPU time is inflated by it, the counters are not; *load* is the 1-minute load average when",
        "each size was measured.",
        "",
        goal_line(rows),
        "",
        "| hosts | files | load | check CPU | CPU / host | check RSS | RSS / host | check calls "
        "| derived CPU | derived RSS | derived calls |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (hosts, files, now, _), load_then in zip(rows, loads, strict=True):
        c, d = now["check"], now["derived"]
        lines.append(
            f"| {hosts:,} | {files:,} | {load_then:.1f} | {c.cpu_s:.2f} s | {c.cpu_s / hosts * 1e3:.3f} ms | "
            f"{c.rss_mb:.0f} MB | {c.rss_mb / hosts * 1e3:.0f} KB | {c.calls:,} | {d.cpu_s:.2f} s | "
            f"{d.rss_mb:.0f} MB | {d.calls:,} |"
        )
    if args.rev:
        lines += [
            "",
            f"Before: nix/lib at `{args.rev}` on the same fleets (stopped after {args.timeout:g} s):",
            "",
            "| hosts | check before | check now | derived before | derived now |",
            "|---:|---:|---:|---:|---:|",
        ]
        for hosts, _, now, before in rows:
            lines.append(
                f"| {hosts:,} | {cell(before.get('check'))} | {cell(now['check'])} | "
                f"{cell(before.get('derived'))} | {cell(now['derived'])} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
