"""Benchmark: `mcfleet plan` vs pyinfra (--dry) vs Ansible (--check) vs the floor, on N lab nodes.

Every tool gathers the same facts from the same real nodes (netns + sshd, LAB.md 1b/1c):
os-release, arch, hostname, the pinned user/group and whoever holds UID 850, resolvers,
sha256 of a 5 MB agent binary, the agent unit, /run/current-system, the manifest and the
cert directory.  `plan-only` is mcfleet's plan command without the start-up imports of
every other command (cli/main.py imports them all).  The floor is parallel bare asyncssh
connect + one command.  Wall time and the client's CPU (user+sys of the whole process
tree, orphans included: this process is a subreaper) are the median over interleaved runs; ratios are against mcfleet.

    .venv/bin/python bench/plan/run.py --n 5,10,20 --runs 3
    pyinfra lives in its own venv ($MCFLEET_BENCH_VENV, default /var/tmp/mcfleet-bench-venv,
    created with `pip install pyinfra` when missing); ansible-playbook comes from apt.
Needs root (the lab).  Leaves nothing running: the lab is torn down at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcfleet.lab.lab import Lab, lab_down

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BENCH_VENV = Path(os.environ.get("MCFLEET_BENCH_VENV", "/var/tmp/mcfleet-bench-venv"))
TOOLS = ("floor", "mcfleet", "plan-only", "pyinfra", "ansible")


def become_subreaper() -> None:
    """Orphans (e.g. ssh ControlPersist masters) re-parent to us, so their CPU is counted when reaped."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap(limit_s: float = 3.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def measure(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            after: list[list[str]] | None = None) -> tuple[float, float, int]:  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
    for cmd in after or []:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    reap()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (used.ru_utime - before.ru_utime) + (used.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 2):
        sys.stderr.write(f"  {argv[0]} exited {proc.returncode}: {proc.stderr.decode()[-800:]}\n")
    return wall, cpu, proc.returncode


def ensure_pyinfra() -> Path:
    exe = BENCH_VENV / "bin" / "pyinfra"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "pyinfra"], check=True)
    return exe


class Setup:
    """Files each tool needs for the first n nodes."""

    def __init__(self, lab: Lab, names: list[str], work: Path) -> None:
        self.lab, self.names, self.work = lab, names, work
        nodes = [lab.node(n) for n in names]
        work.mkdir(parents=True, exist_ok=True)
        self.fleet = lab.write_fleet(work / "fleet", nodes=names)
        key = str(lab.client_key)
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text("".join(f"{n.address} {n.host_key}\n" for n in nodes))
        hosts = [{"address": n.address, "port": n.ssh_port, "user": "root", "host_key": n.host_key, "key": key}
                 for n in nodes]  # fmt: skip
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

    def run(self, tool: str, pyinfra: Path) -> tuple[float, float, int]:
        n = str(len(self.names))
        if tool == "floor":
            return measure([sys.executable, str(HERE / "floor.py"), str(self.work / "hosts.json")])
        if tool == "mcfleet":
            return measure([str(REPO / ".venv" / "bin" / "mcfleet"), "plan", str(self.fleet), "--json"])
        if tool == "plan-only":  # the same plan without the start-up imports of the other commands
            return measure([sys.executable, str(HERE / "plan_only.py"), str(self.fleet), "--json"])
        if tool == "pyinfra":
            shutil.copy(HERE / "pyinfra_facts.py", self.work / "pyinfra_facts.py")
            return measure([str(pyinfra), "-y", "--dry", "--parallel", n, "inventory.py", "pyinfra_facts.py"],
                           cwd=self.work)  # fmt: skip
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
        return measure(argv, env=env, after=self._close_masters())

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="5,10,20", help="node counts, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per tool and N (median reported)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    counts = [int(x) for x in args.n.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    if os.geteuid() != 0:
        sys.exit("the bench needs root (lab nodes are network namespaces)")
    pyinfra = ensure_pyinfra() if "pyinfra" in tools else Path("pyinfra")
    if "ansible" in tools and not shutil.which("ansible-playbook"):
        sys.exit("ansible-playbook is missing: apt-get install -y ansible")
    become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="mcfleet-bench-"))
    lab = Lab(work / "lab")
    results: dict[int, dict[str, dict[str, float]]] = {}
    try:
        names = asyncio.run(bring_up(lab, max(counts)))
        for count in counts:
            setup = Setup(lab, names[:count], work / f"n{count}")
            samples: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
            for t in tools:  # warm-up (page cache, first-run imports), not counted
                setup.run(t, pyinfra)
            for _ in range(args.runs):
                for t in tools:
                    wall, cpu, _rc = setup.run(t, pyinfra)
                    samples[t].append((wall, cpu))
            results[count] = {t: {"wall": statistics.median(w for w, _ in s), "cpu": statistics.median(c for _, c in s)}
                              for t, s in samples.items()}  # fmt: skip
            print_table(count, results[count])
    finally:
        asyncio.run(lab_down(lab))
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(count: int, res: dict[str, dict[str, float]]) -> None:
    base = res.get("mcfleet")
    print(f"\nN={count}   (median; ratios = tool / mcfleet)")
    print(f"  {'tool':8} {'wall s':>8} {'cpu s':>8} {'wall x':>8} {'cpu x':>8}")
    for tool, r in res.items():
        wx = f"{r['wall'] / base['wall']:.2f}" if base else "-"
        cx = f"{r['cpu'] / base['cpu']:.2f}" if base else "-"
        print(f"  {tool:8} {r['wall']:8.2f} {r['cpu']:8.2f} {wx:>8} {cx:>8}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
