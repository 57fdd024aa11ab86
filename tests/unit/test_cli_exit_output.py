"""The console script skips the interpreter's teardown (os._exit) only after its output is flushed.

A slow reader on a pipe sees every byte of a long output, and the exit code is kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.validate_1000 import generate

MCFLEET = Path(sys.executable).parent / "mcfleet"  # the console script: mcfleet.cli.main:run


def test_long_output_reaches_a_slow_reader_completely(tmp_path: Path) -> None:
    generate(tmp_path, 300)
    argv = [str(MCFLEET), "-C", str(tmp_path), "hosts", "--json"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        time.sleep(1.0)  # the pipe (64 KiB) fills while nobody reads: the writer must wait, not exit
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(out) > 128 * 1024
    hosts = json.loads(out)
    assert len(hosts) == 300 if isinstance(hosts, list) else len(hosts["hosts"]) == 300


def test_exit_code_survives_the_fast_exit(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(MCFLEET), "-C", str(tmp_path / "missing"), "hosts"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.strip(), (done.returncode, done.stderr)
