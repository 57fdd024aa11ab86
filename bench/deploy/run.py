"""Deploy and recovery times on one systemd lab node: 10 services from empty, no-op re-apply, recover.

    sudo .venv/bin/python bench/deploy/run.py [--reps 3] [--drills 5] [--out bench/deploy/RESULTS.md]

One full lab node (systemd-nspawn, sshd, rootless podman as mcp), the lab registry with the
demo images, a fleet with 10 services in two stages (no providers: this is about containers).
Measured with the real `mcfleet` CLI: wall time and client CPU (user+sys of the mcfleet process,
from getrusage of the children) of
  - the first `apply` (agent push + activate + 10 containers), with its phases' wall times;
  - agent upgrades (--reps applies of a new bundle: the same agent in a zip with another comment,
    so another hash): the activate phase's wall time, from its start to the new agent healthy
    and confirmed (goal <= 1 s per node);
  - `plan` and a no-op re-`apply` (min and median of --reps runs; goal: apply <= 1.2x plan);
  - `agent recover` after every container was removed (`podman rm -af` as mcp; goal < 10 s);
  - the DR drill, --drills times in a row: `podman system reset --force` as mcp (containers,
    images, networks, podman's database and storage gone; the services' /srv/<svc> volumes
    stay), then `agent recover`; each drill checks that all services run again and read back
    the file they wrote into their volume before the first wipe (goal < 10 s each).
The machine's load is printed beside them: on a shared machine wall time carries the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from mcfleet.bundle.build import build_agent_bundle
from mcfleet.lab.fleetdir import volume_service
from mcfleet.lab.lab import Lab, lab_down
from mcfleet.lab.podman import PODMAN_AS_MCP

SERVICES = 10
AS_MCP = PODMAN_AS_MCP
MCFLEET = str(Path(sys.executable).parent / "mcfleet")


def timed(*args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([MCFLEET, *args], capture_output=True, text=True, timeout=900, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return done, wall, cpu


def phase_times(stdout: str) -> dict[str, float]:
    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    for line in stdout.splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("type") != "event":
            continue
        if event["status"] == "start":
            starts[event["phase"]] = event["ts"]
        elif event["status"] != "progress" and event["phase"] in starts:
            out[event["phase"]] = event["ts"] - starts[event["phase"]]
    return out


def variant(bundle: Path, dest: Path, tag: str) -> Path:
    """The same agent with another content hash (another zip comment), as a new release would be pushed."""
    dest.write_bytes(bundle.read_bytes())
    with zipfile.ZipFile(dest, "a") as archive:
        archive.comment = f"mcfleet bench variant {tag}".encode()
    dest.chmod(0o755)
    return dest


def ok(done: subprocess.CompletedProcess[str], what: str, codes: tuple[int, ...] = (0,)) -> None:
    if done.returncode not in codes:
        raise SystemExit(f"{what} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def stats(samples: list[tuple[float, float]]) -> str:
    walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return f"{statistics.median(walls):.2f} s ({min(walls):.2f}) | {statistics.median(cpus):.2f} s ({min(cpus):.2f})"


def on_node(lab: Lab, node: str, script: str) -> str:
    code, out, err = asyncio.run(lab.exec_in(node, ["sh", "-c", script]))
    if code != 0:
        raise SystemExit(f"{script!r} on {node} exited {code}: {err.strip()}")
    return out


def drills(lab: Lab, node: str, fleet: Path, count: int) -> list[tuple[float, float, float, str]]:
    """`count` DR drills: podman system reset, agent recover; (wall, client CPU, the agent's part, check) each."""
    names = [f"s{i:02d}" for i in range(SERVICES)]
    for name in names:  # what each service wrote into its volume before the first disaster
        on_node(lab, node, f"{AS_MCP} exec {name} sh -c 'echo precious {name} > /data/precious'")
    out = []
    for _ in range(count):
        # again until podman lists nothing: the reset races the containers' exit handlers (it fails
        # with "unlinkat …/libpod: directory not empty", or leaves a container whose netns is gone)
        listed = f'[ -z "$({AS_MCP} ps -aq 2>&1)" ] && [ -z "$({AS_MCP} images -q 2>&1)" ]'
        on_node(lab, node, f"for t in 1 2 3 4 5; do {AS_MCP} system reset --force >/dev/null 2>&1; {listed} && exit 0; "
                           "sleep 1; done; exit 1")  # fmt: skip
        left = on_node(lab, node, f"{AS_MCP} ps -aq | wc -l; {AS_MCP} images -q | wc -l").split()
        rec, wall, cpu = timed("agent", "recover", node, "-C", str(fleet), "--json")
        ok(rec, "agent recover after podman system reset")
        agent = float(json.loads(rec.stdout)["agent_seconds"])
        running = on_node(lab, node, f"{AS_MCP} ps -q | wc -l").strip()
        intact = sum(on_node(lab, node, f"{AS_MCP} exec {n} cat /data/precious") == f"precious {n}\n" for n in names)
        out.append((wall, cpu, agent, f"{left[0]} containers/{left[1]} images after the wipe; {running} running, "
                               f"{intact}/{SERVICES} volumes read back after recover"))  # fmt: skip
    return out


def bench(root: Path, reps: int, count: int) -> list[str]:
    lab = Lab(root / "lab")
    try:
        registry = asyncio.run(lab.start_peer("registry"))
        node = asyncio.run(lab.add_full_node("dep1"))
        fleet = lab.write_fleet(root / "fleet", nodes=[node.name])
        data = json.loads((fleet / "fleet.json").read_text())
        data["providers"] = {}
        (fleet / "fleet.json").write_text(json.dumps(data, indent=2))
        folder = fleet / "hosts" / node.name / "services"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(SERVICES):
            stage, image = ("foundation", "demo/db:1") if i == 0 else ("services", "demo/hello:1")
            svc = volume_service(f"s{i:02d}", stage, f"{registry['address']}/{image}")
            (folder / f"{svc['name']}.json").write_text(json.dumps(svc, indent=2))
        bundle = build_agent_bundle().path
        common = ["-C", str(fleet), "--on", node.name]
        first, wall, cpu = timed("apply", *common, "--bundle", str(bundle), "--json", "--yes")
        ok(first, "first apply")
        phases = phase_times(first.stdout)
        plans, noops = [], []
        for _ in range(reps):
            p, w, c = timed("plan", *common, "--detailed-exitcode")
            ok(p, "plan", (0,))
            plans.append((w, c))
            a, w, c = timed("apply", *common, "--bundle", str(bundle), "--yes")
            ok(a, "no-op apply")
            noops.append((w, c))
        # after the no-op re-applies (they push `bundle`): each upgrade pushes and activates a new hash
        activations = []
        for i in range(reps):
            new = variant(bundle, root / f"upgrade{i}.pex", str(i))
            up, _, _ = timed("apply", *common, "--bundle", str(new), "--json", "--yes")
            ok(up, "agent upgrade")
            activations.append(phase_times(up.stdout)["activate"])
        code, _, err = asyncio.run(lab.exec_in(node.name, ["sh", "-c", f"{AS_MCP} rm -af >/dev/null"]))
        if code != 0:
            raise SystemExit(f"podman rm -af on the node failed: {err}")
        rec, rwall, rcpu = timed("agent", "recover", node.name, "-C", str(fleet), "--json")
        ok(rec, "agent recover")
        ragent = float(json.loads(rec.stdout)["agent_seconds"])
        code, out, _ = asyncio.run(lab.exec_in(node.name, ["sh", "-c", f"{AS_MCP} ps -q | wc -l"]))
        running = out.strip()
        drilled = drills(lab, node.name, fleet, count)
    finally:
        asyncio.run(lab_down(lab))
    ratio = statistics.median(w for w, _ in noops) / statistics.median(w for w, _ in plans)
    ratio_cpu = statistics.median(c for _, c in noops) / statistics.median(c for _, c in plans)
    shown = ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
    return [
        "# Deploy and recovery on one systemd lab node",
        "",
        f"Generated by `bench/deploy/run.py --reps {reps} --drills {count}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the node shares them, "
        "so wall time carries the load; client CPU is the mcfleet process's user+sys).",
        "",
        f"{SERVICES} services (1 foundation + 9 in a second stage), demo images from the lab registry.",
        "",
        "| run | wall median (min) | client CPU median (min) |",
        "|---|---|---|",
        f"| first apply from empty (push, activate, {SERVICES} containers) | {wall:.2f} s | {cpu:.2f} s |",
        f"| plan, nothing to do | {stats(plans)} |",
        f"| no-op re-apply | {stats(noops)} |",
        f"| agent recover after `podman rm -af` ({running} containers running after; the agent's part "
        f"{ragent:.2f} s) | {rwall:.2f} s | {rcpu:.2f} s |",
        f"| DR drill: agent recover after `podman system reset` ({len(drilled)} drills) | "
        f"{stats([(w, c) for w, c, _, _ in drilled])} |",
        "",
        "DR drill, one row per drill (`podman system reset --force` as mcp, then `mcfleet agent recover HOST`;",
        "the command's wall time includes connecting, observing and planning the host (the refusal gate);",
        "the agent's part is its Recover call: stale podman API service restarted, images pulled, 10",
        "containers created stage by stage and healthy):",
        "",
        "| drill | recover wall | the agent's part | client CPU | check |",
        "|---|---|---|---|---|",
        *(f"| {i} | {w:.2f} s | {a:.2f} s | {c:.2f} s | {check} |" for i, (w, c, a, check) in enumerate(drilled, 1)),
        "",
        f"First apply phases (wall): {shown}.",
        "",
        f"activation s per node: first apply {phases.get('activate', 0):.2f} s; agent upgrade "
        f"{statistics.median(activations):.2f} s ({min(activations):.2f}) median (min) of {len(activations)} "
        f"(goal <= 1 s: {'met' if statistics.median(activations) <= 1 else 'NOT met'} on the median).",
        "",
        f"Goals: no-op re-apply <= 1.2x plan: {ratio:.2f}x wall, {ratio_cpu:.2f}x client CPU "
        f"({'met' if ratio <= 1.2 else 'NOT met'} on wall); recover {SERVICES} services < 10 s: {rwall:.2f} s "
        f"({'met' if rwall < 10 else 'NOT met'}); DR drill < 10 s each: slowest "
        f"{max(w for w, _, _, _ in drilled):.2f} s ({'met' if max(w for w, _, _, _ in drilled) < 10 else 'NOT met'}), "
        f"the agent's part slowest {max(a for _, _, a, _ in drilled):.2f} s.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--drills", type=int, default=5, help="DR drills (podman system reset + recover)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "RESULTS.md")
    args = parser.parse_args()
    # checked before the lab comes up: the report needs at least one of each (medians, slowest drill)
    if args.reps < 1 or args.drills < 1:
        parser.error("--reps and --drills must be at least 1")
    with tempfile.TemporaryDirectory(prefix="mcfleet-bench-deploy-") as tmp:
        lines = bench(Path(tmp), args.reps, args.drills)
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
