"""Benchmark: `mcfleet plan` vs pyinfra vs Ansible vs the floor, on N lab nodes, like for like.

Same facts, same node cost, by construction: every tool runs the command line `mcfleet plan`
sends each host (its facts script in a `setsid -w` process group; bench/plan/facts_scripts.py
prints them) on the same real nodes (a network namespace and its own sshd each), once per host
over one SSH connection:
- the floor: parallel bare asyncssh (floor.py) with mcfleet's SSH algorithms (and its garbage
  collector paused, as mcfleet pauses it);
- mcfleet: `mcfleet plan --json --skip agent` (the lab's fast nodes run no systemd, where the
  agent kind could only refuse; every fact is still gathered, the agent's unit included);
- pyinfra (`--dry`): one `Command` fact per host whose command is that line (pyinfra adds `sh -c`);
- Ansible: one `ansible.builtin.raw` task per host running that line (no Python on the node, no
  pty; not `--check`, which skips `raw`: the task only reads), ControlMaster as usual.
The node CPU column (the nodes' sshd: its own and its reaped sessions' CPU) shows it: it is
reported per tool relative to the floor's.  mcfleet's ratio to the floor is its own overhead.

Every run must exit 0 and bring back the facts of all N hosts (checks.py reads each tool's
output: the floor's per-host lengths, mcfleet's facts digests, the files the pyinfra deploy
writes per host, Ansible's PLAY RECAP), or the bench stops.  mcfleet's sources are
byte-compiled first, as an installed package is.

Reported per tool and N, over `--runs` interleaved repetitions (after one warm-up; the order
rotates, each tool in turn runs first):
median and min of wall time, client CPU (user+sys of the whole process tree, orphans
included: this process is a subreaper), node CPU and the client's peak RSS (its own: tools start from
the small bench/plan/launch.py, see there).  The lab's nodes
share the client's cores, so node-side work shows up in wall time here; client CPU is the
figure that carries over to a real fleet.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from checks import Incomplete, check_ansible, check_done, check_floor, check_mcfleet
from launch import LaunchFailed, launched

from mcfleet.lab.lab import Lab, lab_down
from mcfleet.transport.ssh import ENCRYPTION_ALGS, KEX_ALGS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BENCH_VENV = Path(os.environ.get("MCFLEET_BENCH_VENV", "/var/tmp/mcfleet-bench-venv"))
TOOLS = ("floor", "mcfleet", "pyinfra", "ansible")
TICK = os.sysconf("SC_CLK_TCK")
MCFLEET_PLAN_ARGS = ("--skip", "agent")  # fast lab nodes have no systemd: the agent could only be refused
FIELDS = ("wall", "cpu", "node_cpu", "rss_mb")


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float  # client: user+sys of the tool's whole process tree
    node_cpu: float  # the nodes' sshd and everything it ran for the tool
    rss_mb: float  # the tool's peak RSS (largest process of its tree)


class RunFailed(Exception):
    """A tool did not exit 0, or did not bring back every host's facts: its figures would be a failure's."""


def become_subreaper() -> None:
    """Orphans (e.g. ssh ControlPersist masters) re-parent to us, so their CPU is counted when reaped."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def children() -> set[int]:
    """Our child processes (the lab's daemons are among them: they are started by this process)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def reap_orphans(keep: set[int], limit_s: float = 3.0) -> tuple[float, int]:
    """Reap the tool's orphans (children not in `keep`); return their CPU seconds and peak RSS (KiB).

    Only those: waiting for any child would wait for the lab's daemons, which are ours too.
    """
    cpu, rss = 0.0, 0
    deadline = time.monotonic() + limit_s
    while (left := children() - keep) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                done, _status, ru = os.wait4(pid, os.WNOHANG)
                if done:
                    cpu += ru.ru_utime + ru.ru_stime
                    rss = max(rss, ru.ru_maxrss)
        time.sleep(0.01)
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


def measure(argv: list[str], sshd_pids: list[int], out: Path, *, env: dict[str, str] | None = None,
            cwd: Path | None = None, after: list[list[str]] | None = None) -> Sample:  # fmt: skip
    """Run argv once (stdout to `out`); its wall, its process tree's CPU and RSS, the nodes' CPU."""
    keep = children()  # the lab's daemons
    node_before = sshd_cpu(sshd_pids)
    with out.open("wb") as stdout, tempfile.TemporaryFile() as stderr:
        try:
            wall, cpu, rss_kib, returncode = launched(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
        except LaunchFailed as e:
            raise RunFailed(str(e)) from e
        stderr.seek(0)
        err = stderr.read()
    for cmd in after or []:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    orphan_cpu, orphan_rss = reap_orphans(keep)
    deadline = time.monotonic() + 3.0
    while sessions_open(sshd_pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    if returncode != 0:
        tail = (err or out.read_bytes()).decode(errors="replace")[-800:]
        raise RunFailed(f"{' '.join(argv[:3])} ... exited {returncode}: {tail}")
    return Sample(wall, cpu + orphan_cpu, sshd_cpu(sshd_pids) - node_before, max(rss_kib, orphan_rss) / 1024)


def ensure_pyinfra() -> Path:
    exe = BENCH_VENV / "bin" / "pyinfra"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "pyinfra"], check=True)
    return exe


def first_line(argv: list[str], *, stderr: bool = False) -> str:
    """The first line a program prints (a version), or "?"."""
    with contextlib.suppress(OSError):
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        out = (res.stderr if stderr else res.stdout).strip()
        return out.splitlines()[0] if out else "?"
    return "?"


@contextlib.contextmanager
def bench_lab(prefix: str) -> Iterator[tuple[Lab, Path]]:
    """A lab in a new temporary folder (the lab's own and the tools' files); brought down and
    removed however the bench ends."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    lab = Lab(work / "lab")
    try:
        yield lab, work
    finally:
        asyncio.run(lab_down(lab))
        with contextlib.suppress(OSError):
            shutil.rmtree(work)


