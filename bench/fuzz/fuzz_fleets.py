"""Fuzz `validate`: thousands of mutated fleets plus hostile special files; write RESULTS.md.

Not a test (a slow-marked test runs a small slice of it: tests/unit/test_fleet_fuzz_bench.py).
Every run loads and checks one fleet in-process; a run passes when it returns findings (or none)
without an exception and within the time limit.  The special files (devices, a FIFO, huge files,
links to nowhere, unlistable folders) each run in a child process with a hard timeout, since a
hang there would stop the whole fuzz run.

Usage:  .venv/bin/python bench/fuzz/fuzz_fleets.py [RUNS] [--seed N] [--out bench/fuzz/RESULTS.md]
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plan"))
from launch import LaunchFailed, captured

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
LIMIT_S = 5.0

ODD_VALUES: list[Any] = [
    None, True, 0, -1, 2**63, 1e308, "", "x" * 5000, "ünï©ødé", "../../etc/passwd", "a\nb", "@@mcfleet-facts:agent",
    [], {}, [None], {"": None}, [[[[[]]]]], 850, "850", 65536, 10**30, "latest", "ssh-ed25519 AAAA",
]  # fmt: skip


def load_minimal() -> dict[str, Any]:
    files: dict[str, Any] = {}
    for path in sorted(MINIMAL.rglob("*.json")):
        files[str(path.relative_to(MINIMAL))] = json.loads(path.read_text())
    return files


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def mutate_value(rng: random.Random, data: Any) -> Any:
    data = copy.deepcopy(data)
    paths = _paths(data)
    path = rng.choice(paths)
    if not path:
        return rng.choice(ODD_VALUES)
    parent, key = _get(data, path[:-1]), path[-1]
    op = rng.randrange(6)
    if op == 0:
        parent[key] = rng.choice(ODD_VALUES)
    elif op == 1 and isinstance(parent, dict):
        del parent[key]
    elif op == 1 and isinstance(parent, list):
        parent.pop(key)
    elif op == 2 and isinstance(parent, dict):
        parent[rng.choice(["extra", "name", "uid", "os", "routes", "$schema"]) + str(rng.randrange(3))] = rng.choice(
            ODD_VALUES
        )
    elif op == 3:
        value = parent[key]
        parent[key] = [value] * rng.choice([2, 50, 5000]) if not isinstance(value, list) else value * 20
    elif op == 4 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + rng.choice([-1, 1, 1000, -100000, 2**31])
    else:
        parent[key] = str(parent[key])
    return data


def render_text(rng: random.Random, data: Any) -> str:
    text = json.dumps(data, indent=2)
    op = rng.randrange(12)
    if op == 0 and len(text) > 2:  # cut short
        return text[: rng.randrange(1, len(text))]
    if op == 1:  # a key twice
        return text.replace("{", '{\n  "name": "dup",', 1)
    if op == 2:  # stray bytes
        at = rng.randrange(len(text))
        return text[:at] + rng.choice(["\x00", "\ufeff", ",", "}", "]", "\\", '"', "NaN", "\udc80"]) + text[at:]
    if op == 3:  # deep nesting
        return "[" * rng.choice([100, 5000, 200000]) + "]" * rng.choice([0, 100])
    return text


def build(rng: random.Random, base: dict[str, Any]) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {}
    for rel, data in base.items():
        files[rel] = json.dumps(data, indent=2)
    for _ in range(rng.choice([1, 1, 2, 3, 5])):
        rel = rng.choice(sorted(base))
        files[rel] = render_text(rng, mutate_value(rng, base[rel]))
    op = rng.randrange(10)
    if op == 0:  # a whole file gone or a new host folder
        files.pop(rng.choice(sorted(files)))
    elif op == 1:
        files["hosts/zeta/host.json"] = render_text(rng, mutate_value(rng, base["hosts/beta/host.json"]))
    elif op == 2:
        files["hosts/alpha/services/x.json"] = render_text(
            rng, mutate_value(rng, base["hosts/alpha/services/web.json"])
        )
    elif op == 3:
        rel = rng.choice(sorted(files))
        text = files[rel]
        files[rel] = (text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text) + bytes(
            rng.randrange(256) for _ in range(64)
        )
    return files


def write(root: Path, files: dict[str, str | bytes]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogateescape")


def run_one(root: Path) -> tuple[float, list[str], str | None]:
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check

    started = time.perf_counter()
    try:
        codes = [f.code for f in check(load_fleet(root))]
        error = None
    except Exception:  # what the fuzz run counts: any exception is a bug
        codes, error = [], traceback.format_exc()
    return time.perf_counter() - started, codes, error


SPECIALS: dict[str, str] = {
    "host.json -> /dev/zero": "rm {h} && ln -s /dev/zero {h}",
    "host.json -> /dev/urandom": "rm {h} && ln -s /dev/urandom {h}",
    "host.json is a FIFO": "rm {h} && mkfifo {h}",
    "host.json is 300 MB (sparse)": "truncate -s 300M {h}",
    "host.json is 3 MB with 1M wrong-typed items": "",  # written in Python below
    "host.json is a folder": "rm {h} && mkdir {h}",
    "host.json is a dangling link": "rm {h} && ln -s {root}/nowhere {h}",
    "host.json is a link loop": "rm {h} && ln -s {h} {h}",
    "services/ is a dangling link": "rm -r {s} && ln -s {root}/nowhere {s}",
    "services/ is a link loop": "rm -r {s} && ln -s {s} {s}",
    "services/ is a file": "rm -r {s} && echo x > {s}",
    "hosts/gamma is a file": "echo x > {root}/hosts/gamma",
    "hosts/ is a dangling link": "rm -r {root}/hosts && ln -s {root}/nowhere {root}/hosts",
    "chmod 000 hosts/ (as nobody)": "chmod 000 {root}/hosts",
    "chmod 000 services/ (as nobody)": "chmod 000 {s}",
    "chmod 000 host.json (as nobody)": "chmod 000 {h}",
    "fleet.json -> /dev/zero": "rm {root}/fleet.json && ln -s /dev/zero {root}/fleet.json",
}


def run_special(name: str, script: str, top: Path) -> tuple[str, float, int, str]:
    root = top / "special"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(MINIMAL, root)
    h, s = root / "hosts/beta/host.json", root / "hosts/alpha/services"
    if "1M wrong-typed" in name:
        data = json.loads(h.read_text())
        data["addresses"] = [1] * 1_000_000
        h.write_text(json.dumps(data, separators=(",", ":")))
    elif script and "nobody" not in name:
        subprocess.run(["sh", "-c", script.format(h=h, s=s, root=root)], check=True)
    if "nobody" in name:  # the user must reach the fleet; only the one path is closed
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        subprocess.run(["sh", "-c", script.format(h=h, s=s, root=root)], check=True)
    code = (
        "import json, sys, time, pathlib\n"
        "from mcfleet.fleet.load import load_fleet\nfrom mcfleet.fleet.rules import check\n"
        "t = time.perf_counter(); found = check(load_fleet(pathlib.Path(sys.argv[1])))\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'codes': sorted({f.code for f in found})}))\n"
    )
    argv = [sys.executable, "-c", code, str(root)]
    if "nobody" in name:  # root reads through chmod 000; a user does not
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    # through the launcher: a child of this process would begin its peak-RSS count at our size
    try:
        _wall, _cpu, rss_kib, returncode, stdout, stderr = captured(argv, timeout=60, cwd="/")
    except LaunchFailed:
        return name, 60.0, 0, "HUNG (killed after 60 s)"
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(root)], check=False)
    if returncode != 0:
        return name, 0.0, 0, "TRACEBACK: " + (stderr.strip().splitlines() or ["(no output)"])[-1]
    found = json.loads(stdout)
    return name, found["s"], rss_kib // 1024, ", ".join(found["codes"]) or "no finding"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=int, nargs="?", default=10_000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    base = load_minimal()
    codes: collections.Counter[str] = collections.Counter()
    tracebacks: list[str] = []
    slow: list[tuple[int, float]] = []
    worst = 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mcfleet-fuzz-") as tmp:
        top = Path(tmp)
        for i in range(args.runs):
            files = build(rng, base)
            write(top / "fleet", files)
            seconds, found, error = run_one(top / "fleet")
            worst = max(worst, seconds)
            codes.update(set(found) or {"(valid)"})
            if error:
                tracebacks.append(f"run {i}:\n{error}")
            if seconds > LIMIT_S:
                slow.append((i, seconds))
        fuzz_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        specials = [run_special(name, script, top) for name, script in SPECIALS.items()]
    elapsed = time.monotonic() - started
    bad_specials = [s for s in specials if s[3].startswith(("HUNG", "TRACEBACK")) or s[1] > LIMIT_S]
    lines = [
        "# Fuzzing `validate` (bench/fuzz/fuzz_fleets.py)",
        "",
        f"Command: `.venv/bin/python bench/fuzz/fuzz_fleets.py {args.runs} --seed {args.seed}`",
        "",
        f"- mutated fleets: {args.runs} (from tests/data/fleets/minimal; value, key, text, byte and file mutations)",
        f"- tracebacks: {len(tracebacks)}",
        f"- runs over {LIMIT_S:g} s: {len(slow)}; slowest run {worst:.3f} s",
        f"- peak RSS of the fuzzing process: {fuzz_rss} MiB",
        f"- special files: {len(specials)}, of which hung, crashed or over {LIMIT_S:g} s: {len(bad_specials)}",
        f"- wall time: {elapsed:.0f} s",
        "",
        "## Special files (each in its own process, 60 s hard timeout)",
        "",
        "| case | seconds | peak RSS MiB | findings |",
        "|---|---|---|---|",
        *(f"| {n} | {s:.3f} | {r} | {c} |" for n, s, r, c in specials),
        "",
        "## Finding codes seen over the mutated fleets (fleets reporting each)",
        "",
        *(f"- {code}: {count}" for code, count in codes.most_common()),
        "",
    ]
    if tracebacks:
        lines += ["## Tracebacks", "", "```", *tracebacks[:5], "```", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines[:12]))
    if tracebacks or slow or bad_specials:
        sys.exit(1)


if __name__ == "__main__":
    main()
