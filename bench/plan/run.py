"""Benchmark: `mcfleet plan` vs pyinfra (--dry) vs Ansible (--check) vs the floor, on N lab nodes.

Like for like: every tool gathers the same facts from the same real nodes (netns + own sshd):
os-release, arch, hostname, the pinned user/group by name and id, subordinate ids,
resolvers, sha256 of a 5 MB agent binary, the agent unit, /run/current-system, the manifest
and the cert directory — each with the same cost on the node (no tool walks every account).
The node CPU column proves it: it is measured on the nodes' sshd (its own and its reaped
sessions' CPU), separately from the client's.  The floor is parallel bare asyncssh running
mcfleet's own facts script with mcfleet's SSH algorithms, so mcfleet's ratio to it is its own
overhead only.

Every run must succeed (exit 0), or the bench stops: a failing run measures nothing.  The
lab's fast nodes run no systemd, where the agent kind can only refuse, so mcfleet plans them
with `--skip agent` (every fact is still gathered; the agent's unit is part of the script).
mcfleet's sources are byte-compiled first, as an installed package is.

Reported per tool and N, over `--runs` interleaved repetitions (after one warm-up):
median and min of wall time, client CPU (user+sys of the whole process tree, orphans
included: this process is a subreaper), node CPU, and the client's peak RSS.  The lab's
nodes share the client's cores, so node-side work shows up in wall time here; client CPU is
the figure that carries over to a real fleet.

    .venv/bin/python bench/plan/run.py --n 5,10,20,50,100 --runs 7 --results bench/plan/RESULTS.md

pyinfra lives in its own venv ($MCFLEET_BENCH_VENV, default /var/tmp/mcfleet-bench-venv,
created with `pip install pyinfra` when missing); ansible-playbook comes from apt
(`apt-get install ansible-core`).  Needs root (the lab).  Leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mcfleet.lab.lab import Lab, lab_down
from mcfleet.transport.ssh import ENCRYPTION_ALGS, KEX_ALGS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BENCH_VENV = Path(os.environ.get("MCFLEET_BENCH_VENV", "/var/tmp/mcfleet-bench-venv"))
TOOLS = ("floor", "mcfleet", "pyinfra", "ansible")
TICK = os.sysconf("SC_CLK_TCK")
MCFLEET_PLAN_ARGS = ("--skip", "agent")  # fast lab nodes have no systemd: the agent could only be refused


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float  # client: user+sys of the tool's whole process tree
    node_cpu: float  # the nodes' sshd and everything it ran for the tool
    rss_mb: float  # the tool's peak RSS (largest process of its tree)


class RunFailed(Exception):
    """A tool did not exit 0: its figures would be those of a failure."""


def become_subreaper() -> None:
    """Orphans (e.g. ssh ControlPersist masters) re-parent to us, so their CPU is counted when reaped."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap_orphans(limit_s: float = 3.0) -> tuple[float, int]:
    """Wait for re-parented orphans; return their CPU seconds and peak RSS (KiB)."""
    cpu, rss = 0.0, 0
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            pid, _status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
            continue
        cpu += ru.ru_utime + ru.ru_stime
        rss = max(rss, ru.ru_maxrss)
    return cpu, rss


def sshd_cpu(pids: list[int]) -> float:
    """CPU seconds of the nodes' sshd daemons including their reaped sessions (utime+stime+cutime+cstime)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime (fields 14-17)
    return total / TICK


def sessions_open(pids: list[int]) -> bool:
    """True while any node sshd still has a session child (its CPU is not yet in cutime)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                return True
    return False


def measure(argv: list[str], sshd_pids: list[int], *, env: dict[str, str] | None = None,
            cwd: Path | None = None, after: list[list[str]] | None = None) -> Sample:  # fmt: skip
    node_before = sshd_cpu(sshd_pids)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for cmd in after or []:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    orphan_cpu, orphan_rss = reap_orphans()
    deadline = time.monotonic() + 3.0
    while sessions_open(sshd_pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    cpu = ru.ru_utime + ru.ru_stime + orphan_cpu
    if proc.returncode != 0:
        raise RunFailed(f"{' '.join(argv[:3])} ... exited {proc.returncode}: {err.decode()[-800:]}")
    return Sample(wall, cpu, sshd_cpu(sshd_pids) - node_before, max(ru.ru_maxrss, orphan_rss) / 1024)


def ensure_pyinfra() -> Path:
    exe = BENCH_VENV / "bin" / "pyinfra"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "pyinfra"], check=True)
    return exe