def tool_versions(pyinfra: Path) -> dict[str, str]:
    import asyncssh  # only for its version, after the runs

    return {
        "mcfleet": first_line(["git", "-C", str(REPO), "log", "-1", "--format=%h (%cs)"]),
        "python": sys.version.split()[0],
        "asyncssh": asyncssh.__version__,
        "pyinfra": first_line([str(pyinfra), "--version"]).removeprefix("pyinfra: "),
        "ansible": first_line(["ansible-playbook", "--version"]),
        "openssh": first_line(["ssh", "-V"], stderr=True),
    }


def facts_scripts(fleet_dir: Path) -> dict[str, str]:
    """mcfleet's own facts script for every host of the fleet, as `mcfleet plan` would send it."""
    argv = [sys.executable, str(HERE / "facts_scripts.py"), str(fleet_dir)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


class Setup:
    """Files each tool needs for the first n nodes."""

    def __init__(self, lab: Lab, names: list[str], work: Path, pyinfra: Path) -> None:
        self.lab, self.names, self.work, self.pyinfra = lab, names, work, pyinfra
        nodes = [lab.node(n) for n in names]
        self.addresses = {n.address for n in nodes}
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
        # pyinfra: hosts named by address; the deploy reads its host's script from scripts.json
        data = {"ssh_user": "root", "ssh_key": key, "ssh_known_hosts_file": str(self.known_hosts),
                "ssh_strict_host_key_checking": "yes"}  # fmt: skip
        inventory = [(n.address, {**data, "ssh_port": n.ssh_port}) for n in nodes]
        (work / "inventory.py").write_text(f"hosts = {inventory!r}\n")
        (work / "scripts.json").write_text(json.dumps({n.address: scripts[n.name] for n in nodes}))
        shutil.copy(HERE / "pyinfra_facts.py", work / "pyinfra_facts.py")
        # Ansible: a YAML inventory; a JSON string is a valid YAML double-quoted scalar, !unsafe: never templated
        lines = ["all:", "  hosts:"]
        for n in nodes:
            lines += [f"    {n.name}:", f"      ansible_host: {n.address}", f"      ansible_port: {n.ssh_port}",
                      "      ansible_user: root", f"      ansible_ssh_private_key_file: {key}",
                      f"      facts_script: !unsafe {json.dumps(scripts[n.name])}"]  # fmt: skip
        (work / "inventory.yml").write_text("\n".join(lines) + "\n")
        self.control_dir = work / "cp"
        self.control_dir.mkdir(exist_ok=True)

    def run(self, tool: str) -> Sample:
        n = len(self.names)
        pids, out = self.sshd_pids, self.work / f"{tool}.out"
        check: Callable[[], None]
        if tool == "floor":
            sample = measure([sys.executable, str(HERE / "floor.py"), str(self.work / "hosts.json")], pids, out)
            check = lambda: check_floor(out.read_text(), self.addresses)  # noqa: E731
        elif tool == "mcfleet":
            mcfleet = str(REPO / ".venv" / "bin" / "mcfleet")
            sample = measure([mcfleet, "plan", "-C", str(self.fleet), "--json", *MCFLEET_PLAN_ARGS], pids, out)
            check = lambda: check_mcfleet(out.read_text(), set(self.names))  # noqa: E731
        elif tool == "pyinfra":
            done = self.work / "done"
            shutil.rmtree(done, ignore_errors=True)
            done.mkdir()
            argv = [str(self.pyinfra), "-y", "--dry", "--parallel", str(n), "inventory.py", "pyinfra_facts.py"]
            sample = measure(argv, pids, out, cwd=self.work)
            check = lambda: check_done({p.name: p.read_text() for p in done.iterdir()}, self.addresses)  # noqa: E731
        else:
            sample = measure(self._ansible_argv(), pids, out, env=self._ansible_env(), after=self._close_masters())
            check = lambda: check_ansible(out.read_text(), set(self.names))  # noqa: E731
        try:
            check()
        except Incomplete as e:
            raise RunFailed(f"{e} at N={n}, though it exited 0; its output: {out.read_text()[-800:]}") from e
        except (ValueError, TypeError, OSError) as e:  # unreadable output is an incomplete run too
            raise RunFailed(f"{tool} at N={n}: unreadable output ({e}): {out.read_text()[-800:]}") from e
        return sample

    def _ansible_argv(self) -> list[str]:
        return ["ansible-playbook", "-i", str(self.work / "inventory.yml"), "-f", str(len(self.names)),
                str(HERE / "ansible_facts.yml")]  # fmt: skip

    def _ansible_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_SSH_USETTY": "False",  # raw would ask for a pty (-tt); the others run the script without one
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=30s -o UserKnownHostsFile={self.known_hosts}"
            " -o StrictHostKeyChecking=yes -o KexAlgorithms=curve25519-sha256",
        }

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


