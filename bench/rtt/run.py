"""`mcfleet plan` and `mcfleet status` over links with latency: how many round trips each waits for, one
after the other, and what a change saved.

    ./scripts/lab-demo.sh            # leaves its lab up: full nodes with agents, services, routes, proxies
    git worktree add /tmp/before <commit>   # optional: the code to compare with
    sudo .venv/bin/python bench/rtt/run.py --fleet /var/tmp/mcfleet-lab [--src /tmp/before/python ...] \\
        [--rtt 0,20,60] [--commands plan,status] [--runs 7] [--out bench/rtt/RESULTS.md]

The lab's full nodes are reached through a forwarder in each node's network namespace that holds every
chunk for RTT/2 in each direction (bench/rtt/delay.py: this kernel has no netem), in front of its sshd.
The fleet is copied once per RTT with `ssh.port` pointing at that forwarder; nothing else changes, so
what each command finds is the same (checked: every version and RTT plans the same actions; every status
finds the same hosts reached, agents serving and services up).  Per RTT, the versions
run interleaved, --runs times each; wall time and client CPU (getrusage of the children) are reported
as median (min).  On a real fleet most of a plan's wall time is round trips: this shows how many.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DELAY = Path(__file__).resolve().parent / "delay.py"
BASE_PORT = 2200  # the forwarder of RTT r listens on BASE_PORT + r in each node's namespace


def full_nodes(fleet: Path) -> list[dict[str, Any]]:
    """The lab's running full nodes (systemd, agents): name and network namespace."""
    done = subprocess.run(
        [sys.executable, "-m", "mcfleet", "lab", "status", "--dir", str(fleet), "--json"],
        capture_output=True, text=True, check=False, env=_env(ROOT / "python"),
    )  # fmt: skip
    if done.returncode not in (0, 1) or not done.stdout.startswith("{"):
        sys.exit(f"no lab in {fleet}: {done.stderr.strip()[-300:]} (run ./scripts/lab-demo.sh first)")
    nodes = [n for n in json.loads(done.stdout)["nodes"] if n["kind"] == "full" and n["running"]]
    if not nodes:
        sys.exit(f"the lab in {fleet} has no running full node (./scripts/lab-demo.sh brings up two)")
    return nodes


def _env(python_dir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(python_dir), "NO_COLOR": "1"}


@contextmanager
def forwarders(nodes: list[dict[str, Any]], rtts: list[int]) -> Iterator[None]:
    started: list[subprocess.Popen[str]] = []
    try:
        for rtt in (r for r in rtts if r):
            for node in nodes:
                argv = ["ip", "netns", "exec", node["netns"], sys.executable, str(DELAY),
                        "0.0.0.0", str(BASE_PORT + rtt), "127.0.0.1", "22", str(rtt / 2)]  # fmt: skip
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                started.append(proc)
                if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                    sys.exit(f"the forwarder in {node['netns']} did not start")
        yield
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(timeout=10)


def fleet_copy(fleet: Path, names: list[str], rtt: int, into: Path) -> Path:
    """The fleet with its full nodes' SSH port at the forwarder of `rtt` (the fleet itself for 0)."""
    if not rtt:
        return fleet
    dest = into / f"rtt{rtt}"
    shutil.copytree(fleet, dest, ignore=shutil.ignore_patterns(".lab", ".mcfleet"))
    for name in names:
        path = dest / "hosts" / name / "host.json"
        host = json.loads(path.read_text())
        host["ssh"]["port"] = BASE_PORT + rtt
        path.write_text(json.dumps(host, indent=2))
    return dest