def tool_versions(pyinfra: Path) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        with contextlib.suppress(OSError):
            out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
            return out.strip().splitlines()[0] if out.strip() else "?"
        return "?"

    return {
        "pyinfra": first_line([str(pyinfra), "--version"]),
        "ansible": first_line(["ansible-playbook", "--version"]),
    }


def facts_scripts(fleet_dir: Path) -> dict[str, str]:
    """mcfleet's own facts script for every host of the fleet, as `mcfleet plan` would send it."""
    argv = [sys.executable, str(HERE / "facts_scripts.py"), str(fleet_dir)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


class Setup:
    """Files each tool needs for the first n nodes."""

    def __init__(self, lab: Lab, names: list[str], work: Path) -> None:
        self.lab, self.names, self.work = lab, names, work
        nodes = [lab.node(n) for n in names]
        self.sshd_pids = [n.sshd_pid for n in nodes if n.sshd_pid is not None]
        work.mkdir(parents=True, exist_ok=True)
        self.fleet = lab.write_fleet(work / "fleet", nodes=names)
        scripts = facts_scripts(self.fleet)
        key = str(lab.client_key)
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text("".join(f"{n.address} {n.host_key}\n" for n in nodes))
        algs = {"kex_algs": list(KEX_ALGS), "encryption_algs": list(ENCRYPTION_ALGS)}  # mcfleet's own
        hosts = [{"address": n.address, "port": n.ssh_port, "user": "root", "host_key": n.host_key, "key": key,
                  "script": scripts[n.name], **algs} for n in nodes]  # fmt: skip
        (work / "hosts.json").write_text(json.dumps(hosts))
        data = {"ssh_user": "root", "ssh_key": key, "ssh_known_hosts_file": str(self.known_hosts),
                "ssh_strict_host_key_checking": "yes"}  # fmt: skip
        (work / "inventory.py").write_text(f"hosts = {[(n.address, data) for n in nodes]!r}\n")
        (work / "inventory.ini").write_text(
            "".join(
                f"{n.name} ansible_host={n.address} ansible_user=root ansible_ssh_private_key_file={key} "
                "ansible_python_interpreter=/usr/bin/python3\n"
                for n in nodes
            )
        )
        self.control_dir = work / "cp"
        self.control_dir.mkdir(exist_ok=True)

    def run(self, tool: str, pyinfra: Path) -> Sample:
        n = str(len(self.names))
        pids = self.sshd_pids
        if tool == "floor":
            return measure([sys.executable, str(HERE / "floor.py"), str(self.work / "hosts.json")], pids)
        if tool == "mcfleet":
            mcfleet = str(REPO / ".venv" / "bin" / "mcfleet")
            argv = [mcfleet, "plan", "-C", str(self.fleet), "--json", *MCFLEET_PLAN_ARGS]
            return measure(argv, pids)
        if tool == "pyinfra":
            shutil.copy(HERE / "pyinfra_facts.py", self.work / "pyinfra_facts.py")
            return measure([str(pyinfra), "-y", "--dry", "--parallel", n, "inventory.py", "pyinfra_facts.py"],
                           pids, cwd=self.work)  # fmt: skip
        env = {
            **os.environ,
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=30s -o UserKnownHostsFile={self.known_hosts}"
            " -o StrictHostKeyChecking=yes -o KexAlgorithms=curve25519-sha256",
        }
        argv = ["ansible-playbook", "-i", str(self.work / "inventory.ini"), "--check", "-f", n,
                str(HERE / "ansible_facts.yml")]  # fmt: skip
        return measure(argv, pids, env=env, after=self._close_masters())

    def _close_masters(self) -> list[list[str]]:
        # evaluated lazily: the sockets exist only after the run
        return [
            ["sh", "-c", f'for s in {self.control_dir}/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit x; done']
        ]


async def bring_up(lab: Lab, count: int) -> list[str]:
    names = [f"bench{i}" for i in range(1, count + 1)]
    await asyncio.gather(*(lab.add_fast_node(n, with_podman=False) for n in names))
    agent = "mkdir -p /srv/mcp && head -c 5000000 /dev/urandom > /srv/mcp/mcp-agent"
    await asyncio.gather(*(lab.exec_in(n, ["sh", "-c", agent]) for n in names))
    return names


Stats = dict[str, dict[str, float]]


def summarize(samples: list[Sample]) -> dict[str, float]:
    out: dict[str, float] = {}
    for field in ("wall", "cpu", "node_cpu", "rss_mb"):
        values = [getattr(s, field) for s in samples]
        out[field] = statistics.median(values)
        out[f"{field}_min"] = min(values)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="5,10,20,50,100", help="node counts, comma-separated")
    ap.add_argument("--runs", type=int, default=7, help="interleaved runs per tool and N (median and min reported)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--ansible-max", type=int, default=20,
                    help="run Ansible only up to this N (it takes ~1.5 s of wall per host and run here)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--results", type=Path, help="write the markdown report here (e.g. bench/plan/RESULTS.md)")
    args = ap.parse_args()
    counts = [int(x) for x in args.n.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    if os.geteuid() != 0:
        sys.exit("the bench needs root (lab nodes are network namespaces)")
    pyinfra = ensure_pyinfra() if "pyinfra" in tools else Path("pyinfra")
    if "ansible" in tools and not shutil.which("ansible-playbook"):
        sys.exit("ansible-playbook is missing: apt-get install -y ansible-core")
    become_subreaper()
    compile_sources = [sys.executable, "-m", "compileall", "-q", str(REPO / "python")]
    subprocess.run(compile_sources, check=True, stdout=subprocess.DEVNULL)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="mcfleet-bench-"))
    lab = Lab(work / "lab")
    results: dict[int, Stats] = {}
    try:
        names = asyncio.run(bring_up(lab, max(counts)))
        for count in counts:
            setup = Setup(lab, names[:count], work / f"n{count}")
            here = [t for t in tools if t != "ansible" or count <= args.ansible_max]
            samples: dict[str, list[Sample]] = {t: [] for t in here}
            for t in here:  # warm-up (page cache, first-run imports), not counted
                setup.run(t, pyinfra)
            for _ in range(args.runs):
                for t in here:
                    samples[t].append(setup.run(t, pyinfra))
            results[count] = {t: summarize(s) for t, s in samples.items()}
            print(table(count, results[count]))
            sys.stdout.flush()
    finally:
        asyncio.run(lab_down(lab))
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.results:
        meta = {
            "command": " ".join(["bench/plan/run.py", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
            "ansible_max": str(args.ansible_max),
            "cores": str(os.cpu_count()),
            **tool_versions(pyinfra),
        }
        args.results.write_text(report(results, meta))
    return 0


def table(count: int, res: Stats) -> str:
    base = res.get("mcfleet")
    floor = res.get("floor")
    lines = [
        f"\n### N = {count}\n",
        "| tool | wall s median (min) | client CPU s median (min) | node CPU s | peak RSS MB | wall × mcfleet | "
        "client CPU × mcfleet |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, r in res.items():
        wx = f"{r['wall'] / base['wall']:.2f}" if base else "-"
        cx = f"{r['cpu'] / base['cpu']:.2f}" if base else "-"
        lines.append(
            f"| {tool} | {r['wall']:.2f} ({r['wall_min']:.2f}) | {r['cpu']:.2f} ({r['cpu_min']:.2f}) | "
            f"{r['node_cpu']:.2f} | {r['rss_mb']:.0f} | {wx} | {cx} |"
        )
    if base and floor:
        lines.append(
            f"\nmcfleet / floor: wall {base['wall'] / floor['wall']:.2f}× (goal ≤ 1.1×), "
            f"client CPU {base['cpu'] / floor['cpu']:.2f}× (goal ≤ 1.2×; min over min "
            f"{base['cpu_min'] / floor['cpu_min']:.2f}×)"
        )
    return "\n".join(lines)


def report(results: dict[int, Stats], meta: dict[str, str]) -> str:
    head = [
        "# `mcfleet plan` vs pyinfra vs Ansible vs the floor",
        "",
        "Generated by `bench/plan/run.py` (do not edit by hand; re-run it).",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; {meta['cores']} cores shared with other work; load average: {meta['load']}",
        f"- pyinfra: {meta['pyinfra']}; Ansible: {meta['ansible']} (run up to N = {meta['ansible_max']})",
        f"- mcfleet runs `mcfleet plan --json {' '.join(MCFLEET_PLAN_ARGS)}`: the lab's fast nodes are network",
        "  namespaces without systemd, where the agent kind could only refuse; every fact is still gathered",
        "  (the same script as on a real node) and every other kind diffed; each run of each tool exited 0;",
        "- the floor uses mcfleet's SSH algorithms (key exchange, cipher order) and asyncssh's import without",
        "  its library-search processes, as mcfleet does; mcfleet's sources are byte-compiled first;",
        "- every tool gathers the same facts at the same node cost (see the node CPU column); the floor is",
        "  bare asyncssh running mcfleet's own facts script; client CPU is the figure that carries over to",
        "  a real fleet (the lab's nodes share the client's cores, so node work also shows in wall time).",
    ]
    body = [table(n, r) for n, r in sorted(results.items())]
    return "\n".join(head + body) + "\n"


if __name__ == "__main__":
    sys.exit(main())