def interleaved(setup: Setup, tools: list[str], runs: int) -> dict[str, list[Sample]]:
    """One warm-up run of each tool (page cache, first-run imports; not counted), then `runs` rounds."""
    samples: dict[str, list[Sample]] = {t: [] for t in tools}
    for t in tools:
        setup.run(t)
    for i in range(runs):
        for t in tools[i % len(tools) :] + tools[: i % len(tools)]:  # each tool in turn runs first
            samples[t].append(setup.run(t))
    return samples


def summarize(samples: list[Sample]) -> dict[str, float]:
    out: dict[str, float] = {}
    for field in FIELDS:
        values = [getattr(s, field) for s in samples]
        out[field] = statistics.median(values)
        out[f"{field}_min"] = min(values)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="5,10,20,50,100", help="node counts, comma-separated")
    ap.add_argument("--runs", type=int, default=7, help="interleaved runs per tool and N (median and min reported)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--ansible-max", type=int, default=0, help="run Ansible only up to this N (0: every N)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--results", type=Path, help="write the markdown report here (e.g. bench/plan/RESULTS.md)")
    args = ap.parse_args()
    counts = [int(x) for x in args.n.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    if unknown := set(tools) - set(TOOLS):
        sys.exit(f"unknown tools: {', '.join(sorted(unknown))} (known: {', '.join(TOOLS)})")
    if args.runs < 1 or min(counts) < 1:
        sys.exit("--runs and every --n must be at least 1")
    if os.geteuid() != 0:
        sys.exit("the bench needs root (lab nodes are network namespaces)")
    pyinfra = ensure_pyinfra() if "pyinfra" in tools else Path("pyinfra")
    if "ansible" in tools and not shutil.which("ansible-playbook"):
        sys.exit("ansible-playbook is missing: apt-get install -y ansible-core")
    become_subreaper()
    compile_sources = [sys.executable, "-m", "compileall", "-q", str(REPO / "python")]
    subprocess.run(compile_sources, check=True, stdout=subprocess.DEVNULL)
    started, load_before = time.monotonic(), os.getloadavg()
    results: dict[int, Stats] = {}
    with bench_lab("mcfleet-bench-") as (lab, work):
        try:
            names = asyncio.run(bring_up(lab, max(counts)))
            for count in counts:
                setup = Setup(lab, names[:count], work / f"n{count}", pyinfra)
                here = [t for t in tools if t != "ansible" or not args.ansible_max or count <= args.ansible_max]
                results[count] = {t: summarize(s) for t, s in interleaved(setup, here, args.runs).items()}
                print(table(count, results[count]), f"\n\n(N = {count} done after {time.monotonic() - started:.0f} s)")
                sys.stdout.flush()
        except RunFailed as e:
            sys.exit(f"bench stopped: {e}")
    took = time.monotonic() - started
    load_after = os.getloadavg()
    print(f"\nthe bench took {took / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.results:
        meta = {
            "command": " ".join(["bench/plan/run.py", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": f"{fmt_load(load_before)} at the start, {fmt_load(load_after)} at the end (1, 5, 15 min)",
            "took": f"{took / 60:.1f} min (lab of {max(counts)} nodes; per tool and N one warm-up, then "
            f"{args.runs} interleaved rounds)",
            "cores": str(os.cpu_count()),
            **tool_versions(pyinfra),
        }
        args.results.write_text(report(results, meta))
    return 0


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def _mm(r: dict[str, float], field: str, digits: int = 2) -> str:
    return f"{r[field]:.{digits}f} ({r[field + '_min']:.{digits}f})"


def _ratio(a: dict[str, float], b: dict[str, float], field: str) -> str:
    """a / b, median over median (min over min)."""
    return f"{a[field] / b[field]:.2f}× ({a[field + '_min'] / b[field + '_min']:.2f}×)"


def table(count: int, res: Stats) -> str:
    floor, mc = res.get("floor"), res.get("mcfleet")
    lines = [
        f"\n### N = {count}\n",
        "| tool | client CPU s | wall s | node CPU s | node CPU × floor | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tool, r in res.items():
        nx = f"{r['node_cpu'] / floor['node_cpu']:.2f}" if floor and floor["node_cpu"] else "-"
        cells = [_mm(r, "cpu"), _mm(r, "wall"), _mm(r, "node_cpu"), nx, _mm(r, "rss_mb", 0)]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    node = [r["node_cpu"] for r in res.values()]
    if len(node) > 1 and min(node) > 0:
        lines.append(f"\nnode CPU (median) across tools: {min(node):.2f}–{max(node):.2f} s, "
                     f"spread {max(node) / min(node) - 1:.0%} of the lowest")  # fmt: skip
    if mc and floor:
        lines.append(f"\n- mcfleet / floor: client CPU {_ratio(mc, floor, 'cpu')} (goal ≤ 1.2×), "
                     f"wall {_ratio(mc, floor, 'wall')} (goal ≤ 1.1×)")  # fmt: skip
    for other in ("pyinfra", "ansible"):
        if mc and other in res:
            o = res[other]
            lines.append(f"- {other} / mcfleet: client CPU {_ratio(o, mc, 'cpu')}, wall {_ratio(o, mc, 'wall')}")
    return "\n".join(lines)


def summary(results: dict[int, Stats]) -> list[str]:
    tools = [t for t in TOOLS if any(t in r for r in results.values())]
    lines = ["| N | " + " | ".join(tools) + " | mcfleet / floor |", "|---:|" + "---:|" * (len(tools) + 1)]
    for n, res in sorted(results.items()):
        cells = [_mm(res[t], "cpu") if t in res else "not run" for t in tools]
        ratio = f"{res['mcfleet']['cpu'] / res['floor']['cpu']:.2f}×" if "mcfleet" in res and "floor" in res else "-"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {ratio} |")
    return lines


def node_spread(results: dict[int, Stats]) -> str:
    """How far each tool's node CPU (median) is from the floor's, over every N."""
    rel = {t: [r[t]["node_cpu"] / r["floor"]["node_cpu"] for r in results.values() if t in r and r["floor"]["node_cpu"]]
           for t in TOOLS if t != "floor"}  # fmt: skip
    parts = [f"{t} {min(v):.2f}–{max(v):.2f}×" for t, v in rel.items() if v]
    if not parts or not all("floor" in r for r in results.values()):
        return "Node CPU relative to the floor's: not measured (the floor did not run)."
    return "Node CPU (median) relative to the floor's, over every N: " + ", ".join(parts) + "."


def report(results: dict[int, Stats], meta: dict[str, str]) -> str:
    head = [
        "# `mcfleet plan` vs pyinfra vs Ansible vs the floor",
        "",
        "Generated by `bench/plan/run.py` (do not edit by hand; re-run it).",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; {meta['cores']} cores shared with other work; load average: {meta['load']}",
        f"- the bench took {meta['took']}",
        f"- mcfleet {meta['mcfleet']}; Python {meta['python']}, asyncssh {meta['asyncssh']}; pyinfra {meta['pyinfra']};"
        f" Ansible: {meta['ansible']}; {meta['openssh']}",
        "- same facts, same node cost: every tool runs the command line `mcfleet plan` sends each host (its",
        "  facts script, in a `setsid -w` process group), once, over one SSH connection per host: the floor",
        "  (bare asyncssh with mcfleet's SSH algorithms), mcfleet, pyinfra `--dry` (a `Command` fact per host,",
        "  which pyinfra wraps in one more `sh -c`), Ansible (one `raw` task per host: no Python on the node,",
        "  `gather_facts: false`, ControlMaster, no pty); the node CPU column (the nodes' sshd and what it ran)",
        "  shows the node work per tool, also relative to the floor's;",
        f"- mcfleet runs `mcfleet plan --json {' '.join(MCFLEET_PLAN_ARGS)}`: the lab's fast nodes run no systemd,",
        "  where the agent kind could only refuse; every fact is still gathered (the agent's unit is in the script);",
        "- every run of every tool exited 0 and brought back the facts of all N hosts (checked from each",
        "  tool's output); mcfleet's sources are byte-compiled first;",
        "- median (min) over the runs; client CPU is the tool's whole process tree (ssh masters included);",
        "  it is the figure that carries over to a real fleet: the lab's nodes share the client's cores,",
        "  so node work also shows in wall time here.",
        "",
        "## Client CPU s, median (min)",
        "",
        *summary(results),
        "",
        node_spread(results),
    ]
    body = [table(n, r) for n, r in sorted(results.items())]
    return "\n".join(head + body) + "\n"


if __name__ == "__main__":
    sys.exit(main())
