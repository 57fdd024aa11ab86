"""T1: nix/lib's work grows linearly with the fleet, and its dependency search agrees with Python.

Growth is measured with Nix's own evaluation counters (NIX_SHOW_STATS: function calls, values,
attributes copied by `//`, list elements), which do not depend on the machine's load, so the
test asserts no timing.  A quadratic rule (an `acc // {…}` fold over all hosts, a per-host
scan of every route) multiplies them by the square of the size ratio.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
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


def _work(root: Path, tmp_path: Path) -> int:
    """Nix's counters for the findings and every host's derived values, summed."""
    stats = tmp_path / f"stats-{root.name}.json"
    env = {**os.environ, "NIX_SHOW_STATS": "1", "NIX_SHOW_STATS_PATH": str(stats)}
    body = "builtins.deepSeq r.hosts { valid = r.valid; }"
    proc = subprocess.run(
        instantiate_eval_argv(lib_expr(LIB, root, body)), capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"valid": True}
    s = json.loads(stats.read_text())
    return int(s["nrFunctionCalls"] + s["values"]["number"] + s["nrOpUpdateValuesCopied"] + s["list"]["elements"])


def test_check_and_derived_values_grow_linearly(nix_bin: str, tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    _generate(small, 100)
    _generate(large, 400)
    files = {p: sum(1 for _ in p.rglob("*.json")) for p in (small, large)}
    size_ratio = files[large] / files[small]
    work_ratio = _work(large, tmp_path) / _work(small, tmp_path)
    # linear: the work ratio follows the file ratio (4.5x); the quadratic rules it replaced
    # gave 7x for the findings and over 50x for the derived values
    assert work_ratio <= 1.25 * size_ratio, (work_ratio, size_ratio)


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
