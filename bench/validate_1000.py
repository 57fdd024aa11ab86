"""Benchmark: `mcfleet validate` on a generated 1,000-host fleet (target: well under 2 s).

Not a test.  Generates a valid fleet in a temp dir (1 master, 20 edges, 979 workers, two
services with routes on each worker), then times:

- the whole command, `mcfleet validate DIR`, as a user runs it (best of 3), and `mcfleet --version`
  beside it (process start + imports of every command module, the fixed part);
- load + rules in-process (best of 3), the part that grows with the fleet;
- the pure-Nix check of nix/lib on the same fleet (`mcfleet nix check`, what
  `checks.<system>.fleet` evaluates): client CPU of nix-instantiate and its peak RSS.

Usage:  .venv/bin/python bench/validate_1000.py [HOSTS]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "plan"))
from launch import captured

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJlbmNoLWtleS1ub3QtYS1yZWFsLWtleS1hdC1hbGwtLS0t"


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def generate(root: Path, count: int) -> None:
    _write(
        root / "fleet.json",
        {
            "zone": "svc.bench.test",
            "public_domains": ["bench.test"],
            "pins": {"mcp": {"uid": 850, "gid": 850, "reason": "bench"}},
        },
    )
    for n in range(count):
        name = f"node{n:04d}"
        roles = ["master", "worker"] if n == 0 else ["edge"] if n <= 20 else ["worker"]
        _write(
            root / "hosts" / name / "host.json",
            {
                "name": name,
                "os": "nixos" if n % 2 else "debian",
                "arch": "amd64" if n % 3 else "arm64",
                "roles": roles,
                "tags": [f"rack{n % 10}"],
                "ssh": {"user": "root", "host_key": KEY},
                "addresses": [f"10.{n // 256}.{n % 256}.1", f"{name}.tailnet.test"],
                "users": {
                    "mcp": {
                        "uid": 850,
                        "gid": 850,
                        "subuid": {"start": 100000, "count": 65536},
                        "subgid": {"start": 100000, "count": 65536},
                    }
                },
                "dns": {"nameservers": ["10.0.0.1"], "fallback": ["1.1.1.1", "8.8.8.8"]},
            },
        )
        if roles != ["worker"]:
            continue
        for kind in ("api", "web"):
            svc = f"{kind}{n:04d}"
            _write(
                root / "hosts" / name / "services" / f"{svc}.json",
                {
                    "name": svc,
                    "stage": "services",
                    "depends_on": [f"api{n:04d}"] if kind == "web" else [],
                    "components": [
                        {
                            "name": svc,
                            "image": f"registry.bench.test:5000/{kind}:v1.{n}.0",
                            "volumes": [f"/srv/{svc}:/srv/{svc}"],
                            "cmd": ["server", "--config", f"/srv/{svc}/{svc}.toml"],
                            "health": {"kind": "tcp", "port": 8080},
                            "routes": [
                                {
                                    "name": "http",
                                    "port": 8080,
                                    "mode": "l7",
                                    "public": kind == "web",
                                    "hostname": f"{svc}.bench.test" if kind == "web" else None,
                                    # a public route's backend must be reachable from the edge
                                    "bind": [f"10.{n // 256}.{n % 256}.1"] if kind == "web" else ["127.0.0.1"],
                                },
                                {"name": "grpc", "port": 9443, "mode": "l4", "listener": 9443},
                            ],
                        }
                    ],
                },
            )


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, count)
        files = sum(1 for _ in root.rglob("*.json"))
        exe = Path(sys.executable).parent / "mcfleet"
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            proc = subprocess.run([str(exe), "validate", str(root)], capture_output=True, text=True, check=False)
            runs.append(time.perf_counter() - start)
            if proc.returncode != 0:
                sys.exit(f"validate failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        start = time.perf_counter()
        subprocess.run([str(exe), "--version"], capture_output=True, check=True)
        startup_s = time.perf_counter() - start
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            findings = check(load_fleet(root))
            best = min(best, time.perf_counter() - start)
        assert not findings, findings[:3]
        print(f"hosts={count} files={files}")
        print(f"mcfleet validate (whole command, best of 3): {min(runs):.3f} s   [{proc.stdout.strip()}]")
        print(f"  all runs: {', '.join(f'{r:.3f}' for r in runs)} s")
        print(f"  of which process start + imports (`mcfleet --version`): {startup_s:.3f} s")
        print(f"load + rules in-process (best of 3):       {best:.3f} s")
        # through the launcher: started from here (holding the fleet), its peak RSS would start at ours
        _wall, cpu, rss_kib, _code, stdout, stderr = captured([str(exe), "nix", "check", str(root)])
        said = stdout.strip() or stderr.strip()
        print(
            f"mcfleet nix check (CPU of the command and nix-instantiate): {cpu:.2f} s, peak RSS "
            f"{rss_kib / 1024:.0f} MB   [{said[-200:]}]"
        )


if __name__ == "__main__":
    main()
