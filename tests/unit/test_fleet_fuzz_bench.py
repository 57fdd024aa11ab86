"""A slice of the validate fuzz run (bench/fuzz/fuzz_fleets.py; the full run writes its RESULTS.md):
mutated fleets and every hostile special file end in findings, never a traceback, a hang or a slow run."""

from __future__ import annotations

import random
import resource
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.slow


def _bench() -> ModuleType:
    return load_script("bench/fuzz/fuzz_fleets.py", "fuzz_fleets")


def test_mutated_fleets_give_findings_not_tracebacks(tmp_path: Path) -> None:
    bench = _bench()
    rng, base = random.Random(7), bench.load_minimal()
    worst = 0.0
    for i in range(300):
        bench.write(tmp_path / "fleet", bench.build(rng, base))
        seconds, _codes, error = bench.run_one(tmp_path / "fleet")
        assert error is None, f"run {i}: {error}"
        worst = max(worst, seconds)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"300 mutated fleets: slowest {worst:.3f} s, peak RSS {rss_mib} MiB")
    assert worst < bench.LIMIT_S


@pytest.mark.parametrize("case", sorted(_bench().SPECIALS))
def test_each_special_file_is_a_finding(case: str) -> None:
    bench = _bench()
    top = Path(tempfile.mkdtemp(prefix="mcfleet-special-", dir="/tmp"))  # reachable by `nobody` for the chmod cases
    try:
        name, seconds, rss, codes = bench.run_special(case, bench.SPECIALS[case], top)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"{name}: {seconds:.3f} s, {rss} MiB, {codes}")
    assert "unreadable" in codes or "file-too-large" in codes, codes
    assert seconds < bench.LIMIT_S
    # the validating process's own peak (~30 MiB: Python and the fleet code); reading the 300 MB file,
    # /dev/zero or /dev/urandom into memory would go far past this
    assert 0 < rss < 64, f"{name}: peak RSS {rss} MiB"
