"""T1: nix/lib's work grows linearly with the fleet, and its dependency search agrees with Python.

Growth is measured with Nix's own evaluation counters (NIX_SHOW_STATS: function calls, values,
attributes copied by `//`, list elements), which do not depend on the machine's load, so the
test asserts no timing.  A quadratic rule (an `acc // {…}` fold over all hosts, a per-host
scan of every route) multiplies them by the square of the size ratio.  Growth is measured on
a valid fleet and on one with clashes on every host: several rules answer the no-clash case
from set sizes and walk the fleet only when there is something to report, and both paths
must stay linear (the second fleet's findings must also be Python's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.nix.argv import instantiate_eval_argv
from mcfleet.nix.lib_eval import evaluate, lib_expr

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "nix" / "lib"
MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"


def _generate(root: Path, hosts: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_validate_1000", REPO / "bench" / "validate_1000.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(root, hosts)


def _clashing(root: Path, hosts: int) -> None:
    """The generated fleet with clashes on every worker, so that each rule's exact walk runs
    (their common no-clash case is answered from set sizes and would hide a quadratic walk):
    addresses, route hostnames and listeners, service names, pinned host ports, user ids,
    subordinate id ranges, unknown dependencies and a dependency cycle per worker."""
    _generate(root, hosts)
    for n in range(21, hosts):
        name, prev = f"node{n:04d}", f"node{n - 1:04d}"
        host_file = root / "hosts" / name / "host.json"
        host = json.loads(host_file.read_text())
        host["addresses"].append(f"{prev.upper()}.tailnet.test")  # address-duplicate (case-insensitive)
        # id-duplicate, subid-overlap; named to sort after mcp: of a pair, Nix reports the
        # later user by name and Python by file order
        host["users"]["zapp"] = {**host["users"]["mcp"], "uid": 850}
        host_file.write_text(json.dumps(host))
        services = root / "hosts" / name / "services"
        for kind in ("api", "web"):
            path = services / f"{kind}{n:04d}.json"
            svc = json.loads(path.read_text())
            comp = svc["components"][0]
            if kind == "api":
                svc["depends_on"] = [f"web{n:04d}", f"ghost{n:04d}"]  # a cycle, unknown-reference
                for route in comp["routes"]:
                    route["host_port"] = 20000  # both routes pin it: host-port-duplicate
            else:
                # the previous worker's public hostname again: name-claimed-twice, route-listener-duplicate
                again = {"name": "again", "port": 8081, "mode": "l7", "hostname": f"web{n - 1:04d}.bench.test"}
                comp["routes"].append(again)
            path.write_text(json.dumps(svc))


def _work(root: Path, tmp_path: Path, valid: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """Nix's counters for the findings and every host's derived values, summed; the findings."""
    stats = tmp_path / f"stats-{root.name}.json"
    env = {**os.environ, "NIX_SHOW_STATS": "1", "NIX_SHOW_STATS_PATH": str(stats)}
    body = "builtins.deepSeq r.hosts { valid = r.valid; inherit (r) findings; }"
    proc = subprocess.run(
        instantiate_eval_argv(lib_expr(LIB, root, body)), capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["valid"] is valid, out["findings"][:5]
    s = json.loads(stats.read_text())
    work = int(s["nrFunctionCalls"] + s["values"]["number"] + s["nrOpUpdateValuesCopied"] + s["list"]["elements"])
    return work, out["findings"]


def _growth(make: Callable[[Path, int], None], tmp_path: Path, valid: bool) -> tuple[float, float, list[Any]]:
    """(work ratio, file ratio, findings of the larger fleet) for 100 and 400 hosts."""
    small, large = tmp_path / f"{make.__name__}-small", tmp_path / f"{make.__name__}-large"
    make(small, 100)
    make(large, 400)
    files = {p: sum(1 for _ in p.rglob("*.json")) for p in (small, large)}
    (work_small, _), (work_large, findings) = _work(small, tmp_path, valid), _work(large, tmp_path, valid)
    return work_large / work_small, files[large] / files[small], findings


def test_check_and_derived_values_grow_linearly(nix_bin: str, tmp_path: Path) -> None:
    work_ratio, size_ratio, _ = _growth(_generate, tmp_path, valid=True)
    # linear: the work ratio follows the file ratio (4.5x); the quadratic rules it replaced
    # gave 7x for the findings and over 50x for the derived values
    assert work_ratio <= 1.25 * size_ratio, (work_ratio, size_ratio)


def test_rules_with_clashes_everywhere_grow_linearly_and_agree_with_python(nix_bin: str, tmp_path: Path) -> None:
    work_ratio, size_ratio, findings = _growth(_clashing, tmp_path, valid=False)
    # the exact walks (groupBy, folds, the dependency search) are linear too
    assert work_ratio <= 1.25 * size_ratio, (work_ratio, size_ratio)
    codes = {f["code"] for f in findings}
    assert {
        "address-duplicate",
        "id-duplicate",
        "subid-overlap",
        "host-port-duplicate",
        "name-claimed-twice",
        "route-listener-duplicate",
        "stage-cycle",
        "unknown-reference",
    } <= codes, codes
    # and they report what Python reports
    root = tmp_path / "_clashing-large"
    py = sorted(_key(f.code, f.file, f.pointer, f.message) for f in check(load_fleet(root)) if f.code in codes)
    nix = sorted(_key(f["code"], f["file"], f["pointer"], f["message"]) for f in findings)
    assert nix == py


def _key(code: str, file: str, pointer: str, message: str) -> tuple[str, ...]:
    # id-duplicate names "the later" user of a pair: by name in Nix, in file order in Python
    return (code, file) if code == "id-duplicate" else (code, file, pointer, message)


def _service(name: str, deps: list[str], stage: str = "services") -> dict[str, Any]:
    return {
        "name": name,
        "stage": stage,
        "depends_on": deps,
        "components": [{"name": name, "image": f"registry.example.test:5000/{name}:v1.0.0"}],
    }


def _tangled(root: Path) -> None:
    """The minimal fleet plus services whose dependencies form many overlapping cycles."""
    shutil.copytree(MINIMAL, root)
    graph: dict[str, list[str]] = {
        # entered from a lower name, so the search meets the cycle at c1 through a0
        "a0": ["c1"],
        "c1": ["c2"],
        "c2": ["c3"],
        "c3": ["c1", "ghost"],
        "d1": ["d1"],
        # two cycles sharing e1 and e2
        "e1": ["e2", "e3"],
        "e2": ["e1"],
        "e3": ["e2", "e1"],
        "z9": ["e3", "dns"],
    }
    rng = random.Random(20261202)
    names = [f"s{i:03d}" for i in range(240)]
    for name in names:
        graph[name] = rng.sample(names, rng.randint(0, 3))
    for i, (name, deps) in enumerate(sorted(graph.items())):
        host = "alpha" if i % 2 else "beta"
        path = root / "hosts" / host / "services" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(_service(name, deps)))


def test_dependency_cycles_agree_with_python_on_a_tangled_graph(nix_bin: str, tmp_path: Path) -> None:
    import asyncio

    root = tmp_path / "tangled"
    _tangled(root)
    codes = {"stage-cycle", "unknown-reference"}
    py = sorted((f.code, f.file, f.pointer, f.message) for f in check(load_fleet(root)) if f.code in codes)
    data = asyncio.run(evaluate(root, "{ inherit (r) findings; }"))
    nix = sorted((f["code"], f["file"], f["pointer"], f["message"]) for f in data["findings"] if f["code"] in codes)
    assert nix == py
    messages = [m for c, _, _, m in py if c == "stage-cycle"]
    assert "dependency cycle: c1 -> c2 -> c3 -> c1" in messages
    assert "dependency cycle: d1 -> d1" in messages
    assert len(messages) > 10, messages
