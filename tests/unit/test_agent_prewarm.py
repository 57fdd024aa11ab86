"""The push's prewarm imports every module the agent loads after it serves (else its first start compiles them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcfleet.apply.prewarm import WARM_IMPORTS

REPO = Path(__file__).resolve().parents[2]


def test_the_prewarm_imports_cover_what_the_agent_loads_after_serving() -> None:
    # a fresh interpreter: what WARM_IMPORTS alone imports, checked against the agent's LOAD_ORDER
    code = (
        f"{WARM_IMPORTS}\n"
        "import sys\n"
        "from mcfleet.agent.server import LOAD_ORDER\n"
        "print(' '.join(m for m in LOAD_ORDER if m not in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(REPO / "python"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the prewarm does not import {done.stdout.strip()}"