def run_once(command: str, python_dir: Path, fleet: Path, names: list[str]) -> tuple[float, float, str]:
    """One `mcfleet <command> --json` on the hosts: wall s, client CPU s, and what it found (the same every run)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mcfleet", "-C", str(fleet), command, "--json", "--on", ",".join(names)],
        capture_output=True, text=True, check=False, env=_env(python_dir), timeout=300,
    )  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{command} failed ({python_dir}, {fleet}): {done.stderr.strip()[-500:]}")
    answer = json.loads(done.stdout)
    if command == "plan":
        found = sorted(f"{a['host']} {a['phase']} {a['kind']} {a['subject']}" for a in answer["actions"])
    else:  # status: every host reached, its agent serving, its services up
        found = sorted(f"{h['host']} {h['reachable']} {h['agent_health']} {h['services_up']}/{h['services_total']}"
                       for h in answer["hosts"])  # fmt: skip
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), f"{command}: {found}"


def _med_min(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f})"


def _revision(python_dir: Path) -> str:
    done = subprocess.run(["git", "-C", str(python_dir), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    said = done.stdout.strip()
    return (said[:60] + "…" if len(said) > 60 else said) or str(python_dir)


Results = dict[str, dict[str, dict[int, dict[str, list[float]]]]]  # command -> version -> RTT -> wall/cpu


def _table(
    command: str, by_version: dict[str, dict[int, dict[str, list[float]]]], versions: dict[str, Path]
) -> list[str]:
    rtts = sorted(next(iter(by_version.values())))
    lines = [
        f"## `mcfleet {command}`",
        "",
        "| version | "
        + " | ".join(f"RTT {r} ms: wall s" for r in rtts)
        + " | client CPU s (RTT 0) | wall per ms of RTT |",
        "|---|" + "---:|" * (len(rtts) + 2),
    ]
    for label, python_dir in versions.items():
        by = by_version[label]
        slope = "-"
        if len(rtts) > 1:
            low, high = (statistics.median(by[r]["wall"]) for r in (rtts[0], rtts[-1]))
            slope = f"{(high - low) * 1000 / (rtts[-1] - rtts[0]):.1f} ms"
        cells = [_med_min(by[r]["wall"]) for r in rtts]
        lines.append(f"| {label}: {_revision(python_dir)} | " + " | ".join(cells) +
                     f" | {_med_min(by[rtts[0]]['cpu'])} | {slope} |")  # fmt: skip
    first, *others = list(versions)
    for other in others:  # each against the first
        lines.append("")
        for r in rtts:
            a, b = statistics.median(by_version[first][r]["wall"]), statistics.median(by_version[other][r]["wall"])
            lines.append(f"- RTT {r} ms: {other} {b:.3f} s vs {first} {a:.3f} s: {(a - b) * 1000:+.0f} ms saved "
                         f"({(a - b) / a * 100:+.0f}%)")  # fmt: skip
    return [*lines, ""]


def render(results: Results, versions: dict[str, Path], args: Any, names: list[str], took: float) -> str:
    commands = list(results)
    lines = [
        "# " + " and ".join(f"`mcfleet {c}`" for c in commands) + " over links with latency",
        "",
        "Generated by `bench/rtt/run.py` (do not edit by hand; re-run it).",
        "",
        f"- command: `bench/rtt/run.py {' '.join(sys.argv[1:])}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; 2 cores shared with the lab's nodes; "
        f"load average at the end: {'/'.join(f'{x:.1f}' for x in os.getloadavg())}; the bench took {took / 60:.1f} min",
        f"- hosts: {', '.join(names)} (the demo lab's full nodes: systemd, the agent, services, Caddy and "
        "HAProxy; one reached as root, one as a sudo user); a plan reads each host's facts, its agent and its "
        "two proxies; a status probes each host and asks its agent",
        "- latency: a forwarder in each node's namespace holds every chunk RTT/2 each way (bench/rtt/delay.py)",
        f"- {args.runs} runs per command, version and RTT, interleaved; median (min); every run of a command "
        "found the same (the same actions planned; every host reached, its agent serving, the same services up)",
        "",
    ]
    for command in commands:
        lines += _table(command, results[command], versions)
    lines.append("Wall per ms of RTT is how many round trips a command waits for one after the other "
                 "(from the lowest to the highest RTT).")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=Path, default=Path("/var/tmp/mcfleet-lab"))
    parser.add_argument("--src", type=Path, action="append", default=[],
                        help="a python/ folder of other mcfleet sources to compare with (repeatable)")  # fmt: skip
    parser.add_argument("--rtt", default="0,20,60", help="round-trip times in ms, comma-separated")
    parser.add_argument("--commands", default="plan,status", help="what to time, comma-separated: plan, status")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the results (Markdown) here")
    args = parser.parse_args()
    rtts = sorted({int(r) for r in args.rtt.split(",")})
    commands = [c for c in args.commands.split(",") if c]
    if not commands or set(commands) - {"plan", "status"}:
        parser.error(f"--commands: plan and/or status, not {args.commands!r}")
    versions = {f"before ({i + 1})" if len(args.src) > 1 else "before": p.resolve() for i, p in enumerate(args.src)}
    versions["this checkout"] = ROOT / "python"
    for python_dir in versions.values():  # byte-compiled first: no version pays for compiling
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(python_dir)], check=True, stdout=subprocess.DEVNULL
        )
    nodes = full_nodes(args.fleet.resolve())
    names = [n["name"] for n in nodes]
    began = time.monotonic()
    results: Results = {c: {v: {r: {"wall": [], "cpu": []} for r in rtts} for v in versions} for c in commands}
    seen: dict[str, set[str]] = {c: set() for c in commands}
    with tempfile.TemporaryDirectory(prefix="mcfleet-rtt-") as tmp, forwarders(nodes, rtts):
        fleets = {r: fleet_copy(args.fleet.resolve(), names, r, Path(tmp)) for r in rtts}
        for command in commands:
            for python_dir in versions.values():  # warm-up: caches, the nodes' page cache
                run_once(command, python_dir, fleets[rtts[0]], names)
        for run in range(args.runs):
            for command in commands:
                for r in rtts:
                    for label, python_dir in versions.items():
                        wall, cpu, found = run_once(command, python_dir, fleets[r], names)
                        results[command][label][r]["wall"].append(wall)
                        results[command][label][r]["cpu"].append(cpu)
                        seen[command].add(found)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    for command, found in seen.items():
        if len(found) != 1:
            sys.exit(f"the versions or RTTs of {command} found different things: {sorted(found)}")
    text = render(results, versions, args, names, time.monotonic() - began)
    if args.out:
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(text)
        tmp_out.replace(args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
